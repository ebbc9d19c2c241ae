"""The auth function: publishes the token-signing JWKS, issues access tokens to client apps, and signs
customers up and in (password grant, rotating refresh tokens, revocation)."""

import threading
from collections.abc import Mapping
from typing import Any

from finfaas.platform import config
from finfaas.platform.errors import BadRequest
from finfaas.platform.http import (
    FORM_MEDIA_TYPE,
    FunctionApp,
    Request,
    Response,
    client_ip,
)
from finfaas.platform.jwt_auth import JwtVerifier
from finfaas.platform.keys import KeyRing, load_keyring
from finfaas.platform.problems import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA_REF
from finfaas.platform.tokens import (
    CLIENT_CREDENTIALS,
    ClientRegistry,
    OAuthError,
    TokenIssuer,
    client_credentials,
    client_credentials_grant,
    invalid_client,
)
from finfaas.platform.wiring import Lazy
from finfaas.services.auth.api import ERRORS, SignedUpView, SignUpBody, signed_up_view
from finfaas.services.auth.service import ANONYMOUS, PUBLIC_CLIENT_ID, CustomerAuthService
from finfaas.services.customers.model import Caller

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PASSWORD = "password"  # noqa: S105 - the grant type's name
REFRESH_TOKEN = "refresh_token"  # noqa: S105 - the grant type's name
GRANT_TYPES = (CLIENT_CREDENTIALS, PASSWORD, REFRESH_TOKEN)
# Verifiers refetch on an unknown kid, so a long cache only delays nothing but retirements.
jwks_cache_max_age_seconds = 300


class AuthSecrets:
    """Signing keys and clients, read from OpenFaaS secrets on first use and on reload."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keyring: KeyRing | None = None
        self._clients: ClientRegistry | None = None
        self._issuer: TokenIssuer | None = None
        # Public keys of the keyring they came from, made once: the verifier accepts a token it verified
        # before only while its kid resolves to the very key object that verified it.
        self._public_of: KeyRing | None = None
        self._public: dict[str, Any] = {}

    def keyring(self) -> KeyRing:
        return self._loaded()[0]

    def clients(self) -> ClientRegistry:
        return self._loaded()[1]

    def issuer(self) -> TokenIssuer:
        return self._loaded()[2]

    def key_for(self, kid: str) -> Any | None:
        """Public key by kid: this function verifies its own tokens without fetching its own JWKS."""
        keyring = self.keyring()
        with self._lock:
            if self._public_of is not keyring:
                self._public = {k.kid: k.private_key.public_key() for k in keyring.keys}
                self._public_of = keyring
            return self._public.get(kid)

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


def build_customer_auth(hasher: Any = None) -> CustomerAuthService:
    """Customer sign-in on this stage's tables (imports argon2 and pynamodb: call lazily)."""
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, AuditLog, signing_key_from_text
    from finfaas.platform.ratelimit import RateLimiter
    from finfaas.services.auth.service import CUSTOMER_LIMITS
    from finfaas.services.customers.service import AuditTrail
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.customers_store import CustomersStore
    from finfaas.store.ratelimit_store import RateLimitStore
    from finfaas.store.refresh_tokens_store import RefreshTokenStore

    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    audit = AuditTrail(AuditLog(AuditStore(), "auth", key=audit_key))
    limiter = RateLimiter(RateLimitStore(), CUSTOMER_LIMITS)
    return CustomerAuthService(CustomersStore(), RefreshTokenStore(), auth_secrets.issuer, limiter, audit,
                               hasher=hasher)


auth_secrets = AuthSecrets()
customer_auth = Lazy(build_customer_auth)
app = FunctionApp(
    "auth",
    errors=ERRORS,
    # Customer sign-in reads DynamoDB; nothing here calls other services over HTTP.
    traced_libraries=("botocore",),
    verifier=JwtVerifier(auth_secrets, config.auth_settings().issuer, config.auth_settings().audience),
)

# RFC 6749 5.2 (and RFC 7009 2.2.1) errors are plain JSON; the platform's own refusals stay problem+json.
OAUTH_ERROR_RESPONSE = {
    "description": "RFC 6749 error (invalid_request, invalid_client, invalid_grant, ...) or a problem",
    "content": {
        "application/json": {"schema": {
            "type": "object",
            "required": ["error", "error_description"],
            "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
        }},
        PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA_REF},
    },
}
OAUTH_ERROR_RESPONSES = {"400": OAUTH_ERROR_RESPONSE, "401": OAUTH_ERROR_RESPONSE}


def _form_request_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A required form-encoded body holding one object, as the OAuth endpoints take."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"required": True, "content": {FORM_MEDIA_TYPE: {"schema": schema}}}


