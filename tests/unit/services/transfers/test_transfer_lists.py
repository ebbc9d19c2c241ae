"""GET /transfers (a customer's own, newest first) and the operators' /_/ops/transfers and its summary,
through the transfers handler on the in-memory order store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from finfaas.domain.creditor import SealedCreditor
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.services.transfers.model import OrderEvent, Step, TransferOrder, TransferStatus
from finfaas.services.transfers.service import TransfersService
from finfaas_dev.fakes.platform import InMemoryIdempotencyStore
from finfaas_dev.fakes.transfers import InMemoryTransferOrders
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = START + timedelta(hours=2)
ADA, BOB = "cust-ada", "cust-bob"
READ, OPS = "transfers:read", "ops"


class Unused:
    """Accounts, risk and orchestrator: listing calls none of them."""

    def __getattr__(self, name: str):
        raise AssertionError(f"a list called {name}")


class World:
    def __init__(self) -> None:
        self.orders = InMemoryTransferOrders()
        self.tokens = TokenMinter.generate()
        self.handler = load_function_handler("transfers")
        self.handler.verifier.use(self.tokens.verifier())
        service = TransfersService(self.orders, Unused(), Unused(), Unused(), clock=lambda: NOW)
        self.handler.services.use(self.handler.TransfersServices(
            transfers=service, guard=IdempotencyGuard(InMemoryIdempotencyStore(), "transfers"),
            limiter=None, probe=lambda: None))

    def order(self, owner: str, minutes: int, status: TransferStatus = TransferStatus.ACCEPTED,
              debit: str = "acc-1", credit: str = "acc-2", external: bool = False) -> TransferOrder:
        at = START + timedelta(minutes=minutes)
        creditor = SealedCreditor('{"v":1}', "BANKGB22", "****5678", "pf_ab", "cd") if external else None
        order = TransferOrder(f"tr_{owner}_{minutes}", owner, debit, credit, 1000, "USD", at, updated_at=at,
                              creditor=creditor, steps=(Step("accept", "accepted", at),))
        self.orders.create(order, OrderEvent("transfer.accepted", {}))
        if status is not TransferStatus.ACCEPTED:
            order = order.changed(at, status=status)
            assert self.orders.save(order)
        return order

    def get(self, path: str, sub: str = ADA, scopes=(READ,), kind: str = "customer", **query):
        token = self.tokens.mint(sub=sub, scopes=scopes, kind=kind)
        return call(self.handler.handle, "GET", path, token=token, query=query)

    def ids(self, sub: str = ADA, **query) -> list[str]:
        reply = self.get("/transfers", sub=sub, **query)
        assert reply.status == 200, reply.body
        return [t["transfer_id"] for t in reply.json()["data"]]


@pytest.fixture
def world() -> World:
    return World()


def test_a_customer_pages_through_their_own_transfers_newest_first(world):
    mine = [world.order(ADA, minutes) for minutes in range(5)]
    world.order(BOB, 2)

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "2"} | ({"starting_after": cursor} if cursor else {})
        page = world.get("/transfers", **query).json()
        seen += [t["transfer_id"] for t in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break

    assert seen == [o.transfer_id for o in reversed(mine)]
    assert pages == 3
    assert world.ids(sub=BOB) == ["tr_cust-bob_2"]


def test_filters_by_status_account_and_creation_time_all_hold_together(world):
    world.order(ADA, 0, TransferStatus.COMPLETED, debit="acc-1", credit="acc-2")
    world.order(ADA, 1, TransferStatus.FAILED, debit="acc-2", credit="acc-3")
    world.order(ADA, 2, TransferStatus.COMPLETED, debit="acc-3", credit="acc-2", external=True)
    world.order(ADA, 3, TransferStatus.PROCESSING, debit="acc-1", credit="acc-3")

    assert world.ids(status="COMPLETED") == ["tr_cust-ada_2", "tr_cust-ada_0"]
    assert world.ids(status=["FAILED", "PROCESSING"]) == ["tr_cust-ada_3", "tr_cust-ada_1"]
    # the debit account, or the payee's account here; an external transfer's settlement side never matches
    assert world.ids(account="acc-2") == ["tr_cust-ada_1", "tr_cust-ada_0"]
    at = [(START + timedelta(minutes=m)).isoformat() for m in range(4)]
    assert world.ids(created_after=at[0], created_before=at[3]) == ["tr_cust-ada_2", "tr_cust-ada_1"]
    assert world.ids(created_after=at[0], account="acc-1") == ["tr_cust-ada_3"]
    # the same instant in another offset is the same bound
    plus_two = (START + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    assert world.ids(created_before=plus_two) == ["tr_cust-ada_0"]


@pytest.mark.parametrize(("query", "field"), [
    ({"status": "SETTLED"}, "status.0"),
    ({"created_after": "2026-03-02T09:00:00"}, "created_after"),  # no offset: which moment is it?
    ({"created_after": "yesterday"}, "created_after"),
    ({"created_after": "2026-03-02T10:00:00Z", "created_before": "2026-03-02T10:00:00Z"}, "created_before"),
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"account": "acc 1"}, "account"),
    ({"starting_after": "c1.forged.mac"}, "starting_after"),
    ({"sort": "oldest"}, "sort"),
])
def test_a_bad_filter_is_a_422_naming_it(world, query, field):
    reply = world.get("/transfers", **query)

    assert reply.status == 422, reply.body
    assert reply.header("content-type").startswith("application/problem+json")
    assert field in [e["field"] for e in reply.json()["errors"]]


def test_a_cursor_serves_only_its_caller_and_its_filters(world):
    for minutes in range(3):
        world.order(ADA, minutes, TransferStatus.COMPLETED)
        world.order(BOB, minutes, TransferStatus.COMPLETED)
    cursor = world.get("/transfers", limit="1", status="COMPLETED").json()["next_cursor"]

    assert world.get("/transfers", limit="1", status="COMPLETED", starting_after=cursor).status == 200
    other_filters = world.get("/transfers", limit="1", status="FAILED", starting_after=cursor)
    other_caller = world.get("/transfers", sub=BOB, limit="1", status="COMPLETED", starting_after=cursor)
    for reply in (other_filters, other_caller):
        assert reply.status == 422
        assert reply.json()["code"] == "invalid_cursor"


def test_operators_list_open_transfers_by_status_oldest_first_with_their_owners(world):
    world.order(ADA, 5, TransferStatus.AWAITING_REVIEW)
    world.order(BOB, 1, TransferStatus.AWAITING_REVIEW)
    world.order(BOB, 2, TransferStatus.NEEDS_ATTENTION)
    world.order(ADA, 0, TransferStatus.COMPLETED)

    page = world.get("/_/ops/transfers", sub="ops-1", scopes=(OPS,), kind="client",
                     status="AWAITING_REVIEW", limit="1")
    rest = world.get("/_/ops/transfers", sub="ops-1", scopes=(OPS,), kind="client",
                     status="AWAITING_REVIEW", starting_after=page.json()["next_cursor"])

    assert page.status == 200, page.body
    assert [(t["transfer_id"], t["owner_id"]) for t in page.json()["data"]] == [("tr_cust-bob_1", BOB)]
    assert [t["transfer_id"] for t in rest.json()["data"]] == ["tr_cust-ada_5"]
    assert rest.json()["has_more"] is False
    finished = world.get("/_/ops/transfers", sub="ops-1", scopes=(OPS,), kind="client", status="COMPLETED")
    assert finished.status == 422 and [e["field"] for e in finished.json()["errors"]] == ["status"]
    assert world.get("/_/ops/transfers", status="AWAITING_REVIEW").status == 403  # a customer's token


def test_the_summary_counts_open_transfers_and_those_in_flight_too_long(world):
    world.order(ADA, 0, TransferStatus.AWAITING_REVIEW)
    world.order(ADA, 1, TransferStatus.NEEDS_ATTENTION)
    world.order(BOB, 2, TransferStatus.NEEDS_ATTENTION)
    world.order(BOB, 3, TransferStatus.PROCESSING)  # created 117 minutes before NOW
    world.order(ADA, 110, TransferStatus.ACCEPTED)  # 10 minutes before NOW
    world.order(ADA, 119)  # 1 minute before NOW
    world.order(BOB, 4, TransferStatus.COMPLETED)

    reply = world.get("/_/ops/transfers/summary", sub="ops-1", scopes=(OPS,), kind="client",
                      in_flight_older_than_s="300")

    assert reply.status == 200, reply.body
    summary = reply.json()
    assert summary["counts"] == {"ACCEPTED": 2, "PROCESSING": 1, "AWAITING_REVIEW": 1, "NEEDS_ATTENTION": 2}
    assert (summary["in_flight_older_than_s"], summary["in_flight_older"]) == (300, 2)
    assert summary["complete"] is True
    assert world.get("/_/ops/transfers/summary", sub="ops-1", scopes=(OPS,), kind="client",
                     in_flight_older_than_s="-1").status == 422
