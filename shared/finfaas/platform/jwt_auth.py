"""Bearer-token verification: RS256 JWTs checked locally against a cached JWKS.

Every rejection is one exception type (InvalidToken) so the HTTP layer answers them all alike;
the reason travels only to the logs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from finfaas.platform import config, jsonio, tracing
from finfaas.platform.logging import get_logger

ALGORITHMS = ("RS256",)
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub")
# RFC 9068 access tokens; an ID token or another JWT must not pass as one.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
PRINCIPAL_KINDS = frozenset({"customer", "client"})
OPS_SCOPE = "ops"
# Beside ops, on every ops route that changes something: a read-only operator holds ops alone.
OPS_ACT_SCOPE = "ops:act"
jwt_leeway_seconds = 30
bearer_token_chars_max = 8192
scope_claim_chars_max = 4096
jwks_ttl_seconds = 300
# An unknown kid triggers a JWKS fetch at most this often, so random kids cannot flood the issuer.
jwks_refetch_interval_seconds_min = 30
# When the JWKS endpoint is down, keep trusting already-fetched keys for this long.
jwks_stale_seconds_max = 3600
jwks_fetch_timeout_seconds = 3.0
jwks_bytes_max = 64 * 1024
jwks_keys_max = 16
# Tokens already verified by this process, remembered until they expire: an app or a customer sends the
# same token for minutes, and its signature check was the largest platform cost of a request.
verified_tokens_max = 1024

_log = get_logger("jwt_auth")


class InvalidToken(Exception):
    """The bearer token is missing or not acceptable; the message is for logs only."""


class KeysUnavailable(Exception):
    """No verification keys could be obtained; not the caller's fault (503, not 401)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: token subject, granted scopes, and whether a customer or a client app."""

    sub: str
    scopes: frozenset[str]
    kind: str
    token_id: str | None = None

    def missing_scopes(self, required: Iterable[str]) -> list[str]:
        return sorted(set(required) - self.scopes)


class KeySource(Protocol):
    def key_for(self, kid: str) -> Any | None:
        """The public key with this kid, or None when no such key is published."""


def parse_jwks(document: Any) -> dict[str, Any]:
    """kid -> RSA public key, keeping only RSA signing keys; the algorithm is pinned, not read."""
    from jwt import PyJWK
    from jwt.exceptions import PyJWKError

    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    keys: dict[str, Any] = {}
    for jwk in document["keys"][:jwks_keys_max]:
        if not _usable_jwk(jwk):
            continue
        try:
            keys[jwk["kid"]] = PyJWK(jwk, algorithm=ALGORITHMS[0]).key
        except PyJWKError as error:
            _log.warning("jwks key skipped", kid=jwk.get("kid"), reason=str(error))
    return keys


def _usable_jwk(jwk: Any) -> bool:
    return (
        isinstance(jwk, Mapping)
        and jwk.get("kty") == "RSA"
        and isinstance(jwk.get("kid"), str)
        and jwk.get("use", "sig") == "sig"
        and jwk.get("alg", ALGORITHMS[0]) in ALGORITHMS
    )


