"""TransfersService.validate: the saga's first step checks the accounts and limits and takes the risk
decision, and saves the day's total, the order and the decision in one write; what it reads it reads in
one call. A write lost after risk answered leaves nothing, and the step asked again counts the day once.

The service runs on the in-memory order store, accounts in a dict, and a risk that records what it was
asked and answers a repeated assessment as the first time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from finfaas.domain.limits import Tier
from finfaas.domain.risk_rules import HourCount, RiskPolicy, RiskRequest
from finfaas.services.risk.api import risk_rules_view
from finfaas.services.risk.in_process import InProcessRisk
from finfaas.services.risk.model import hour_window
from finfaas.services.risk.service import RiskService
from finfaas.services.transfers.api import NewTransferBody
from finfaas.services.transfers.errors import TransferStoreUnavailable, ValidationRefused
from finfaas.services.transfers.model import (
    AccountInfo,
    Step,
    UsageOutcome,
    ValidationFacts,
    ValidationHint,
)
from finfaas.services.transfers.service import ComposedValidationReads, TransfersService
from finfaas_dev.fakes.risk import InMemoryRiskStore
from finfaas_dev.fakes.transfers import InMemoryTransferOrders

OWNER = "cust-1"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DAY = "2026-03-02"
AMOUNT_MINOR = 2_500
BASIC_PER_TRANSFER_MINOR = 1_000 * 100  # the basic tier: 1,000 USD a transfer, 2,000 a day


class Accounts:
    def __init__(self) -> None:
        self.by_id = {
            "acc-a": AccountInfo("acc-a", OWNER, "USD", "CUSTOMER", "OPEN"),
            "acc-b": AccountInfo("acc-b", "cust-2", "USD", "CUSTOMER", "OPEN"),
        }

    def accounts(self, account_ids) -> dict[str, AccountInfo]:
        return {i: self.by_id[i] for i in account_ids if i in self.by_id}


class Risk:
    """Answers an assessment id as it first did, like the risk function; records every request."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self._answers: dict[str, dict[str, Any]] = {}

    def assess(self, body: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(body["assessment_id"])
        first = {"decision": "approve", "score": 7, "reasons": []}
        return self._answers.setdefault(body["assessment_id"], first)


class Orchestrator:
    def start(self, state_machine: str, name: str, input_value: Any, reference: str | None = None) -> dict:
        return {"execution_id": f"{state_machine}:{name}"}


class LosesOneWrite(InMemoryTransferOrders):
    """The store's first day-total write does not answer (the table timed out; nothing was written)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def reserve_usage(self, order, usage, screening=None) -> UsageOutcome:
        if self.lost == 0:
            self.lost += 1
            raise TransferStoreUnavailable("reserve usage: timed out")
        return super().reserve_usage(order, usage, screening)


class CountingReads(ComposedValidationReads):
    """The composed reads, each call recorded: (owner, accounts, day, transfer id)."""

    def __init__(self, accounts, orders, risk=None) -> None:
        super().__init__(accounts, orders, risk)
        self.calls: list[tuple[str, list[str], str | None, str | None]] = []

    def facts(self, owner_id, account_ids, day, currency, transfer_id=None,
              screening=None) -> ValidationFacts:
        self.calls.append((owner_id, list(account_ids), day, transfer_id))
        return super().facts(owner_id, account_ids, day, currency, transfer_id, screening)


class CountingOrders(InMemoryTransferOrders):
    def __init__(self, risk=None) -> None:
        super().__init__(risk)
        self.gets = 0

    def get(self, transfer_id):
        self.gets += 1
        return super().get(transfer_id)


HINT = ValidationHint(OWNER, ("acc-a", "acc-b"), "USD")


def world(orders: InMemoryTransferOrders | None = None) -> tuple[TransfersService, InMemoryTransferOrders,
                                                                  Risk, CountingReads, str]:
    orders = orders or InMemoryTransferOrders()
    accounts, risk = Accounts(), Risk()
    reads = CountingReads(accounts, orders)
    service = TransfersService(orders, accounts, risk, Orchestrator(), clock=lambda: NOW, reads=reads)
    return service, orders, risk, reads, accepted(service, "k-1", AMOUNT_MINOR)


def accepted(service: TransfersService, key: str, amount_minor: int) -> str:
    body = {"debit_account_id": "acc-a", "credit_account_id": "acc-b", "amount": amount_minor,
            "currency": "USD"}
    return service.accept(OWNER, key, NewTransferBody.model_validate(body)).order.transfer_id


def test_validation_and_the_risk_decision_are_one_step_saved_in_one_write_after_one_read():
    service, orders, risk, reads, transfer_id = world(CountingOrders())
    accepted_version = orders.get(transfer_id).version
    gets_before = orders.gets

    answer = service.validate(transfer_id, HINT)
    gets = orders.gets - gets_before

    order = orders.get(transfer_id)
    assert (answer["decision"], answer["degraded"], answer["tier"]) == ("approve", False, "STANDARD")
    assert order.version == accepted_version + 1
    assert [s.name for s in order.steps] == ["accept", "validate", "screen"]
    assert order.status.value == "PROCESSING" and order.usage_day == DAY
    assert orders.day_total_minor(OWNER, DAY, "USD") == AMOUNT_MINOR
    # the order, the accounts, the tier and the day's total: one read for the step (one for the POST)
    assert reads.calls[-1] == (OWNER, ["acc-a", "acc-b"], DAY, transfer_id)
    assert len(reads.calls) == 2
    assert gets == 1  # inside that one read


def test_an_order_that_does_not_match_its_hint_is_read_again_and_decided_by_its_own_accounts():
    # GIVEN a hint naming another owner and another account than the order's
    service, orders, risk, reads, transfer_id = world()
    orders.set_tier("cust-2", Tier.BUSINESS)
    wrong = ValidationHint("cust-2", ("acc-b",), "USD")

    answer = service.validate(transfer_id, wrong)

    # THEN the order's own owner's tier decided, read with its own accounts
    assert answer["tier"] == "STANDARD"
    assert reads.calls[-1] == (OWNER, ["acc-a", "acc-b"], DAY, None)
    assert orders.day_total_minor(OWNER, DAY, "USD") == AMOUNT_MINOR
    assert orders.day_total_minor("cust-2", DAY, "USD") == 0


def test_a_write_lost_after_risk_answered_leaves_nothing_and_the_step_asked_again_counts_the_day_once():
    service, orders, risk, _, transfer_id = world(LosesOneWrite())

    with pytest.raises(TransferStoreUnavailable):
        service.validate(transfer_id, HINT)
    assert orders.get(transfer_id).screening is None
    assert orders.day_total_minor(OWNER, DAY, "USD") == 0

    first = service.validate(transfer_id, HINT)
    again = service.validate(transfer_id, HINT)

    assert first == again and first["decision"] == "approve"
    assert risk.asked == [transfer_id, transfer_id]  # the same assessment, answered as before
    assert orders.day_total_minor(OWNER, DAY, "USD") == AMOUNT_MINOR


def test_a_day_total_that_cannot_take_the_amount_is_refused_before_risk_is_asked():
    # GIVEN a basic customer whose two earlier transfers today took the whole daily limit
    service, orders, risk, _, transfer_id = world()
    orders.set_tier(OWNER, Tier.BASIC)
    earlier = [accepted(service, f"k-{n}", BASIC_PER_TRANSFER_MINOR) for n in (2, 3)]
    for other in earlier:
        service.validate(other, HINT)

    # WHEN the saga validates one more
    with pytest.raises(ValidationRefused) as refusal:
        service.validate(transfer_id, HINT)

    # THEN it is refused by the day's total read with the accounts: risk never saw it, nothing was saved
    assert refusal.value.code == "daily_limit_exceeded"
    assert risk.asked == earlier
    assert orders.get(transfer_id).screening is None
    assert orders.day_total_minor(OWNER, DAY, "USD") == 2 * BASIC_PER_TRANSFER_MINOR


# --- risk in process: risk's lookup read with the order, its decision written with it ------------------


class RiskFunctionRules:
    """The risk function's GET /rules: its default thresholds, or down."""

    def __init__(self) -> None:
        self.down = False

    def __call__(self) -> dict:
        if self.down:
            raise ConnectionError("risk is down")
        return risk_rules_view(RiskPolicy()).model_dump(mode="json")


class InProcessWorld:
    """The service with risk's use case in process on an in-memory risk store, as the function runs it."""

    def __init__(self, orders_type: type[InMemoryTransferOrders] = CountingOrders) -> None:
        self.risk_store, self.rules = InMemoryRiskStore(), RiskFunctionRules()
        self.orders = orders_type(self.risk_store)
        self.reads = CountingReads(Accounts(), self.orders, self.risk_store)
        self.risk = InProcessRisk(lambda policy: RiskService(self.risk_store, policy, lambda: NOW),
                                  self.rules)
        self.service = TransfersService(self.orders, Accounts(), self.risk, Orchestrator(), clock=lambda: NOW,
                                        reads=self.reads, risk_in_process=self.risk)
        self.transfer_id = accepted(self.service, "k-1", AMOUNT_MINOR)

    def place(self, transfer_id: str) -> HourCount | None:
        """The transfer's place in its customer's hour as risk counted it (None: not counted)."""
        return self.risk_store.look_up(self.request(transfer_id), hour_window(NOW)).place

    def request(self, transfer_id: str, amount_minor: int = AMOUNT_MINOR) -> RiskRequest:
        return RiskRequest(transfer_id, OWNER, "acc-a", "acc-b", amount_minor, "USD")


def test_with_risk_in_process_one_read_and_one_write_carry_the_decision_and_count_the_hour_once():
    world = InProcessWorld()
    reads_before = len(world.reads.calls)

    answer = world.service.validate(world.transfer_id, HINT)
    again = world.service.validate(world.transfer_id, HINT)  # a duplicate delivery of the step

    order = world.orders.get(world.transfer_id)
    recorded = world.risk_store.stored_assessment(world.transfer_id)
    assert (answer["decision"], answer["degraded"]) == ("approve", False) and again == answer
    assert recorded is not None and recorded.decision.value == order.screening["decision"] == "approve"
    assert world.place(world.transfer_id) == HourCount(1, AMOUNT_MINOR)
    assert world.orders.day_total_minor(OWNER, DAY, "USD") == AMOUNT_MINOR
    # one read a delivery: the order with its accounts, tier, day's total and risk's items
    assert len(world.reads.calls) - reads_before == 2


class CountedMeanwhile(CountingOrders):
    """Another transfer of the customer is counted in the hour between the step's read and its write."""

    def reserve_usage(self, order, usage, screening=None) -> UsageOutcome:
        known = None if screening is None else self.risk.look_up(screening.request, screening.window)
        if known is not None and known.window_before.transfers == 0:
            other = RiskRequest("tr_other", OWNER, "acc-a", "acc-b", 700, "USD")
            self.risk.count(other, screening.window, 100)
        return super().reserve_usage(order, usage, screening)


def test_a_decision_whose_hour_was_counted_into_before_the_write_is_made_again_on_the_place_counted():
    world = InProcessWorld(CountedMeanwhile)

    answer = world.service.validate(world.transfer_id, HINT)

    # THEN nothing was written on the stale place; the decision was made again, after the other transfer
    assert answer["decision"] == "approve"
    assert world.place(world.transfer_id) == HourCount(2, 700 + AMOUNT_MINOR)
    assert world.risk_store.stored_assessment(world.transfer_id) is not None
    assert world.orders.get(world.transfer_id).screening["decision"] == "approve"
    assert world.orders.day_total_minor(OWNER, DAY, "USD") == AMOUNT_MINOR


class LosesOneJoinedWrite(CountingOrders):
    """The first joined write does not answer (nothing was written: one transaction)."""

    lost = 0

    def reserve_usage(self, order, usage, screening=None) -> UsageOutcome:
        if self.lost == 0:
            self.lost += 1
            raise TransferStoreUnavailable("reserve usage: timed out")
        return super().reserve_usage(order, usage, screening)


def test_a_joined_write_lost_leaves_risk_and_the_day_untouched_and_the_step_asked_again_counts_once():
    world = InProcessWorld(LosesOneJoinedWrite)

    with pytest.raises(TransferStoreUnavailable):
        world.service.validate(world.transfer_id, HINT)
    assert world.risk_store.stored_assessment(world.transfer_id) is None
    assert world.place(world.transfer_id) is None

    answer = world.service.validate(world.transfer_id, HINT)

    assert answer["decision"] == "approve"
    assert world.place(world.transfer_id) == HourCount(1, AMOUNT_MINOR)
    assert world.orders.day_total_minor(OWNER, DAY, "USD") == AMOUNT_MINOR


class DayFilledMeanwhile(CountingOrders):
    """Another transfer takes the rest of the day between the step's read and its write."""

    def reserve_usage(self, order, usage, screening=None) -> UsageOutcome:
        self._totals[(usage.owner_id, usage.day, usage.currency)] = usage.headroom_minor + 1
        return super().reserve_usage(order, usage, screening)


def test_a_transfer_the_days_total_refuses_at_the_write_is_still_counted_by_risk_once():
    world = InProcessWorld(DayFilledMeanwhile)

    with pytest.raises(ValidationRefused) as refusal:
        world.service.validate(world.transfer_id, HINT)

    assert refusal.value.code == "daily_limit_exceeded"
    assert world.orders.get(world.transfer_id).screening is None
    assert world.risk_store.stored_assessment(world.transfer_id) is not None
    assert world.place(world.transfer_id) == HourCount(1, AMOUNT_MINOR)


def test_without_risks_thresholds_the_step_degrades_and_writes_nothing_of_risks():
    world = InProcessWorld()
    world.rules.down = True

    answer = world.service.validate(world.transfer_id, HINT)

    assert (answer["decision"], answer["degraded"]) == ("approve", True)  # a small transfer goes on, flagged
    assert "review_later" in world.orders.get(world.transfer_id).flags
    assert world.risk_store.stored_assessment(world.transfer_id) is None
    assert world.place(world.transfer_id) is None


# --- Complete writes the order this process validated, without reading it ------------------------------


def test_complete_writes_the_order_this_process_validated_without_reading_it_and_a_repeat_changes_nothing():
    service, orders, _, _, transfer_id = world(CountingOrders())
    service.validate(transfer_id, HINT)
    gets_before = orders.gets

    first = service.complete(transfer_id)
    gets_first = orders.gets - gets_before
    again = service.complete(transfer_id)  # a duplicate delivery reads it: nothing more is written

    order = orders.get(transfer_id)
    assert first == again == {"transfer_id": transfer_id, "status": "COMPLETED"}
    assert gets_first == 0
    assert [s.name for s in order.steps] == ["accept", "validate", "screen", "completed"]
    assert [e.type for e in orders.events].count("transfer.completed") == 1
    assert orders.day_total_minor(OWNER, DAY, "USD") == AMOUNT_MINOR  # a completed transfer keeps its day


def test_complete_of_an_order_changed_elsewhere_since_validation_reads_it_and_keeps_that_change():
    # GIVEN an order validated here, then changed by another process (an operator's note, say)
    service, orders, _, _, transfer_id = world(CountingOrders())
    service.validate(transfer_id, HINT)
    validated = orders.get(transfer_id)
    assert orders.save(validated.changed(NOW, Step("note", "kept", NOW)))

    answer = service.complete(transfer_id)

    # THEN the write on the stale version lost, the order was read and completed with the change kept
    order = orders.get(transfer_id)
    assert answer["status"] == "COMPLETED" == order.status.value
    assert [s.name for s in order.steps] == ["accept", "validate", "screen", "note", "completed"]
    assert [e.type for e in orders.events].count("transfer.completed") == 1