TOKEN_OPENAPI = {
    "requestBody": _form_request_body(
        ["grant_type"],
        {
            "grant_type": {"type": "string", "enum": list(GRANT_TYPES)},
            "scope": {"type": "string"},
            "client_id": {"type": "string"},
            "client_secret": {"type": "string"},
            "username": {"type": "string", "description": "password grant"},
            "password": {"type": "string", "format": "password", "description": "password grant"},
            "refresh_token": {"type": "string", "description": "refresh_token grant"},
        },
    ),
    "description": "client_credentials: client apps, credentials in HTTP Basic (preferred) or the form body, "
    "never both. password: a customer signs in and gets a refresh token too (rate limited per username and "
    "per client IP: 429 with Retry-After). refresh_token: single use; the answer carries its replacement, "
    "and presenting a replaced token again revokes every token of that sign-in. Client authentication is "
    "optional for the customer grants; tokens are bound to the client that obtained them.",
    "responses": OAUTH_ERROR_RESPONSES,
}
REVOKE_OPENAPI = {
    "requestBody": _form_request_body(
        ["token"],
        {
            "token": {"type": "string"},
            "token_type_hint": {"type": "string", "enum": [REFRESH_TOKEN, "access_token"]},
        },
    ),
    "description": "RFC 7009: ends the refresh token and every token of its sign-in; 200 for unknown tokens.",
    "responses": OAUTH_ERROR_RESPONSES,
}


@app.route("GET", "/.well-known/jwks.json", auth=False)
def jwks(req: Request) -> Response:
    """The public keys that verify access tokens (active and retiring)."""
    cache = {"Cache-Control": f"public, max-age={jwks_cache_max_age_seconds}"}
    return Response(auth_secrets.keyring().jwks(), headers=cache)


@app.route("POST", "/oauth/token", auth=False, media_types=(FORM_MEDIA_TYPE,), openapi=TOKEN_OPENAPI)
def token(req: Request) -> Response:
    """Issue an access token (client credentials, customer password, or refresh token grant)."""
    form = _oauth_form(req)
    grant_type = form.get("grant_type")
    if grant_type == PASSWORD:
        issued = customer_auth.get().sign_in(
            _required(form, "username"), _required(form, "password"), _client_of(form, req),
            form.get("scope"), _origin(req))
    elif grant_type == REFRESH_TOKEN:
        issued = customer_auth.get().refresh(
            _required(form, REFRESH_TOKEN), _client_of(form, req), form.get("scope"), _origin(req))
    elif grant_type and grant_type not in GRANT_TYPES:
        raise OAuthError("unsupported_grant_type", f"Supported grant types: {', '.join(GRANT_TYPES)}.")
    else:
        issued = client_credentials_grant(
            form, req.header("authorization"), auth_secrets.clients(), auth_secrets.issuer())
    return Response(issued.to_dict(), headers=NO_STORE)


@app.route("POST", "/oauth/revoke", auth=False, media_types=(FORM_MEDIA_TYPE,), openapi=REVOKE_OPENAPI)
def revoke(req: Request) -> Response:
    """Revoke a customer's refresh token and its whole sign-in (RFC 7009)."""
    form = _oauth_form(req)
    token_text = _required(form, "token")
    if form.get("token_type_hint") == "access_token" or token_text.count(".") == 2:
        # Access tokens are self-contained JWTs that expire within minutes; nothing can recall them.
        raise OAuthError("unsupported_token_type", "Only refresh tokens can be revoked.")
    customer_auth.get().revoke(token_text, _client_of(form, req), _origin(req))
    return Response(status=200, headers=NO_STORE)


@app.route("POST", "/customers/signup", auth=False, body=SignUpBody, status=201)
def sign_up(req: Request, body: SignUpBody) -> SignedUpView:
    """Create a customer: a username (3-64 of a-z 0-9 . _ -) and a password of 12-128 characters."""
    signed_up = customer_auth.get().sign_up(body.username, body.password, _origin(req))
    return signed_up_view(signed_up)


def _oauth_form(req: Request) -> dict[str, str]:
    try:
        return req.form()
    except BadRequest as error:
        raise OAuthError("invalid_request", error.detail) from None


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise OAuthError("invalid_request", f"{name} is required.")
    return value


def _client_of(form: Mapping[str, str], req: Request) -> str:
    """The client the customer's tokens are bound to: the authenticated client, else the public app."""
    authorization = req.header("authorization")
    if not authorization and "client_secret" not in form:
        return PUBLIC_CLIENT_ID
    client_id, secret = client_credentials(form, authorization)
    client = auth_secrets.clients().authenticate(client_id, secret)
    if client is None:
        raise invalid_client()
    return client.client_id


def _origin(req: Request) -> Caller:
    """An unauthenticated caller as the audit log records it, until the customer is known."""
    return Caller(ANONYMOUS, ANONYMOUS, req.request_id, req.trace_id, client_ip(req.headers))


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
