"""The transfer saga end to end in one process: every path a transfer can take, and what it leaves behind.

Each test runs the real handlers (orchestrator, transfers, risk, ledger, rail) on in-memory stores;
see saga_world.py. "Zero net effect" means every balance is back where it was and no hold is open.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from finfaas.domain.ledger import AccountKind, AccountStatus, NewAccount
from finfaas.domain.limits import Tier
from finfaas.platform.events import TRANSFERS_SOURCE, EventEnvelope
from finfaas.services.rail.api import SETTLE_EVENT_TYPE
from finfaas.services.transfers.model import transfer_id_for
from finfaas.workflow.model import Status
from support.saga_world import (
    CUSTOMER,
    OPENING_BALANCE_MINOR,
    OTHER_CUSTOMER,
    QUEUE_MAC,
    FakeResponse,
    SagaWorld,
)

SCHEMAS = Path(__file__).resolve().parents[4] / "events" / "schemas"
INTERNAL = {"debit_account_id": "acc-a", "credit_account_id": "acc-b", "amount": 2_500, "currency": "USD"}
SETTLEMENT = "sys-settlement-USD"


def external(account_number: str = "12345678", amount: int = 2_500) -> dict:
    return {
        "debit_account_id": "acc-a",
        "amount": amount,
        "currency": "USD",
        "reference": "invoice 7",
        "creditor": {"bank_code": "BANKGB22", "account_number": account_number, "name": "Carol"},
    }


def started(world: SagaWorld, body: dict, key: str = "k-1") -> str:
    reply = world.start_transfer(body, key)
    assert reply.status_code == 202, reply.content
    return reply.json()["transfer_id"]


def events_of(world: SagaWorld, transfer_id: str) -> list[str]:
    return [e.type for e in world.orders.events if e.data["transfer_id"] == transfer_id]


def assert_untouched(world: SagaWorld) -> None:
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR
    assert world.balance("acc-b") == 0
    assert world.balance(SETTLEMENT) == 0
    assert world.held("acc-a") == 0
    report = world.ledger_check()
    assert report.clean, report.problems


def assert_moved(world: SagaWorld, amount: int, to: str) -> None:
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR - amount
    assert world.balance(to) == amount
    assert world.held("acc-a") == 0
    report = world.ledger_check()
    assert report.clean, report.problems


# --- money moves ------------------------------------------------------------------------------------


def test_an_internal_transfer_completes_and_moves_the_money_once():
    world = SagaWorld()

    transfer_id = started(world, INTERNAL)
    world.run()

    assert world.status(transfer_id) is Status.SUCCEEDED
    assert world.transfer(transfer_id).status == "COMPLETED"
    assert world.path(transfer_id) == [
        "Validate",
        "ScreenDecision",
        "Reserve",
        "RouteByDestination",
        "Post",
        "Complete",
        "Completed",
    ]
    assert events_of(world, transfer_id) == ["transfer.accepted", "transfer.completed"]
    assert_moved(world, 2_500, "acc-b")


def test_a_transfer_to_another_bank_waits_for_the_rails_signed_notice_then_posts():
    world = SagaWorld()

    transfer_id = started(world, external())
    world.run()

    assert world.status(transfer_id) is Status.SUCCEEDED
    assert "HandOffToRail" in world.path(transfer_id)
    assert world.rail_store.get(transfer_id).status == "SETTLED"
    assert_moved(world, 2_500, SETTLEMENT)


def test_the_payee_is_opened_only_by_the_rail_and_shown_masked_everywhere_else():
    world = SagaWorld()
    body = external(account_number="GB29NWBK60161331926819")
    body["creditor"]["name"] = "Carol Danvers"

    transfer_id = started(world, body)
    world.run()

    # THEN it paid (the rail opened the payee), and no store, event or execution holds the payee
    assert world.rail_store.get(transfer_id).status == "SETTLED"
    execution = world.store.get(f"transfer:{transfer_id}")
    kept = repr((world.transfer(transfer_id), world.orders.events, world.rail_store.get(transfer_id),
                 execution, world.store.history(f"transfer:{transfer_id}", 0, 1000), vars(world.risk_store)))
    assert "60161331926819" not in kept and "Carol" not in kept and "Danvers" not in kept
    masked = {"bank_code": "BANKGB22", "account_number_masked": "****6819"}
    assert [e.data["creditor"] for e in world.orders.events if e.data["transfer_id"] == transfer_id] == [
        masked, masked]
    view = world.gateway.call("GET", "transfers", f"/transfers/{transfer_id}", token=world.token(
        CUSTOMER, ("transfers:read",), kind="customer"))
    assert view.json()["creditor"] == masked
    # the data keys: one to seal at acceptance, one unwrap when the rail pays
    assert (world.data_keys.generated, world.data_keys.unwrapped) == (1, 1)


def test_a_repeated_external_request_is_recognised_and_another_payee_under_its_key_is_refused():
    world = SagaWorld()
    first = world.start_transfer(external(), key="k-1")
    again = world.start_transfer(external(), key="k-1")
    renamed = external()
    renamed["creditor"]["name"] = "Mallory"

    other = world.start_transfer(renamed, key="k-1")

    assert again.status_code == 202 and again.json()["transfer_id"] == first.json()["transfer_id"]
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert other.status_code == 422


def test_a_rail_rejection_voids_the_hold():
    world = SagaWorld()

    transfer_id = started(world, external(account_number="99990001"))
    world.run()

    order = world.transfer(transfer_id)
    assert world.status(transfer_id) is Status.FAILED
    assert order.status == "COMPENSATED"
    assert order.failure["code"] == "rejected"
    assert world.path(transfer_id)[-4:] == ["HandOffToRail", "VoidHold", "RecordCompensation", "Compensated"]
    assert events_of(world, transfer_id) == ["transfer.accepted", "transfer.compensated"]
    assert_untouched(world)


def test_a_rail_that_never_answers_is_recalled_and_the_hold_voided_once_it_confirms_no_settlement():
    world = SagaWorld()

    transfer_id = started(world, external(account_number="99990003"))  # the sandbox's stuck payment
    world.run()

    assert world.transfer(transfer_id).status == "COMPENSATED"
    assert world.transfer(transfer_id).failure["code"] == "not_settled"
    assert world.path(transfer_id)[-7:] == [
        "HandOffToRail",
        "RecallFromRail",
        "RecallOutcome",
        "RailNotSettled",
        "VoidHold",
        "RecordCompensation",
        "Compensated",
    ]
    assert world.rail_store.get(transfer_id).status == "CANCELLED"
    assert_untouched(world)


def test_a_rail_whose_notice_was_lost_is_asked_and_the_settled_payment_is_posted():
    world = SagaWorld()

    transfer_id = started(world, external(account_number="99990002"))  # settles, notice lost
    world.run()

    assert world.transfer(transfer_id).status == "COMPLETED"
    assert world.path(transfer_id)[-5:] == [
        "RecallFromRail",
        "RecallOutcome",
        "Post",
        "Complete",
        "Completed",
    ]
    assert_moved(world, 2_500, SETTLEMENT)


def test_when_the_rail_cannot_say_the_transfer_needs_attention_until_an_operator_decides():
    # GIVEN a stuck payment and a rail whose recall keeps failing
    world = SagaWorld()
    world.gateway.faults[("rail", "/recall")] = [(503, {"code": "rail_down"})] * 13
    transfer_id = started(world, external(account_number="99990003"))

    world.run(until=lambda: world.transfer(transfer_id).task_token is not None)

    # THEN the transfer shows NEEDS_ATTENTION with the funds still held, and the saga waits
    order = world.transfer(transfer_id)
    assert order.status == "NEEDS_ATTENTION"
    assert world.status(transfer_id) is Status.RUNNING
    assert world.held("acc-a") == 2_500
    # WHEN an operator (after asking the bank) decides to void
    assert world.decide(transfer_id, "void").status_code == 200
    world.run()
    assert world.transfer(transfer_id).status == "COMPENSATED"
    assert_untouched(world)


def test_an_internal_post_that_is_refused_voids_the_hold():
    world = SagaWorld()
    world.gateway.faults[("ledger", "/post")] = [(409, {"code": "account_closed", "detail": "closed"})]

    transfer_id = started(world, INTERNAL)
    world.run()

    assert world.transfer(transfer_id).status == "COMPENSATED"
    assert world.transfer(transfer_id).failure == {"code": "account_closed", "detail": "closed"}
    assert_untouched(world)


# --- refusals before money moves --------------------------------------------------------------------


def test_insufficient_funds_fail_the_transfer_with_nothing_held_and_the_days_total_given_back():
    world = SagaWorld()

    transfer_id = started(world, {**INTERNAL, "debit_account_id": "acc-c"})  # the customer's empty account
    world.run()

    order = world.transfer(transfer_id)
    assert order.status == "FAILED"
    assert order.failure["code"] == "insufficient_funds"
    assert world.path(transfer_id)[-3:] == ["Reserve", "RecordFailure", "Failed"]
    assert events_of(world, transfer_id) == ["transfer.accepted", "transfer.failed"]
    assert world.orders.day_total_minor(CUSTOMER, order.usage_day, "USD") == 0
    assert_untouched(world)


def test_an_unanswered_reserve_is_compensated_and_voiding_a_hold_that_never_was_is_a_no_op():
    # GIVEN a ledger that answers 503 to every attempt of the reserve and never holds anything
    world = SagaWorld()
    world.gateway.faults[("ledger", "/pending")] = [(503, {"code": "ledger_busy"})] * 6

    transfer_id = started(world, INTERNAL)
    world.run()

    # THEN the void finds no hold, waits out any reserve still in flight, finds none again: FAILED
    order = world.transfer(transfer_id)
    assert world.path(transfer_id)[-6:] == [
        "Reserve",
        "VoidHold",
        "ConfirmNoHold",
        "VoidHoldAgain",
        "RecordFailure",
        "Failed",
    ]
    assert (order.status, order.failure["code"]) == ("FAILED", "ledger_busy")
    assert_untouched(world)


def test_a_hold_whose_answer_was_lost_is_voided():
    # GIVEN a ledger that applies the reserve but whose answers never arrive (a gateway timing out)
    world = SagaWorld()

    def answers_lost(forward, method, url, headers, data):
        reply = forward(method, url, headers, data)
        return (
            type(reply)(504, {}, b'{"code":"upstream_timeout"}') if url.endswith("/ledger/pending") else reply
        )

    world.gateway.interceptor = answers_lost
    transfer_id = started(world, INTERNAL)
    world.run()

    assert world.transfer(transfer_id).status == "COMPENSATED"
    assert world.path(transfer_id)[-4:] == ["Reserve", "VoidHold", "RecordCompensation", "Compensated"]
    assert_untouched(world)


def open_account(world: SagaWorld, account_id: str, owner: str, currency: str) -> None:
    new = NewAccount(account_id, owner, currency, AccountKind.CUSTOMER)
    world.ledger.open_account(new, world.clock.utc())


@pytest.mark.parametrize(
    ("body", "setup", "status", "code", "field"),
    [
        ({**INTERNAL, "debit_account_id": "acc-b", "credit_account_id": "acc-a"}, None, 404,
         "account_not_found", "debit_account_id"),
        ({**INTERNAL, "credit_account_id": "acc-nowhere"}, None, 404,
         "account_not_found", "credit_account_id"),
        (INTERNAL, ("acc-b", AccountStatus.FROZEN), 404, "account_not_found", "credit_account_id"),
        ({**INTERNAL, "credit_account_id": "acc-eur-b"}, None, 404, "account_not_found", "credit_account_id"),
        ({**INTERNAL, "credit_account_id": SETTLEMENT}, None, 404, "account_not_found", "credit_account_id"),
        (INTERNAL, ("acc-a", AccountStatus.FROZEN), 422, "account_not_active", "debit_account_id"),
        ({**INTERNAL, "credit_account_id": "acc-c"}, ("acc-c", AccountStatus.CLOSED), 422,
         "account_not_active", "credit_account_id"),
        ({**INTERNAL, "debit_account_id": "acc-eur-a"}, None, 422, "currency_mismatch", "currency"),
        ({**INTERNAL, "amount": 1_000_001}, None, 422, "per_transfer_limit_exceeded", "amount"),
        ({**INTERNAL, "amount": 2**63 + 1}, None, 422, "per_transfer_limit_exceeded", "amount"),
        ({**INTERNAL, "amount": 10**24}, None, 422, "validation_failed", "amount"),
        ({**INTERNAL, "amount": 0}, None, 422, "validation_failed", "amount"),
    ],
    ids=[
        "not-the-owner",
        "no-such-payee",
        "others-payee-frozen",
        "others-payee-in-eur",
        "system-account",
        "source-frozen",
        "own-payee-closed",
        "own-source-in-eur",
        "per-transfer-limit",
        "amount-2-to-the-63-plus-1",
        "amount-beyond-any-ledger",
        "amount-zero",
    ],
)
def test_what_the_request_and_the_callers_accounts_decide_is_refused_at_once_with_nothing_recorded(
    body, setup, status, code, field
):
    # GIVEN the customer's own EUR account and another customer's (every other account is USD)
    world = SagaWorld()
    open_account(world, "acc-eur-a", CUSTOMER, "EUR")
    open_account(world, "acc-eur-b", OTHER_CUSTOMER, "EUR")
    if setup:
        world.set_status(*setup)

    reply = world.start_transfer(body, key="k-1")

    assert (reply.status_code, reply.json()["code"]) == (status, code), reply.content
    assert [e["field"] for e in reply.json()["errors"]] == [field]
    assert world.orders.get(transfer_id_for(CUSTOMER, "k-1")) is None
    assert world.orders.events == []
    assert world.store.get(f"transfer:{transfer_id_for(CUSTOMER, 'k-1')}") is None


def test_another_customers_payee_account_answers_exactly_as_a_missing_one():
    # GIVEN another customer's frozen USD account and EUR account, and an account that does not exist
    world = SagaWorld()
    open_account(world, "acc-eur-b", OTHER_CUSTOMER, "EUR")
    open_account(world, "acc-frozen-b", OTHER_CUSTOMER, "USD")
    world.set_status("acc-frozen-b", AccountStatus.FROZEN)

    replies = [
        world.start_transfer({**INTERNAL, "credit_account_id": payee}, key=payee)
        for payee in ("acc-eur-b", "acc-frozen-b", "acc-nowhere")
    ]

    # THEN the three answers differ in nothing but the account id they name
    bodies = [r.content.decode().replace(payee, "X") for r, payee in
              zip(replies, ("acc-eur-b", "acc-frozen-b", "acc-nowhere"), strict=True)]
    assert {r.status_code for r in replies} == {404}
    assert bodies[0] == bodies[1] == bodies[2]
    assert "EUR" not in bodies[0] and "FROZEN" not in bodies[0]


def test_an_operator_client_cannot_start_a_transfer_from_a_customers_account():
    world = SagaWorld()
    ops = world.token("ops-1", ("ops", "transfers:write"))

    reply = world.gateway.call("POST", "transfers", "/transfers", INTERNAL, ops, {"Idempotency-Key": "k-1"})

    assert (reply.status_code, reply.json()["code"]) == (404, "account_not_found")
    assert world.orders.events == []


def test_a_repeat_after_an_account_changed_answers_as_the_first_request_did():
    world = SagaWorld()
    first = world.start_transfer(INTERNAL, key="same")
    world.set_status("acc-a", AccountStatus.FROZEN)

    again = world.start_transfer(INTERNAL, key="same")
    other = world.start_transfer({**INTERNAL, "amount": 1}, key="same")

    assert (again.status_code, again.json()) == (202, first.json())
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("body", "change", "code", "detail"),
    [
        # another customer's account: its status stays private, even to the saga's failure detail
        (INTERNAL, ("acc-b", AccountStatus.FROZEN), "account_not_found", "account acc-b not found"),
        (INTERNAL, ("acc-a", AccountStatus.FROZEN), "account_not_active", "account acc-a is FROZEN"),
        ({**INTERNAL, "credit_account_id": "acc-c"}, ("acc-c", AccountStatus.FROZEN), "account_not_active",
         "account acc-c is FROZEN"),
        ({**INTERNAL, "amount": 150_000}, Tier.BASIC, "per_transfer_limit_exceeded",
         "150000 is above the BASIC per-transfer limit of 100000 USD minor units"),
    ],
    ids=["others-payee-frozen", "source-frozen", "own-payee-frozen", "tier-lowered"],
)
def test_the_saga_refuses_what_changed_after_acceptance_before_anything_is_held(body, change, code, detail):
    world = SagaWorld()
    transfer_id = started(world, body)
    if isinstance(change, Tier):
        world.orders.set_tier(CUSTOMER, change)
    else:
        world.set_status(*change)

    world.run()

    order = world.transfer(transfer_id)
    assert (order.status, order.failure["code"], order.failure["detail"]) == ("FAILED", code, detail)
    assert "Reserve" not in world.path(transfer_id)
    assert world.held("acc-a") == 0 and world.ledger_check().clean


def test_the_daily_limit_counts_what_went_through_and_gives_back_what_did_not():
    # GIVEN a BASIC customer: 1,000 USD per transfer, 2,000 USD per day
    world = SagaWorld()
    world.orders.set_tier(CUSTOMER, Tier.BASIC)
    # WHEN a 900 USD transfer is rejected by the rail (compensated), then three more of 900 USD are sent
    rejected = started(world, external(account_number="99990001", amount=90_000), key="k-0")
    world.run()
    outcomes = []
    for n in range(1, 4):
        transfer_id = started(world, {**INTERNAL, "amount": 90_000}, key=f"k-{n}")
        world.run()
        outcomes.append(world.transfer(transfer_id))

    # THEN the compensated one counted nothing; the third of the others is over the day's 2,000 USD
    assert world.transfer(rejected).status == "COMPENSATED"
    assert [o.status for o in outcomes] == ["COMPLETED", "COMPLETED", "FAILED"]
    assert outcomes[2].failure["code"] == "daily_limit_exceeded"
    assert world.orders.day_total_minor(CUSTOMER, outcomes[0].usage_day, "USD") == 180_000


def test_a_blocked_payee_is_declined_with_the_reason():
    world = SagaWorld()
    ops = world.token("ops-1", ("ops", "ops:act"))
    world.gateway.call("PUT", "risk", "/_/ops/blocklist/destination/acc-b", {"reason": "fraud report 7"}, ops)

    transfer_id = started(world, INTERNAL)
    world.run()

    order = world.transfer(transfer_id)
    assert (order.status, order.failure["code"]) == ("FAILED", "risk_declined")
    assert order.screening["reasons"] == ["blocked_party"]
    assert_untouched(world)


def test_a_payee_at_another_bank_is_blocked_from_the_body_and_named_in_urls_only_by_fingerprint():
    world = SagaWorld()
    ops = world.token("ops-1", ("ops", "ops:act"))

    # WHEN an operator blocks the payee by its account number, which goes in the body
    blocked = world.gateway.call("POST", "risk", "/_/ops/blocklist", {
        "kind": "destination", "value": "BANKGB22:12345678", "reason": "fraud report 9"}, ops)

    # THEN the entry holds the payee's fingerprint, never its number, and an external transfer is declined
    assert blocked.status_code == 200, blocked.content
    entry = blocked.json()["entry"]
    assert entry.startswith("destination:pf_") and "12345678" not in entry
    transfer_id = started(world, external())
    world.run()
    assert (world.transfer(transfer_id).failure or {}).get("code") == "risk_declined"

    # AND a path naming the number is refused; the fingerprint lifts the block
    for method in ("PUT", "DELETE"):
        refused = world.gateway.call(method, "risk", "/_/ops/blocklist/destination/BANKGB22:12345678",
                                     {"reason": "x"} if method == "PUT" else None, ops)
        assert refused.status_code == 422, (method, refused.content)
    fingerprint = entry.split(":", 1)[1]
    assert world.gateway.call("DELETE", "risk", f"/_/ops/blocklist/destination/{fingerprint}",
                              token=ops).status_code == 204


# --- operator reviews and degradation ---------------------------------------------------------------


@pytest.mark.parametrize(("decision", "status"), [("approve", "COMPLETED"), ("reject", "FAILED")])
def test_a_transfer_the_rules_send_to_review_waits_for_an_operator(decision, status):
    # GIVEN a PREMIUM customer sending 10,000 USD (the amount threshold)
    world = SagaWorld()
    world.orders.set_tier(CUSTOMER, Tier.PREMIUM)
    transfer_id = started(world, {**INTERNAL, "amount": 1_000_000})

    world.run(until=lambda: world.transfer(transfer_id).task_token is not None)
    assert world.transfer(transfer_id).status == "AWAITING_REVIEW"
    assert world.held("acc-a") == 0  # nothing is reserved while the review is pending

    reply = world.decide(transfer_id, decision)
    world.run()

    assert reply.status_code == 200
    assert world.transfer(transfer_id).status == status
    assert world.ledger_check().clean


def _losing_the_reply_of_the_first_report(world):
    """The orchestrator records the first decision reported, but its reply never reaches transfers."""
    lost = []

    def interceptor(forward, method, url, headers, data):
        reply = forward(method, url, headers, data)
        if url.endswith("/function/orchestrator/tasks/success") and not lost:
            lost.append(reply.status_code)
            return FakeResponse(502, {}, b'{"code":"function_crashed"}')
        return reply

    world.gateway.interceptor = interceptor
    return lost


def test_a_decision_whose_reply_was_lost_answers_as_it_took_effect_on_every_retry():
    # GIVEN a transfer waiting for review, whose decision reaches the saga but whose reply is lost
    world = SagaWorld()
    world.orders.set_tier(CUSTOMER, Tier.PREMIUM)
    transfer_id = started(world, {**INTERNAL, "amount": 1_000_000})
    world.run(until=lambda: world.transfer(transfer_id).task_token is not None)
    lost = _losing_the_reply_of_the_first_report(world)
    first = world.decide(transfer_id, "approve", key="decide-1")
    assert lost == [200] and first.status_code >= 500

    # WHEN the saga finishes on that decision, then the operator retries (same key, a new key, another)
    world.run()
    same_key = world.decide(transfer_id, "approve", key="decide-1")
    new_key = world.decide(transfer_id, "approve", key="decide-2")
    other = world.decide(transfer_id, "reject", key="decide-3")

    # THEN both retries of the decision answer 200 with it recorded; another decision is 409 naming it
    assert world.transfer(transfer_id).status == "COMPLETED"
    for reply in (same_key, new_key):
        assert reply.status_code == 200, reply.json()
        assert [s["outcome"] for s in reply.json()["steps"] if s["name"] == "decision"] == ["approve"]
    assert other.status_code == 409
    assert other.json()["code"] == "decision_already_recorded"
    assert "approve" in other.json()["detail"]
    assert world.ledger_check().clean


def test_a_second_different_decision_for_a_pending_review_is_refused_naming_the_first():
    world = SagaWorld()
    world.orders.set_tier(CUSTOMER, Tier.PREMIUM)
    transfer_id = started(world, {**INTERNAL, "amount": 1_000_000})
    world.run(until=lambda: world.transfer(transfer_id).task_token is not None)

    rejected = world.decide(transfer_id, "reject", key="r-1")
    approved = world.decide(transfer_id, "approve", key="a-1")
    world.run()

    assert rejected.status_code == 200
    assert approved.status_code == 409 and approved.json()["code"] == "decision_already_recorded"
    assert world.transfer(transfer_id).status == "FAILED"


def test_a_decision_nobody_waits_for_is_refused():
    world = SagaWorld()
    transfer_id = started(world, INTERNAL)
    world.run()

    reply = world.decide(transfer_id, "approve")

    assert reply.status_code == 409
    assert reply.json()["code"] == "no_decision_pending"


def test_while_risk_is_failing_small_transfers_proceed_flagged_and_large_ones_wait_for_an_operator():
    # GIVEN a risk function that answers 503 to every call
    world = SagaWorld()
    world.gateway.faults[("risk", "/assessments")] = [(503, {"code": "down"})] * 100
    small = started(world, {**INTERNAL, "amount": 10_000}, key="small")
    world.run()
    large = started(world, {**INTERNAL, "amount": 10_001}, key="large")
    world.run(until=lambda: world.transfer(large).task_token is not None)

    # THEN the small one (at most 100 USD) completed, flagged for a later review
    assert world.transfer(small).status == "COMPLETED"
    assert {"risk_unavailable", "review_later"} <= set(world.transfer(small).flags)
    # AND the large one waits for an operator instead of failing
    assert world.transfer(large).status == "AWAITING_REVIEW"
    assert world.transfer(large).screening["degraded"] is True
    world.decide(large, "approve")
    world.run()
    assert world.transfer(large).status == "COMPLETED"


def test_an_open_circuit_stops_calling_the_risk_function():
    world = SagaWorld()
    world.gateway.faults[("risk", "/assessments")] = [(503, {"code": "down"})] * 100
    for n in range(5):  # all screened within the breaker's open time
        started(world, {**INTERNAL, "amount": 100}, key=f"k-{n}")
    world.run()

    risk_calls = [c for c in world.gateway.calls if c[0] == "risk"]
    assert len(risk_calls) == 3  # failures_to_open; the last two never reached it
    assert world.balance("acc-b") == 500  # every one completed, flagged


# --- the app's API ----------------------------------------------------------------------------------


def test_a_retried_post_with_the_same_key_is_the_same_transfer_and_a_different_body_is_refused():
    world = SagaWorld()
    first = world.start_transfer(INTERNAL, key="same")
    again = world.start_transfer(INTERNAL, key="same")
    other = world.start_transfer({**INTERNAL, "amount": 1}, key="same")
    world.run()

    assert again.json() == first.json()
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert other.status_code == 422
    assert world.balance("acc-b") == 2_500


def test_the_status_shows_steps_to_its_owner_only():
    world = SagaWorld()
    transfer_id = started(world, INTERNAL)
    world.run()
    owner = world.token(CUSTOMER, ("transfers:read",), kind="customer")
    stranger = world.token(OTHER_CUSTOMER, ("transfers:read",), kind="customer")

    mine = world.gateway.call("GET", "transfers", f"/transfers/{transfer_id}?wait=1", token=owner)
    theirs = world.gateway.call("GET", "transfers", f"/transfers/{transfer_id}", token=stranger)

    assert mine.status_code == 200
    assert mine.json()["status"] == "COMPLETED"
    assert [s["name"] for s in mine.json()["steps"]] == ["accept", "validate", "screen", "completed"]
    assert theirs.status_code == 404


def test_the_posted_body_is_checked_before_anything_is_recorded():
    world = SagaWorld()
    both = {**INTERNAL, "creditor": external()["creditor"]}
    same = {**INTERNAL, "credit_account_id": "acc-a"}
    floaty = {**INTERNAL, "amount": 12.5}

    replies = [world.start_transfer(body, key=f"k-{n}") for n, body in enumerate((both, same, floaty))]

    assert [r.status_code for r in replies] == [422, 422, 422]
    assert world.orders.events == []


def test_a_forged_review_message_is_ignored():
    world = SagaWorld()
    transfer_id = started(world, INTERNAL)
    forged = {"task_token": "dHJhbnNmZXI6eA.secret", "transfer_id": transfer_id, "kind": "review"}

    reply = world.gateway.call("POST", "transfers", "/", forged)
    # Even sealed with the events key, a token the orchestrator does not wait for is not kept.
    sealed = world.gateway.call("POST", "transfers", "/", json.loads(QUEUE_MAC.seal(forged)))

    assert reply.status_code == 401 and reply.json()["code"] == "event_mac_invalid"
    assert sealed.status_code == 200 and sealed.json() == {"outcome": "ignored"}
    assert world.transfer(transfer_id).task_token is None


def test_every_event_matches_its_published_schema():
    world = SagaWorld()
    started(world, INTERNAL, key="a")
    started(world, external(account_number="99990001"), key="b")
    world.run()

    for event in world.orders.events:
        document = EventEnvelope(
            f"{event.type}:{event.data['transfer_id']}",
            TRANSFERS_SOURCE,
            event.type,
            event.data["transfer_id"],
            datetime(2026, 1, 1, tzinfo=UTC),
            event.data,
        ).document()
        schema = json.loads((SCHEMAS / f"{event.type}.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(document)


def test_a_rail_message_not_sealed_by_the_suite_is_401_and_pays_nothing():
    world = SagaWorld()
    hand_off = {"task_token": "dHJhbnNmZXI6eA.secret", "payment_id": "tr_forged", "amount_minor": 100,
                "currency": "USD", "account_number": "99990001"}
    settle = {"payment_id": "tr_forged"}

    replies = [world.gateway.call("POST", "rail", "/", hand_off),
               world.gateway.call("POST", "rail", "/", settle, headers={"ce-type": SETTLE_EVENT_TYPE})]

    assert [(r.status_code, r.json()["code"]) for r in replies] == [(401, "event_mac_invalid")] * 2
    assert world.queues.messages == []


def test_the_status_url_is_below_the_gateway_or_the_services_own_path(monkeypatch):
    # GIVEN the same transfer accepted behind the OpenFaaS gateway, then where transfers has its own
    # address (Knative: no gateway, the Service answers at its root)
    world = SagaWorld()
    behind_gateway = world.start_transfer(INTERNAL, "k-gw")
    monkeypatch.setenv("FINFAAS_FUNCTION_URL_TRANSFERS", "http://transfers.finfaas.svc.cluster.local")
    own_address = world.start_transfer({**INTERNAL, "amount": 100}, "k-own")

    # THEN each answer's Location and status_url is the path a client of that target follows
    for reply, prefix in ((behind_gateway, "/function/transfers/transfers/"), (own_address, "/transfers/")):
        assert reply.status_code == 202
        assert reply.headers["Location"] == reply.json()["status_url"] == prefix + reply.json()["transfer_id"]
