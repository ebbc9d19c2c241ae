"""The auth function: publishes the token-signing JWKS and issues access tokens to client apps."""

import sys
from pathlib import Path

# In the OpenFaaS image the shared package is copied next to this file (stack.yml configuration.copy).
_SHARED = Path(__file__).resolve().parent / "shared"
if _SHARED.is_dir() and str(_SHARED) not in sys.path:
    sys.path.insert(0, str(_SHARED))

import threading  # noqa: E402
from typing import Any  # noqa: E402

from finfaas.platform import config  # noqa: E402
from finfaas.platform.errors import BadRequest  # noqa: E402
from finfaas.platform.http import FORM_MEDIA_TYPE, FunctionApp, Request, Response  # noqa: E402
from finfaas.platform.jwt_auth import JwtVerifier  # noqa: E402
from finfaas.platform.keys import KeyRing, load_keyring  # noqa: E402
from finfaas.platform.tokens import ClientRegistry, OAuthError, TokenIssuer, client_credentials_grant  # noqa: E402

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Verifiers refetch on an unknown kid, so a long cache only delays nothing but retirements.
jwks_cache_max_age_seconds = 300


class AuthSecrets:
    """Signing keys and clients, read from OpenFaaS secrets on first use and on reload."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keyring: KeyRing | None = None
        self._clients: ClientRegistry | None = None
        self._issuer: TokenIssuer | None = None

    def keyring(self) -> KeyRing:
        return self._loaded()[0]

    def clients(self) -> ClientRegistry:
        return self._loaded()[1]

    def issuer(self) -> TokenIssuer:
        return self._loaded()[2]

    def key_for(self, kid: str) -> Any | None:
        """Public key by kid: this function verifies its own tokens without fetching its own JWKS."""
        key = next((k for k in self.keyring().keys if k.kid == kid), None)
        return key.private_key.public_key() if key else None

    def reload(self) -> KeyRing:
        with self._lock:
            self._keyring, self._clients, self._issuer = self._read()
            return self._keyring

    def _loaded(self) -> tuple[KeyRing, ClientRegistry, TokenIssuer]:
        with self._lock:
            if self._keyring is None or self._clients is None or self._issuer is None:
                self._keyring, self._clients, self._issuer = self._read()
            return self._keyring, self._clients, self._issuer

    @staticmethod
    def _read() -> tuple[KeyRing, ClientRegistry, TokenIssuer]:
        settings = config.auth_settings()
        keyring = load_keyring()
        return keyring, ClientRegistry.from_secret(), TokenIssuer(keyring, settings.issuer, settings.audience)


auth_secrets = AuthSecrets()
app = FunctionApp(
    "auth",
    # Nothing here calls AWS or other services over HTTP: patching botocore would only slow start-up.
    traced_libraries=(),
    verifier=JwtVerifier(auth_secrets, config.auth_settings().issuer, config.auth_settings().audience),
)

TOKEN_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_MEDIA_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {"type": "string"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    },
    "description": "Client credentials go in HTTP Basic (preferred) or in the form body, never both.",
}


@app.route("GET", "/.well-known/jwks.json", auth=False)
def jwks(req: Request) -> Response:
    """The public keys that verify access tokens (active and retiring)."""
    cache = {"Cache-Control": f"public, max-age={jwks_cache_max_age_seconds}"}
    return Response(auth_secrets.keyring().jwks(), headers=cache)


@app.route("POST", "/oauth/token", auth=False, media_types=(FORM_MEDIA_TYPE,), openapi=TOKEN_OPENAPI)
def token(req: Request) -> Response:
    """Issue an access token (OAuth 2.0 client credentials grant)."""
    try:
        form = req.form()
    except BadRequest as error:
        raise OAuthError("invalid_request", error.detail) from None
    authorization = req.header("authorization")
    issued = client_credentials_grant(form, authorization, auth_secrets.clients(), auth_secrets.issuer())
    return Response(issued.to_dict(), headers=NO_STORE)


@app.route("POST", "/_/ops/reload-secrets")
def reload_secrets(req: Request) -> dict[str, Any]:
    """Re-read signing keys and clients after a rotation, without a restart."""
    keyring = auth_secrets.reload()
    return {"active_kid": keyring.active.kid, "kids": [key.kid for key in keyring.keys]}


@app.exception_handler(OAuthError)
def oauth_error(error: OAuthError, req: Request) -> Response:
    """RFC 6749 5.2 error body; 401 invalid_client challenges for HTTP Basic."""
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="finfaas-auth"'
    return Response(error.to_dict(), error.status, headers)


@app.readiness_check("auth-secrets")
def secrets_readable() -> None:
    auth_secrets.keyring()
    auth_secrets.clients()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
