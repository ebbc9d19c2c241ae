"""The accounts function: a customer's accounts, balances, statements and profile; operator controls."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.idempotency import IDEMPOTENCY_KEY_HEADER, IdempotencyGuard
from finfaas.platform.ratelimit import RateLimiter
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.accounts.api import (
    ERRORS,
    AccountList,
    AccountView,
    BalanceAt,
    BalanceAtQuery,
    OpenAccountBody,
    OpsAccountView,
    PageQuery,
    Statement,
)
from finfaas.services.accounts.service import AccountsService
from finfaas.services.customers.api import ProfileBody, ProfileSaved, ProfileView, profile_saved, profile_view
from finfaas.services.customers.model import Caller
from finfaas.services.customers.service import CustomerProfileService

READ, WRITE = "accounts:read", "accounts:write"


@dataclass
class AccountsServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    accounts: AccountsService
    profiles: CustomerProfileService
    idempotency: IdempotencyGuard
    limiter: RateLimiter
    probe: Callable[[], None]


def build_services() -> AccountsServices:
    """The services on this stage's tables, KMS key and audit chain (imports AWS code: call lazily)."""
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, AuditLog, signing_key_from_text
    from finfaas.platform.cursors import CursorCodec
    from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, pii_key_id
    from finfaas.services.customers.service import AuditTrail
    from finfaas.services.ledger.service import LedgerService
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.customers_store import CustomersStore
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.ratelimit_store import RateLimitStore

    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    audit = AuditTrail(AuditLog(AuditStore(), "accounts", key=audit_key))
    ledger_store = ledger_store_from_config()
    return AccountsServices(
        accounts=AccountsService(LedgerService(ledger_store), audit, CursorCodec.from_config()),
        profiles=CustomerProfileService(CustomersStore(), EnvelopeCipher(KmsDataKeys(pii_key_id())), audit),
        idempotency=IdempotencyGuard(IdempotencyStore(), "accounts"),
        limiter=RateLimiter(RateLimitStore()),
        probe=lambda: ledger_store.get_account("readiness-probe"),
    )


services = Lazy(build_services)
verifier = ReplaceableVerifier()
# Audit is the services' own (domain actions, profile reads included), so the app is not given one.
app = FunctionApp("accounts", errors=ERRORS, verifier=verifier,
                  idempotency=lambda: services.get().idempotency, limiter=lambda: services.get().limiter)


def _key(req: Request) -> str:
    """The Idempotency-Key the platform has already validated for this route."""
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    assert key is not None, "idempotency='required' routes always carry a key"
    return key


# --- accounts ---------------------------------------------------------------------------------------


@app.route("POST", "/accounts", scopes=[WRITE], body=OpenAccountBody, status=201, response=AccountView,
           idempotency="required")
def open_account(req: Request, body: OpenAccountBody) -> Response:
    """Open an account for the caller (owner, balances and status are never taken from the body)."""
    view = services.get().accounts.open(Caller.of(req), body, _key(req))
    return Response(view, 201, {"Location": f"/accounts/{view.account_id}"})


@app.route("GET", "/accounts", scopes=[READ], query=PageQuery)
def list_accounts(req: Request, query: PageQuery) -> AccountList:
    """The caller's accounts, oldest first; cursor pagination."""
    return services.get().accounts.list_mine(Caller.of(req), query)


@app.route("GET", "/accounts/{account_id}", scopes=[READ])
def get_account(req: Request, account_id: str) -> AccountView:
    """One of the caller's accounts with its balances (404 for any account not the caller's)."""
    return services.get().accounts.get_mine(Caller.of(req), account_id)


@app.route("GET", "/accounts/{account_id}/statement", scopes=[READ], query=PageQuery)
def get_statement(req: Request, account_id: str, query: PageQuery) -> Statement:
    """Entries newest first with the posted balance after each; cursor pagination."""
    return services.get().accounts.statement(Caller.of(req), account_id, query)


@app.route("GET", "/accounts/{account_id}/balance", scopes=[READ], query=BalanceAtQuery)
def get_balance_at(req: Request, account_id: str, query: BalanceAtQuery) -> BalanceAt:
    """The posted balance as it was at a moment (`at`, with a UTC offset)."""
    return services.get().accounts.balance_at(Caller.of(req), account_id, query.at)


# --- operators --------------------------------------------------------------------------------------


@app.route("GET", "/_/ops/accounts/{account_id}")
def ops_get_account(req: Request, account_id: str) -> OpsAccountView:
    """Any account, with its owner (ops scope)."""
    return services.get().accounts.get_any(account_id)


@app.route("GET", "/_/ops/accounts/{account_id}/statement", query=PageQuery)
def ops_get_statement(req: Request, account_id: str, query: PageQuery) -> Statement:
    """Any account's entries newest first, holds included (ops scope); cursor pagination."""
    return services.get().accounts.statement_of_any(Caller.of(req), account_id, query)


@app.route("POST", "/_/ops/accounts/{account_id}/freeze", idempotency="required")
def freeze_account(req: Request, account_id: str) -> OpsAccountView:
    """Freeze: no new debits (ops scope)."""
    return services.get().accounts.freeze(Caller.of(req), account_id)


@app.route("POST", "/_/ops/accounts/{account_id}/unfreeze", idempotency="required")
def unfreeze_account(req: Request, account_id: str) -> OpsAccountView:
    """Unfreeze a frozen account (ops scope)."""
    return services.get().accounts.unfreeze(Caller.of(req), account_id)


@app.route("POST", "/_/ops/accounts/{account_id}/close", idempotency="required")
def close_account(req: Request, account_id: str) -> OpsAccountView:
    """Close an empty account for good: 409 while it holds money or has holds (ops scope)."""
    return services.get().accounts.close(Caller.of(req), account_id)


# --- the customer's profile -------------------------------------------------------------------------


PROFILE_WRITE_OPENAPI = {
    "description": "A full replace, so repeating it is harmless and no Idempotency-Key is kept: the "
                   "idempotency table holds request fingerprints in clear, and a profile's fingerprint "
                   "could be matched against guessed values. The answer carries no personal data.",
}


@app.route("POST", "/customers/me", scopes=[WRITE], body=ProfileBody, openapi=PROFILE_WRITE_OPENAPI)
def save_profile(req: Request, body: ProfileBody) -> ProfileSaved:
    """Replace the caller's profile (name, national id, phone); stored encrypted."""
    receipt = services.get().profiles.save(Caller.of(req), body.name, body.national_id, body.phone)
    return profile_saved(receipt)


@app.route("GET", "/customers/me", scopes=[READ])
def get_profile(req: Request) -> ProfileView:
    """The caller's profile, decrypted for this response only."""
    return profile_view(services.get().profiles.read(Caller.of(req)))


@app.readiness_check("ledger-table")
def ledger_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
