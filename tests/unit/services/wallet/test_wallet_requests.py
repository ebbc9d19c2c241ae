"""A customer's top-up and withdrawal requests through the wallet function's routes (in process): bad
input is a 4xx problem naming the field with nothing written; another customer's move is a 404; a repeat
with the same Idempotency-Key is the same move."""

from __future__ import annotations

import pytest
from finfaas_dev.testing.platform import TokenMinter
from support.saga_world import OPENING_BALANCE_MINOR, SagaWorld
from support.wallet_scenarios import SETTLES

MINTER = TokenMinter.generate()


def _body(account: str = "acc-a", amount: object = 2_500, currency: str = "USD") -> dict:
    return {"account_id": account, "amount": amount, "currency": currency,
            "bank_account": {"bank_code": "BANKUS33", "account_number": SETTLES, "name": "Ada Lovelace"}}


def _nothing_written(world: SagaWorld) -> None:
    assert world.stores.wallet.events == []
    assert world.held("acc-a") == 0
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR
    assert world.balance("sys-settlement-USD") == 0
    assert [c for c in world.gateway.calls if c[0] == "orchestrator"] == []


@pytest.mark.parametrize("route", ["topups", "withdrawals"])
@pytest.mark.parametrize(("body", "field", "status"), [
    (_body(amount=0), "amount", 422),
    (_body(amount=-100), "amount", 422),
    (_body(amount="25.001"), "amount", 422),  # a fraction of a cent
    (_body(amount=25.5), "amount", 422),  # a float, never money
    (_body(currency="EUR"), "currency", 422),  # the account holds USD
    (_body(currency="XYZ"), "currency", 422),
    (_body(account="acc-b"), "account_id", 404),  # another customer's account
], ids=["zero", "negative", "fractional-minor", "float", "other-currency", "unknown-currency",
        "others-account"])
def test_bad_input_is_refused_naming_the_field_with_nothing_written(route, body, field, status):
    world = SagaWorld(minter=MINTER)

    reply = world.start_move(route, body)

    assert reply.status_code == status, reply.content
    assert reply.headers["Content-Type"] == "application/problem+json"
    problem = reply.json()
    assert field in [e["field"] for e in problem.get("errors", [])] or field in problem["detail"], problem
    _nothing_written(world)


def test_a_withdrawal_above_the_balance_is_refused_naming_amount_with_nothing_written():
    world = SagaWorld(minter=MINTER)

    reply = world.start_move("withdrawals", _body(amount=OPENING_BALANCE_MINOR + 1))

    assert reply.status_code == 422, reply.content
    assert reply.json()["code"] == "insufficient_funds"
    assert [e["field"] for e in reply.json()["errors"]] == ["amount"]
    _nothing_written(world)


def test_the_whole_balance_can_be_withdrawn_and_is_held_at_once():
    world = SagaWorld(minter=MINTER)

    reply = world.start_move("withdrawals", _body(amount=OPENING_BALANCE_MINOR))

    assert reply.status_code == 201, reply.content
    assert reply.json()["status"] == "pending"
    assert world.held("acc-a") == OPENING_BALANCE_MINOR  # before the rail has said anything


def test_the_same_key_is_the_same_move_and_another_body_with_it_is_refused():
    world = SagaWorld(minter=MINTER)

    first = world.start_move("withdrawals", _body(), key="w-1")
    again = world.start_move("withdrawals", _body(), key="w-1")
    other = world.start_move("withdrawals", _body(amount=100), key="w-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert other.status_code == 422
    assert world.held("acc-a") == 2_500  # one hold


@pytest.mark.parametrize("route", ["topups", "withdrawals"])
def test_another_customers_move_is_not_found_and_lists_show_only_ones_own(route):
    world = SagaWorld(minter=MINTER)
    move_id = world.start_move(route, _body()).json()["id"]
    world.run()
    mine = world.token(world.customer, ("payments:read",), kind="customer")
    theirs = world.token("cust-2", ("payments:read",), kind="customer")

    own = world.gateway.call("GET", "wallet", f"/{route}/{move_id}", token=mine)
    other = world.gateway.call("GET", "wallet", f"/{route}/{move_id}", token=theirs)
    wrong_kind = world.gateway.call("GET", "wallet", f"/{'withdrawals' if route == 'topups' else 'topups'}/"
                                    f"{move_id}", token=mine)
    listed = world.gateway.call("GET", "wallet", f"/{route}", token=mine).json()
    listed_by_other = world.gateway.call("GET", "wallet", f"/{route}", token=theirs).json()

    assert own.status_code == 200 and own.json()["status"] == "succeeded"
    assert other.status_code == 404
    assert wrong_kind.status_code == 404
    assert [m["id"] for m in listed["data"]] == [move_id]
    assert listed_by_other["data"] == []


@pytest.mark.parametrize("route", ["topups", "withdrawals"])
def test_a_move_whose_saga_did_not_start_is_started_by_a_later_read(route):
    # GIVEN an orchestrator that refuses the first starts: the move is recorded (a withdrawal held), the
    # answer a 503 saying to retry
    world = SagaWorld(minter=MINTER)
    world.gateway.faults[("orchestrator", "/executions")] = [(503, {"code": "unavailable"})] * 3
    first = world.start_move(route, _body(), key="lost-start")
    assert first.status_code == 503 and first.json()["code"] == "orchestrator_unavailable"
    world.run()
    [(move_id, _, _)] = world.stores.wallet.events
    assert world.move(move_id).status.value == "pending"

    # WHEN the customer reads it a few seconds later
    world.clock.sleep(6)
    token = world.token(world.customer, ("payments:read",), kind="customer")
    seen = world.gateway.call("GET", "wallet", f"/{route}/{move_id}", token=token)
    world.run()

    # THEN the read started its saga, which ran to the end once
    assert seen.status_code == 200
    assert world.move(move_id).status.value == "succeeded"
    moved = 2_500 if route == "topups" else -2_500
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR + moved
    assert world.held("acc-a") == 0


def test_a_frozen_account_takes_top_ups_but_no_withdrawal():
    from finfaas.domain.ledger import AccountStatus

    world = SagaWorld(minter=MINTER)
    world.set_status("acc-a", AccountStatus.FROZEN)

    withdrawal = world.start_move("withdrawals", _body(), key="w-frozen")
    topup = world.start_move("topups", _body(), key="t-frozen")

    assert withdrawal.status_code == 409 and withdrawal.json()["code"] == "account_frozen", withdrawal.content
    assert [e["field"] for e in withdrawal.json()["errors"]] == ["account_id"]
    assert topup.status_code == 201


def test_a_currency_the_rail_cannot_clear_is_refused_before_anything_moves():
    # GIVEN a customer's JPY account, but no JPY clearing account for the rail
    from finfaas.domain.ledger import AccountKind, NewAccount

    world = SagaWorld(minter=MINTER)
    account = NewAccount("acc-y", world.customer, "JPY", AccountKind.CUSTOMER)
    world.ledger.open_account(account, world.clock.utc())

    reply = world.start_move("topups", _body(account="acc-y", amount=500, currency="JPY"))

    assert reply.status_code == 422 and reply.json()["code"] == "currency_not_supported", reply.content
    assert [e["field"] for e in reply.json()["errors"]] == ["currency"]
    assert world.stores.wallet.events == []
