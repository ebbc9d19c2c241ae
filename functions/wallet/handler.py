"""The wallet function: a customer's top-ups (bank -> wallet) and withdrawals (wallet -> bank) through the
rail, each an orchestrated saga.

Apps and customers (payments:write / payments:read; a customer only for its own accounts and moves):
  POST /topups                 a top-up of one of the caller's accounts from a bank account; 201, pending
                               until the rail confirms (Idempotency-Key required: the id derives from it)
  POST /withdrawals            a withdrawal to a bank account: the amount is held at once (above the
                               available balance: 422 naming amount, nothing written); 201, pending
  GET  /topups, /withdrawals   the caller's own, newest first (an app names ?customer=); cursor pagination
  GET  /topups/{id}, /withdrawals/{id}   one (another customer's: 404)
The sagas (the orchestrator's token, scope wallet:saga): POST /saga/credit|fail (top-ups),
/saga/post|void (withdrawals), /saga/attention (either).
Operators (ops): POST /_/ops/topups/{id}/decision (credit|fail), /_/ops/withdrawals/{id}/decision
(post|void), for a move that needs attention only (Idempotency-Key required).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform.audit import AuditLog
from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.idempotency import IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER, IdempotencyGuard
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.wallet.api import (
    ERRORS,
    DecisionBody,
    MoveFailBody,
    MoveList,
    MoveListQuery,
    MoveStepBody,
    MoveView,
    NewMoveBody,
    move_view,
)
from finfaas.services.wallet.model import MoveKind
from finfaas.services.wallet.service import Caller, WalletService

FUNCTION_NAME = "wallet"
READ, WRITE, SAGA = "payments:read", "payments:write", "wallet:saga"
MONEY_LIMIT = RateLimit("wallet_money", requests_max=600, window_seconds=60, tokens_per_call=10)
READ_LIMIT = RateLimit("wallet_read", requests_max=6_000, window_seconds=60, tokens_per_call=50)
LIMITS = {limit.name: limit for limit in (MONEY_LIMIT, READ_LIMIT)}
MOVE_PATHS = {MoveKind.TOPUP: "/function/wallet/topups/{}",
              MoveKind.WITHDRAWAL: "/function/wallet/withdrawals/{}"}


@dataclass
class WalletServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    wallet: WalletService
    guard: IdempotencyGuard
    limiter: RateLimiter | None
    audit: AuditLog | None
    probe: Callable[[], None]
    dynamodb_calls: Callable[[], dict[str, int]] = dict


def build_services() -> WalletServices:
    """The services on this stage's tables, the gateway, the wallet-client secret and the PII key (lazily)."""
    from finfaas.domain.creditor import CreditorVault
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, signing_key_from_text
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.platform.cursors import CursorCodec
    from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, SecretKeyedDigests, pii_key_id
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.payments.service import LedgerStoreAccounts
    from finfaas.services.suite_clients import OrchestratorClient, SuiteClient
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import DynamoCallMeter, ledger_store_from_config
    from finfaas.store.ratelimit_store import RateLimitStore
    from finfaas.store.wallet_store import WalletStore

    meter = DynamoCallMeter()
    meter.start()
    addresses = config.function_addresses()  # the gateway, or each function's own address
    suite = SuiteClient(addresses, ServiceTokens.from_secret(addresses, client_name=FUNCTION_NAME))
    moves = WalletStore()
    # Bank accounts are sealed with the stage's PII key for the rail, fingerprinted with its digest key.
    vault = CreditorVault(EnvelopeCipher(KmsDataKeys(pii_key_id())), SecretKeyedDigests())
    wallet = WalletService(moves, LedgerStoreAccounts(LedgerService(ledger_store_from_config())),
                           OrchestratorClient(suite), vault=vault, cursors=CursorCodec.from_config())
    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    return WalletServices(
        wallet=wallet,
        guard=IdempotencyGuard(IdempotencyStore(), FUNCTION_NAME),
        limiter=RateLimiter(RateLimitStore(), LIMITS),
        audit=AuditLog(AuditStore(), FUNCTION_NAME, key=audit_key),
        probe=lambda: moves.get("readiness-probe"),
        dynamodb_calls=meter.snapshot,
    )


services = Lazy(build_services)
verifier = ReplaceableVerifier()
app = FunctionApp(FUNCTION_NAME, errors=ERRORS, verifier=verifier, idempotency=lambda: services.get().guard,
                  limiter=lambda: services.get().limiter, audit=lambda: services.get().audit)
SAGA_ROUTE: dict[str, Any] = {"scopes": [SAGA], "rate_limit": None}


def caller(req: Request) -> Caller:
    assert req.principal is not None
    return Caller(req.principal.sub, req.principal.kind)


def _start(req: Request, kind: MoveKind, body: NewMoveBody) -> Response:
    """The move is the Idempotency-Key's record (its id derives from the caller and the key): a repeat
    answers as the first did, marked replayed; the same key with another body is a 422."""
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    assert key is not None, "idempotency='keyed' routes always carry a key"
    move, repeated = services.get().wallet.start(caller(req), kind, key, body)
    req.audit_target = f"{kind.value}:{move.move_id}"
    headers = {"Location": MOVE_PATHS[kind].format(move.move_id)}
    if repeated:
        headers[REPLAYED_HEADER] = "true"
    return Response(move_view(move), status=201, headers=headers)


