"""The HTTP adapter every function is built on: python3-http event -> typed request -> response.

    app = FunctionApp("accounts", errors={AccountFrozen: ErrorSpec(409, "account_frozen", "Account frozen")})

    @app.route("GET", "/accounts/{account_id}", scopes=["accounts:read"])
    def get_account(req: Request, account_id: str) -> Account: ...

    def handle(event, context):
        return app.handle(event, context)

Optional platform services, each an instance or a zero-argument factory called once on first use
(so a cold start that answers /_/health imports no AWS code):

    app = FunctionApp("ledger", idempotency=build_guard, limiter=build_limiter, audit=build_audit_log)

    @app.route("POST", "/payments", scopes=["payments:write"], body=NewPayment,
               idempotency="required", rate_limit="money")
    def create_payment(req: Request, body: NewPayment) -> Payment: ...

Order of a request: route -> size limits -> token -> scopes -> rate limit (429 + Retry-After) ->
body/query validation (422, never stored under a key) -> Idempotency-Key -> handler -> audit.

`idempotency=`:
* "required" / "optional": the platform claims the key, runs the handler and stores its answer
  (2xx-4xx stored and replayed with `Idempotency-Replayed: true`; 5xx released so the client may
  retry). Same key + different request -> 422; same key while running -> 409. "required" answers
  400 when the header is missing.
* "in_transaction": the key is required; the handler receives `req.idempotency`
  (TransactionalIdempotency) and writes the completion record inside its own transaction; the
  platform stores final 4xx answers and answers that did not write the record themselves.
* "keyed": the key is required and checked (400 when missing or malformed) and the platform keeps
  no record: the handler's own conditional write is keyed by it (e.g. the id it creates is derived
  from the caller and the key), so that write is the record, and a repeat finds what the first
  wrote. The handler answers a repeat itself (`Idempotency-Replayed: true`, 422 for a different
  request under the same key). Use it only where a repeat's answer follows from that write alone.
`rate_limit=`: the name of a limit the app's limiter knows (default "default"); None disables it.
Unauthenticated routes are never rate limited (there is no principal to count).
Audit: with an app-level AuditLog, every authenticated POST/PUT/PATCH/DELETE appends who (token
subject), what (operation id), target (`req.audit_target` or the path), outcome, source IP,
request id and trace id. 429s are not audited (they change nothing and would let a flood write).
`audit="outbox"` (a route option): the handler receives `req.outbox_audit` and writes its facts
(`facts()`, JSON text) into the outbox item of its own transaction, then calls `mark_recorded()`
once that transaction commits; the outbox relay seals them into the audit chain. The platform then
appends nothing, so the audit costs no round trip and is exactly as durable as the change. Answers
whose transaction did not carry the facts (refusals, replays) are appended as usual.
"""

from finfaas.platform.http.app import (
    BODY_METHODS,
    HEALTH_PATH,
    OPENAPI_PATH,
    PLATFORM_ERRORS,
    READY_PATH,
    RESILIENCE_PATH,
    UNAVAILABLE_RETRY_AFTER_SECONDS,
    UNTRACED_PATHS,
    FunctionApp,
    NotReady,
    StepTimings,
    health,
    request_body_bytes_max,
)
from finfaas.platform.http.audit_events import AUDIT_ACTOR_HASH_HEX_CHARS, UNAUDITED_STATUSES
from finfaas.platform.http.bodies import (
    BODY_FIELD,
    FORM_MEDIA_TYPE,
    form_fields_max,
    parse_form,
    parse_json,
    validation_errors_max,
    validation_failed,
)
from finfaas.platform.http.incoming import (
    CLIENT_IP_HEADER_DEFAULT,
    CLIENT_IP_HEADER_ENV,
    FORWARDED_FOR_HEADER,
    REQUEST_ID_PATTERN,
    REQUEST_ID_SOURCES,
    client_ip,
    client_ip_chars_max,
    client_ip_header,
)
from finfaas.platform.http.messages import (
    JSON_MEDIA_TYPE,
    Request,
    Response,
    StrictModel,
    TriggerCheck,
    Verifier,
)
from finfaas.platform.http.rendering import DEFAULT_RESPONSE_HEADERS, REQUEST_ID_HEADER
from finfaas.platform.http.routes import (
    AUDIT_MODES,
    AUDIT_OUTBOX,
    AUDIT_SYNC,
    IDEMPOTENCY_MODES,
    IN_TRANSACTION,
    KEYED,
    METHODS,
    OPS_PATH_PREFIX,
    RATE_LIMIT_DEFAULT,
    STATE_CHANGING_METHODS,
    AuditMode,
    IdempotencyMode,
    Route,
    path_param_chars_max,
)
from finfaas.platform.http.transactional import (
    IdempotentReplay,
    KeyInTransaction,
    OutboxAudit,
    TransactionalIdempotency,
)

# What handlers, services and tests import: the old single module's public names, kept in one place.
__all__ = [
    "AUDIT_ACTOR_HASH_HEX_CHARS",
    "AUDIT_MODES",
    "AUDIT_OUTBOX",
    "AUDIT_SYNC",
    "AuditMode",
    "BODY_FIELD",
    "BODY_METHODS",
    "CLIENT_IP_HEADER_DEFAULT",
    "CLIENT_IP_HEADER_ENV",
    "DEFAULT_RESPONSE_HEADERS",
    "FORM_MEDIA_TYPE",
    "FORWARDED_FOR_HEADER",
    "FunctionApp",
    "HEALTH_PATH",
    "IDEMPOTENCY_MODES",
    "IN_TRANSACTION",
    "IdempotencyMode",
    "IdempotentReplay",
    "JSON_MEDIA_TYPE",
    "KEYED",
    "KeyInTransaction",
    "METHODS",
    "NotReady",
    "OPENAPI_PATH",
    "OPS_PATH_PREFIX",
    "OutboxAudit",
    "PLATFORM_ERRORS",
    "RATE_LIMIT_DEFAULT",
    "READY_PATH",
    "RESILIENCE_PATH",
    "REQUEST_ID_HEADER",
    "REQUEST_ID_PATTERN",
    "REQUEST_ID_SOURCES",
    "Request",
    "Response",
    "Route",
    "STATE_CHANGING_METHODS",
    "StepTimings",
    "StrictModel",
    "TransactionalIdempotency",
    "TriggerCheck",
    "UNAUDITED_STATUSES",
    "UNAVAILABLE_RETRY_AFTER_SECONDS",
    "UNTRACED_PATHS",
    "Verifier",
    "client_ip",
    "client_ip_chars_max",
    "client_ip_header",
    "form_fields_max",
    "health",
    "parse_form",
    "parse_json",
    "path_param_chars_max",
    "request_body_bytes_max",
    "validation_errors_max",
    "validation_failed",
]