class StaticKeySource:
    """Keys known in-process (the issuer itself, tests)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = parse_jwks(jwks)

    def key_for(self, kid: str) -> Any | None:
        return self._keys.get(kid)


def fetch_json(url: str, timeout_seconds: float = jwks_fetch_timeout_seconds) -> Any:
    """GET a small JSON document; urllib keeps `requests` off the cold-start path."""
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"JWKS URL must be http(s): {url!r}")
    headers = {"Accept": "application/json", **tracing.outbound_headers()}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked above
    with urllib.request.urlopen(request, timeout=timeout_seconds) as response:  # noqa: S310
        payload = response.read(jwks_bytes_max + 1)
    if len(payload) > jwks_bytes_max:
        raise ValueError(f"JWKS larger than {jwks_bytes_max} bytes")
    return jsonio.loads(payload)


class JwksCache:
    """A JWKS fetched on demand, refreshed after a TTL or on an unknown kid (rate-limited)."""

    def __init__(
        self,
        url: str,
        fetch: Callable[[str], Any] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def key_for(self, kid: str) -> Any | None:
        with self._lock:
            now = self._clock()
            if self._should_fetch(kid, now):
                self._refresh(now)
            if self._fetched_at is None or now - self._fetched_at > jwks_stale_seconds_max:
                raise KeysUnavailable(f"no current JWKS from {self.url}")
            return self._keys.get(kid)

    def _should_fetch(self, kid: str, now: float) -> bool:
        if self._attempted_at is not None and now - self._attempted_at < jwks_refetch_interval_seconds_min:
            return False
        expired = self._fetched_at is None or now - self._fetched_at >= jwks_ttl_seconds
        return expired or kid not in self._keys

    def _refresh(self, now: float) -> None:
        # Holding the lock while fetching makes concurrent misses wait for one fetch, not start many.
        self._attempted_at = now
        try:
            keys = parse_jwks(self._fetch(self.url))
        except Exception as error:
            _log.warning("jwks fetch failed", url=self.url, error_type=type(error).__name__)
            return
        # A kid still published with the same key keeps its object: the verifier's remembered tokens name
        # the key that checked them by identity, so a refetch of an unchanged set does not forget them.
        self._keys = {kid: _same_or(self._keys.get(kid), key) for kid, key in keys.items()}
        self._fetched_at = now


def _same_or(known: Any, fetched: Any) -> Any:
    """The key already held when the fetched one has the same public numbers, else the fetched one."""
    if known is not None and known.public_numbers() == fetched.public_numbers():
        return known
    return fetched


@dataclass(frozen=True)
class _Verified:
    """A token this process verified: whom it names, until when, and the key that checked it."""

    principal: Principal
    refused_from: float  # exp + leeway: PyJWT refuses a token once exp <= now - leeway
    kid: str
    key: Any


class JwtVerifier:
    """Verifies an access token's signature, claims and type; returns the principal.

    A token verified once is remembered (bounded, least recently used first out) and accepted again
    without its signature check only while it is unexpired and its kid still resolves to the very key
    that verified it; any other string, a tampered copy included, is verified in full."""

    def __init__(self, keys: KeySource, issuer: str, audience: str, leeway_seconds: int = jwt_leeway_seconds,
                 clock: Callable[[], float] = time.time, remembered_max: int = verified_tokens_max):
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self._clock = clock
        self._remembered_max = remembered_max
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._verified_lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        if not token or len(token) > bearer_token_chars_max or token.count(".") != 2:
            raise InvalidToken("not a compact JWS")
        known = self._already_verified(token)
        if known is not None:
            return known
        header = _unverified_header(token)
        key = self._key_for_header(header)
        claims = self._decoded(token, key)
        principal = _principal(claims)
        refused_from = int(claims["exp"]) + self.leeway_seconds
        if self._clock() >= refused_from:  # this verifier's clock rules the remembered copy as well
            raise InvalidToken("ExpiredSignatureError")
        self._remember(token, _Verified(principal, refused_from, header["kid"], key))
        return principal

    def remembered(self) -> int:
        """How many verified tokens this verifier holds."""
        with self._verified_lock:
            return len(self._verified)

    def _already_verified(self, token: str) -> Principal | None:
        with self._verified_lock:
            known = self._verified.get(token)
            if known is None:
                return None
            if self._clock() >= known.refused_from:
                del self._verified[token]
                return None  # verified in full again, and refused as expired
            self._verified.move_to_end(token)
        # A key withdrawn from the JWKS (or replaced under its kid) no longer vouches for the token.
        if self.keys.key_for(known.kid) is not known.key:
            with self._verified_lock:
                self._verified.pop(token, None)
            return None
        return known.principal

    def _remember(self, token: str, verified: _Verified) -> None:
        with self._verified_lock:
            self._verified[token] = verified
            while len(self._verified) > self._remembered_max:
                self._verified.popitem(last=False)

    def _decoded(self, token: str, key: Any) -> dict[str, Any]:
        import jwt

        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(type(error).__name__) from None

    def _key_for_header(self, header: Mapping[str, Any]) -> Any:
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken(f"algorithm {header.get('alg')!r} not allowed")
        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("not an access token (typ)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("no kid")
        key = self.keys.key_for(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        return key


def _unverified_header(token: str) -> dict[str, Any]:
    import jwt

    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise InvalidToken(f"header: {type(error).__name__}") from None


def _principal(claims: Mapping[str, Any]) -> Principal:
    sub, kind, scope = claims.get("sub"), claims.get("kind"), claims.get("scope", "")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("sub is not a non-empty string")
    if kind not in PRINCIPAL_KINDS:
        raise InvalidToken("kind is not customer or client")
    if not isinstance(scope, str) or len(scope) > scope_claim_chars_max:
        raise InvalidToken("scope is not a space-separated string")
    jti = claims.get("jti")
    return Principal(sub, frozenset(scope.split()), kind, jti if isinstance(jti, str) else None)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("no bearer token")
    return token.strip()


_default_verifier: JwtVerifier | None = None
_default_lock = threading.Lock()


def default_verifier() -> JwtVerifier:
    """The process verifier, configured from FINFAAS_JWKS_URL, FINFAAS_JWT_ISSUER, FINFAAS_JWT_AUDIENCE."""
    global _default_verifier
    with _default_lock:
        if _default_verifier is None:
            settings = config.auth_settings()
            _default_verifier = JwtVerifier(JwksCache(settings.jwks_url), settings.issuer, settings.audience)
        return _default_verifier