def _list(req: Request, kind: MoveKind, query: MoveListQuery) -> MoveList:
    page, next_cursor = services.get().wallet.list_moves(caller(req), kind, query)
    return MoveList(data=[move_view(m) for m in page.moves], has_more=next_cursor is not None,
                    next_cursor=next_cursor)


@app.route("POST", "/topups", scopes=[WRITE], body=NewMoveBody, status=201, response=MoveView,
           idempotency="keyed", rate_limit=MONEY_LIMIT.name)
def create_topup(req: Request, body: NewMoveBody) -> Response:
    """Top up one of the caller's accounts from a bank account: credited when the rail confirms."""
    return _start(req, MoveKind.TOPUP, body)


@app.route("POST", "/withdrawals", scopes=[WRITE], body=NewMoveBody, status=201, response=MoveView,
           idempotency="keyed", rate_limit=MONEY_LIMIT.name)
def create_withdrawal(req: Request, body: NewMoveBody) -> Response:
    """Withdraw to a bank account: held now, posted when the rail pays out, released if it does not."""
    return _start(req, MoveKind.WITHDRAWAL, body)


@app.route("GET", "/topups", scopes=[READ], query=MoveListQuery, rate_limit=READ_LIMIT.name)
def list_topups(req: Request, query: MoveListQuery) -> MoveList:
    """The caller's own top-ups, newest first; pass next_cursor back as starting_after."""
    return _list(req, MoveKind.TOPUP, query)


@app.route("GET", "/withdrawals", scopes=[READ], query=MoveListQuery, rate_limit=READ_LIMIT.name)
def list_withdrawals(req: Request, query: MoveListQuery) -> MoveList:
    """The caller's own withdrawals, newest first; pass next_cursor back as starting_after."""
    return _list(req, MoveKind.WITHDRAWAL, query)


@app.route("GET", "/topups/{move_id}", scopes=[READ], rate_limit=READ_LIMIT.name)
def get_topup(req: Request, move_id: str) -> MoveView:
    """A top-up: pending, succeeded (credited), failed or needs_attention."""
    return move_view(services.get().wallet.move(caller(req), MoveKind.TOPUP, move_id))


@app.route("GET", "/withdrawals/{move_id}", scopes=[READ], rate_limit=READ_LIMIT.name)
def get_withdrawal(req: Request, move_id: str) -> MoveView:
    """A withdrawal: pending (held), succeeded (paid out), failed (released) or needs_attention."""
    return move_view(services.get().wallet.move(caller(req), MoveKind.WITHDRAWAL, move_id))


# --- the sagas' own steps -----------------------------------------------------------------------------


@app.route("POST", "/saga/credit", body=MoveStepBody, **SAGA_ROUTE)
def saga_credit(req: Request, body: MoveStepBody) -> MoveView:
    """The rail collected a top-up: the wallet is credited from the rail's clearing account."""
    return move_view(services.get().wallet.credit(body.move_id))


@app.route("POST", "/saga/fail", body=MoveFailBody, **SAGA_ROUTE)
def saga_fail(req: Request, body: MoveFailBody) -> MoveView:
    """The rail did not collect a top-up: failed, nothing credited."""
    return move_view(services.get().wallet.fail_topup(body.move_id, body.error.Error))


@app.route("POST", "/saga/post", body=MoveStepBody, **SAGA_ROUTE)
def saga_post(req: Request, body: MoveStepBody) -> MoveView:
    """The rail paid a withdrawal out: its hold is posted to the clearing account."""
    return move_view(services.get().wallet.post(body.move_id))


@app.route("POST", "/saga/void", body=MoveFailBody, **SAGA_ROUTE)
def saga_void(req: Request, body: MoveFailBody) -> MoveView:
    """The rail did not pay a withdrawal out: its hold is released."""
    return move_view(services.get().wallet.void(body.move_id, body.error.Error))


@app.route("POST", "/saga/attention", body=MoveFailBody, **SAGA_ROUTE)
def saga_attention(req: Request, body: MoveFailBody) -> MoveView:
    """The rail's answer is unknown or a money step failed: needs_attention, for an operator."""
    return move_view(services.get().wallet.flag_attention(body.move_id, body.error.Error))


@app.route("POST", "/_/ops/topups/{move_id}/decision", body=DecisionBody, idempotency="required",
           rate_limit=None)
def decide_topup(req: Request, move_id: str, body: DecisionBody) -> MoveView:
    """An operator credits (the rail collected) or fails (it did not) a top-up that needs attention."""
    assert req.principal is not None
    req.audit_target = f"topup:{move_id}"
    return move_view(services.get().wallet.decide(MoveKind.TOPUP, move_id, body.decision, req.principal.sub))


@app.route("POST", "/_/ops/withdrawals/{move_id}/decision", body=DecisionBody, idempotency="required",
           rate_limit=None)
def decide_withdrawal(req: Request, move_id: str, body: DecisionBody) -> MoveView:
    """An operator posts (the rail paid out) or voids (it did not) the hold of a withdrawal that needs
    attention."""
    assert req.principal is not None
    req.audit_target = f"withdrawal:{move_id}"
    return move_view(services.get().wallet.decide(MoveKind.WITHDRAWAL, move_id, body.decision,
                                                  req.principal.sub))


@app.route("GET", "/_/ops/stats", rate_limit=None)
def stats(req: Request) -> dict[str, Any]:
    """This process's DynamoDB calls by operation and table, and the platform steps' cost."""
    return {"dynamodb_calls": services.get().dynamodb_calls(), "steps": app.timings.snapshot()}


@app.readiness_check("wallet-table")
def wallet_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
