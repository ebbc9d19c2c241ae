"""The transfers, risk and rail stores: the DynamoDB store and the in-memory fake pass one contract
(risk's includes concurrent screenings of one customer, each counted once at its own place)."""

from __future__ import annotations

import importlib
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.limits import Tier
from finfaas.domain.risk_rules import Assessment, Decision, HourCount, RiskPolicy, RiskRequest
from finfaas.services.rail.model import PaymentStatus, Plan, RailPayment
from finfaas.services.risk.model import AssessmentToRecord, BlockEntry, Lookup
from finfaas.services.risk.service import RiskService
from finfaas.services.transfers.model import (
    DailyUsage,
    ListPosition,
    OrderEvent,
    OrderFilter,
    Step,
    TransferOrder,
    TransferStatus,
    UsageOutcome,
)
from finfaas_dev.fakes.rail import InMemoryRailStore
from finfaas_dev.fakes.risk import InMemoryRiskStore
from finfaas_dev.fakes.transfers import InMemoryTransferOrders

NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def fake_or_dynamodb(request, fake: type, adapter: str) -> Any:
    """The in-memory fake, or the DynamoDB adapter `module:Class` on the embedded emulators."""
    if request.param == "memory":
        return fake()
    request.getfixturevalue("embedded_aws")
    module, name = adapter.split(":")
    return getattr(importlib.import_module(module), name)()


@pytest.fixture(params=["memory", "dynamodb"])
def orders(request):
    return fake_or_dynamodb(request, InMemoryTransferOrders, "finfaas.store.transfers_store:TransfersStore")


@pytest.fixture(params=["memory", "dynamodb"])
def risk_store(request):
    return fake_or_dynamodb(request, InMemoryRiskStore, "finfaas.store.risk_store:RiskStore")


@pytest.fixture(params=["memory", "dynamodb"])
def rail_store(request):
    return fake_or_dynamodb(request, InMemoryRailStore, "finfaas.store.rail_store:RailStore")


def new_order(**changes) -> TransferOrder:
    base = TransferOrder(
        f"tr_{uuid.uuid4().hex}",
        f"cust-{uuid.uuid4().hex[:8]}",
        "acc-a",
        "acc-b",
        12345678901234567890,
        "USD",
        NOW,
        updated_at=NOW,
        reference="rent",
        steps=(Step("accept", "accepted", NOW),),
    )
    return TransferOrder(**{**base.__dict__, **changes})


def accepted(order: TransferOrder) -> OrderEvent:
    return OrderEvent("transfer.accepted", {"transfer_id": order.transfer_id})


# --- transfer orders ---------------------------------------------------------------------------------


def test_an_order_reads_back_as_written_and_a_second_create_returns_the_first(orders):
    order = new_order(screening={"decision": "approve", "reasons": []}, flags=("risk_unavailable",),
                      creditor=SealedCreditor('{"v":1}', "BANKGB22", "****5678", "pf_ab", "cd"))

    assert orders.create(order, accepted(order)) == order
    assert orders.get(order.transfer_id) == order
    assert orders.create(new_order(transfer_id=order.transfer_id, amount_minor=1), accepted(order)) == order
    assert orders.get("tr_missing") is None


def test_saves_are_conditional_on_the_version(orders):
    order = new_order()
    orders.create(order, accepted(order))
    changed = order.changed(NOW, Step("validate", "passed", NOW), status=TransferStatus.PROCESSING)

    assert orders.save(changed) is True
    assert orders.save(changed) is False  # the same version again: someone got there first
    assert orders.save(order.changed(NOW, status=TransferStatus.FAILED)) is False
    assert orders.get(order.transfer_id).status is TransferStatus.PROCESSING


def test_many_orders_read_back_in_one_call_past_a_batch_of_100_and_missing_ids_are_left_out(orders):
    # More ids than one BatchGetItem takes, repeated and missing ones among them: what a status watcher
    # reads per tick.
    written = [new_order() for _ in range(105)]
    for order in written:
        orders.create(order, accepted(order))
    latest = written[0].changed(NOW, Step("validate", "passed", NOW), status=TransferStatus.PROCESSING)
    assert orders.save(latest)
    ids = [o.transfer_id for o in written]

    found = orders.get_many([*ids, ids[0], "tr_missing"])

    assert found == {latest.transfer_id: latest, **{o.transfer_id: o for o in written[1:]}}
    assert orders.get_many([]) == {}


def test_daily_usage_is_counted_within_the_headroom_once_and_given_back_once(orders):
    first, second = new_order(), None
    owner = first.owner_id
    second = new_order(owner_id=owner)
    for order in (first, second):
        orders.create(order, accepted(order))

    def usage(order, headroom):
        return DailyUsage(owner, "2026-01-15", "USD", 600, headroom)

    assert (
        orders.reserve_usage(first.changed(NOW, usage_day="2026-01-15"), usage(first, 400))
        is UsageOutcome.RESERVED
    )
    # 600 already counted: a second 600 fits only if the total may be 600 before it (limit 1200)
    assert orders.reserve_usage(second.changed(NOW), usage(second, 599)) is UsageOutcome.EXCEEDED
    assert orders.reserve_usage(second.changed(NOW), usage(second, 600)) is UsageOutcome.RESERVED
    assert (
        orders.reserve_usage(first.changed(NOW), usage(first, 10_000)) is UsageOutcome.CONFLICT
    )  # stale version
    stored = orders.get(first.transfer_id)
    assert (
        orders.release_usage(stored.changed(NOW, status=TransferStatus.FAILED), usage(first, 0), None) is True
    )
    again = orders.get(first.transfer_id)
    assert (
        orders.release_usage(again.changed(NOW), usage(first, 0), None) is True
    )  # nothing left to give back
    # THEN only the second transfer's 600 is counted: a third 600 fits under a 1200 limit
    third = new_order(owner_id=owner)
    orders.create(third, accepted(third))
    assert orders.reserve_usage(third.changed(NOW), usage(third, 600)) is UsageOutcome.RESERVED


def test_tiers_default_to_standard(orders):
    owner = f"cust-{uuid.uuid4().hex[:8]}"
    assert orders.tier_of(owner) is Tier.STANDARD
    orders.set_tier(owner, Tier.BASIC)
    assert orders.tier_of(owner) is Tier.BASIC


# --- lists of orders ---------------------------------------------------------------------------------


def _window() -> datetime:
    """A moment no other test's orders are near, so lists bounded around it see this test's only."""
    return datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(300_000))


def _all_pages(read, limit):
    seen, after, pages = [], None, 0
    while True:
        page = read(limit, after)
        seen += page.orders
        pages += 1
        after = page.resume_after
        if after is None:
            return seen, pages
        assert pages < 50


def test_a_customers_orders_list_newest_first_page_by_page_and_no_one_elses(orders):
    # GIVEN five orders of one customer a minute apart, and one of another customer at the same time
    start = _window()
    owner = f"cust-{uuid.uuid4().hex[:8]}"
    mine = [new_order(owner_id=owner, created_at=start + timedelta(minutes=i)) for i in range(5)]
    for order in [*mine, new_order(created_at=start + timedelta(minutes=2))]:
        orders.create(order, accepted(order))

    # WHEN the customer lists them two at a time
    listed, pages = _all_pages(
        lambda limit, after: orders.list_by_owner(owner, OrderFilter(), limit, after), 2)

    # THEN every order comes once, newest first, and the last page says there is no more
    assert [o.transfer_id for o in listed] == [o.transfer_id for o in reversed(mine)]
    assert pages == 3
    assert listed[0] == mine[-1]


def test_a_customers_list_filters_by_status_account_and_creation_time(orders):
    start = _window()
    owner = f"cust-{uuid.uuid4().hex[:8]}"
    at = [start + timedelta(minutes=i) for i in range(4)]
    first = new_order(owner_id=owner, created_at=at[0], debit_account_id="acc-x", credit_account_id="acc-y")
    second = new_order(owner_id=owner, created_at=at[1], debit_account_id="acc-y", credit_account_id="acc-z")
    external = new_order(owner_id=owner, created_at=at[2], debit_account_id="acc-z",
                          credit_account_id="acc-y",
                          creditor=SealedCreditor('{"v":1}', "BANKGB22", "****5678", "pf_ab", "cd"))
    fourth = new_order(owner_id=owner, created_at=at[3], debit_account_id="acc-x", credit_account_id="acc-z")
    for order in (first, second, external, fourth):
        orders.create(order, accepted(order))
    orders.save(second.changed(NOW, status=TransferStatus.COMPLETED))

    def ids(where: OrderFilter) -> list[str]:
        listed, _ = _all_pages(lambda limit, after: orders.list_by_owner(owner, where, limit, after), 2)
        return [o.transfer_id for o in listed]

    completed = frozenset({TransferStatus.COMPLETED})
    assert ids(OrderFilter(statuses=completed)) == [second.transfer_id]
    assert ids(OrderFilter(statuses=completed | {TransferStatus.ACCEPTED})) == [
        fourth.transfer_id, external.transfer_id, second.transfer_id, first.transfer_id]
    # acc-y: the debit of one and the payee of another; an external transfer's ledger side is not a payee
    assert ids(OrderFilter(account_id="acc-y")) == [second.transfer_id, first.transfer_id]
    # strict bounds: neither the order created at created_after nor the one at created_before
    assert ids(OrderFilter(created_after=at[0], created_before=at[3])) == [
        external.transfer_id, second.transfer_id]
    assert ids(OrderFilter(created_after=at[3])) == []
    assert ids(OrderFilter(created_after=at[1], created_before=at[1] + timedelta(microseconds=1))) == []
    assert ids(OrderFilter(account_id="acc-x", created_before=at[3])) == [first.transfer_id]


def test_a_list_resumes_after_the_position_it_gave_even_once_that_order_has_changed(orders):
    start = _window()
    owner = f"cust-{uuid.uuid4().hex[:8]}"
    made = [new_order(owner_id=owner, created_at=start + timedelta(seconds=i)) for i in range(3)]
    for order in made:
        orders.create(order, accepted(order))

    page = orders.list_by_owner(owner, OrderFilter(), 1, None)
    orders.save(made[2].changed(NOW, status=TransferStatus.PROCESSING))
    rest = orders.list_by_owner(owner, OrderFilter(), 5, page.resume_after)

    assert page.resume_after == ListPosition(made[2].created_at, made[2].transfer_id)
    assert [o.transfer_id for o in rest.orders] == [made[1].transfer_id, made[0].transfer_id]
    assert rest.resume_after is None


def test_a_filter_matching_little_gives_short_pages_that_resume_where_the_store_stopped(
        embedded_aws, monkeypatch):
    # GIVEN six orders of which only the oldest has the status asked for, and a store that examines at
    # most three index entries a page
    from finfaas.store import transfers_store

    monkeypatch.setattr(transfers_store, "list_entries_examined_max", 3)
    orders = transfers_store.TransfersStore()
    start = _window()
    owner = f"cust-{uuid.uuid4().hex[:8]}"
    made = [new_order(owner_id=owner, created_at=start + timedelta(minutes=i)) for i in range(6)]
    for order in made:
        orders.create(order, accepted(order))
    orders.save(made[0].changed(NOW, status=TransferStatus.FAILED))
    failed = OrderFilter(statuses=frozenset({TransferStatus.FAILED}))

    # WHEN the customer lists the failed ones
    first = orders.list_by_owner(owner, failed, 10, None)
    second = orders.list_by_owner(owner, failed, 10, first.resume_after)

    # THEN the first page is empty but says where to go on, the next finds the order, and the list
    # ends at the first page that reached the index's end before its bound
    assert (first.orders, first.resume_after) == ((), ListPosition(made[3].created_at, made[3].transfer_id))
    assert [o.transfer_id for o in second.orders] == [made[0].transfer_id]
    third = orders.list_by_owner(owner, failed, 10, second.resume_after) if second.resume_after else second
    assert third.resume_after is None and [o.transfer_id for o in (*second.orders, *third.orders)] == [
        made[0].transfer_id]


def test_open_orders_list_by_status_oldest_first_and_leave_the_list_once_final(orders):
    # GIVEN orders in each open status and one completed, inside a window of their own
    start = _window()
    made = {status: [new_order(created_at=start + timedelta(seconds=10 * i + n)) for n in range(2)]
            for i, status in enumerate(TransferStatus)}
    for status, pair in made.items():
        for order in pair:
            orders.create(order, accepted(order))
            if status is not TransferStatus.ACCEPTED:
                assert orders.save(order.changed(NOW, status=status))
    window = OrderFilter(created_after=start - timedelta(seconds=1), created_before=start + timedelta(days=1))

    def listed(status):
        found, _ = _all_pages(lambda limit, after: orders.list_open(status, window, limit, after), 1)
        return [o.transfer_id for o in found]

    # THEN each open status lists its own, oldest first, as they are now
    for status in (TransferStatus.ACCEPTED, TransferStatus.PROCESSING, TransferStatus.AWAITING_REVIEW,
                   TransferStatus.NEEDS_ATTENTION):
        assert listed(status) == [o.transfer_id for o in made[status]], status
    waiting = orders.list_open(TransferStatus.AWAITING_REVIEW, window, 5, None).orders
    assert {o.status for o in waiting} == {TransferStatus.AWAITING_REVIEW}

    # WHEN one that waited for review completes, it leaves the list
    reviewed = orders.get(made[TransferStatus.AWAITING_REVIEW][0].transfer_id)
    assert orders.save(reviewed.changed(NOW, status=TransferStatus.COMPLETED))
    assert listed(TransferStatus.AWAITING_REVIEW) == [made[TransferStatus.AWAITING_REVIEW][1].transfer_id]


def test_open_orders_are_counted_per_status_and_by_age(orders):
    start = _window()
    processing_s, attention_s = TransferStatus.PROCESSING, TransferStatus.NEEDS_ATTENTION
    before = {s: orders.count_open(s).count for s in (processing_s, attention_s)}
    old = new_order(created_at=start)
    young = new_order(created_at=start + timedelta(minutes=10))
    flagged = new_order(created_at=start)
    for order in (old, young, flagged):
        orders.create(order, accepted(order))
    for order in (old, young):
        orders.save(order.changed(NOW, status=TransferStatus.PROCESSING))
    orders.save(flagged.changed(NOW, status=TransferStatus.NEEDS_ATTENTION))

    processing = orders.count_open(TransferStatus.PROCESSING)
    assert (processing.count, processing.complete) == (before[TransferStatus.PROCESSING] + 2, True)
    assert orders.count_open(attention_s).count == before[attention_s] + 1
    # created before start + 5 min: only the old one of this window (other tests' orders are older still)
    older = orders.count_open(processing_s, created_before=start + timedelta(minutes=5)).count
    younger_too = orders.count_open(processing_s, created_before=start + timedelta(minutes=11)).count
    assert younger_too == older + 1

    orders.save(orders.get(old.transfer_id).changed(NOW, status=TransferStatus.FAILED))
    assert orders.count_open(TransferStatus.PROCESSING).count == before[TransferStatus.PROCESSING] + 1


# --- risk ---------------------------------------------------------------------------------------------


CONCURRENT_ASSESSMENTS = 6
BARRIER_SECONDS_MAX = 30
WINDOW = "2026-01-15T09"


class WritesAfterEveryRead:
    """A risk store whose callers each wait, before their first write, until every caller has read: the
    interleaving in which a count read before the write is stale for all but one of them."""

    def __init__(self, store: Any, callers: int) -> None:
        self._store = store
        self._barrier = threading.Barrier(callers, timeout=BARRIER_SECONDS_MAX)
        self._waited = threading.local()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name not in ("count_and_record", "count", "record"):
            return method

        def write(*args: Any) -> Any:
            if not getattr(self._waited, "done", False):
                self._waited.done = True
                self._barrier.wait()
            return method(*args)

        return write


def velocity_count(assessment: Assessment) -> int:
    detail = next(f for f in assessment.findings if f.rule == "velocity_count").detail
    return int(detail.split()[0])


def test_concurrent_assessments_of_one_customer_count_1_to_n_once_each_and_retries_replay(risk_store):
    # GIVEN one customer's transfers screened at once, each reading before any of them writes
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    policy = RiskPolicy(hourly_transfers_flag=3)
    racing = RiskService(WritesAfterEveryRead(risk_store, CONCURRENT_ASSESSMENTS), policy, lambda: NOW)
    requests = [RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "acc-b", 100, "USD")
                for _ in range(CONCURRENT_ASSESSMENTS)]
    with ThreadPoolExecutor(CONCURRENT_ASSESSMENTS) as pool:
        first = list(pool.map(racing.assess, requests))

    # THEN each was judged on a distinct place in the hour: 1..N, the 3rd and later sent to review
    by_place = sorted(first, key=velocity_count)
    assert [velocity_count(a) for a in by_place] == list(range(1, CONCURRENT_ASSESSMENTS + 1))
    assert [a.decision for a in by_place] == [Decision.APPROVE] * 2 + [Decision.REVIEW] * 4
    # AND a retry of each returns its first decision and counts nothing: the next transfer is N+1
    service = RiskService(risk_store, policy, lambda: NOW)
    assert [service.assess(r) for r in requests] == first
    after = service.assess(RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "acc-b", 100, "USD"))
    assert velocity_count(after) == CONCURRENT_ASSESSMENTS + 1


def test_concurrent_counts_take_distinct_places_with_the_amounts_before_them(risk_store):
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    requests = [RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "acc-b", 100 * 2**n, "USD")
                for n in range(CONCURRENT_ASSESSMENTS)]
    barrier = threading.Barrier(CONCURRENT_ASSESSMENTS, timeout=BARRIER_SECONDS_MAX)

    def count(request: RiskRequest) -> HourCount:
        barrier.wait()
        return risk_store.count(request, WINDOW, 100)

    with ThreadPoolExecutor(CONCURRENT_ASSESSMENTS) as pool:
        places = dict(zip([r.assessment_id for r in requests], pool.map(count, requests), strict=True))

    in_order = sorted(requests, key=lambda r: places[r.assessment_id].transfers)
    assert [places[r.assessment_id].transfers for r in in_order] == list(range(1, CONCURRENT_ASSESSMENTS + 1))
    running = [sum(r.amount_minor for r in in_order[: n + 1]) for n in range(CONCURRENT_ASSESSMENTS)]
    assert [places[r.assessment_id].amount_minor for r in in_order] == running
    assert [risk_store.count(r, WINDOW, 100) for r in requests] == [places[r.assessment_id] for r in requests]
    assert risk_store.count(requests[0], "2026-01-15T10", 100) == HourCount(1, requests[0].amount_minor)


def test_a_full_window_counts_nothing_more_but_keeps_the_places_it_gave(risk_store):
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    requests = [RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "acc-b", 10, "USD")
                for _ in range(4)]

    places = [risk_store.count(r, WINDOW, 2) for r in requests]

    assert places == [HourCount(1, 10), HourCount(2, 20), HourCount(3, 30), HourCount(3, 30)]
    assert risk_store.count(requests[1], WINDOW, 2) == HourCount(2, 20)


def test_a_screening_is_two_dynamodb_calls_and_its_repeat_one(embedded_aws):
    from finfaas.store.call_meter import DynamoCallMeter
    from finfaas.store.risk_store import RiskStore

    service = RiskService(RiskStore(), RiskPolicy(), lambda: NOW)
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    request = RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "acc-b", 1, "USD")
    calls: list[dict[str, int]] = []
    for _ in range(2):
        meter = DynamoCallMeter()
        if not meter.start():
            pytest.skip("pynamodb signals need blinker")
        try:
            service.assess(request)
        finally:
            meter.stop()
        calls.append({name.split(" ")[0]: n for name, n in meter.snapshot().items()})

    assert calls == [{"BatchGetItem": 1, "TransactWriteItems": 1}, {"BatchGetItem": 1}]


def test_a_count_with_the_decision_writes_nothing_once_the_window_moved(risk_store):
    # GIVEN a screening read its customer's window, then another transfer of the customer was counted
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    request, other = (RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "acc-b", 10, "USD")
                      for _ in range(2))
    read = risk_store.look_up(request, WINDOW)
    assert risk_store.count(other, WINDOW, 100) == HourCount(1, 10)
    assessment = Assessment(request.assessment_id, Decision.APPROVE, 10)

    # THEN its write of the place it read (the first) is refused and leaves no trace; counted, it is 2nd
    assert risk_store.count_and_record(request, WINDOW, read.window_before, 100, assessment, NOW) is None
    assert risk_store.look_up(request, WINDOW) == Lookup(None, False, (), HourCount(1, 10), None)
    assert risk_store.count(request, WINDOW, 100) == HourCount(2, 20)
    # AND once recorded with its place, a repeat reads both back and a second write counts nothing
    assert risk_store.record(request, assessment, NOW) == assessment
    again = risk_store.look_up(request, WINDOW)
    assert (again.recorded, again.place) == (assessment, HourCount(2, 20))
    assert again.window_before == HourCount(2, 20)
    later = risk_store.look_up(other, WINDOW)
    assert later.place == HourCount(1, 10)


def test_a_count_with_the_decision_takes_the_place_it_read_once(risk_store):
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    request = RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "bank1:0007", 70, "USD")
    assessment = Assessment(request.assessment_id, Decision.APPROVE, 10)
    before = risk_store.look_up(request, WINDOW).window_before

    assert risk_store.count_and_record(request, WINDOW, before, 100, assessment, NOW) == assessment
    # THEN a repeat of the write (a lost response) returns the first decision and counts nothing more
    declined = Assessment(request.assessment_id, Decision.DECLINE, 99)
    assert risk_store.count_and_record(request, WINDOW, before, 100, declined, NOW) == assessment
    counted = HourCount(1, 70)
    assert risk_store.look_up(request, WINDOW) == Lookup(assessment, True, (), counted, counted)


def test_an_assessment_is_recorded_once_with_the_payee_seen(risk_store):
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    request = RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "bank1:0009", 700, "USD")
    assessment = Assessment(request.assessment_id, Decision.APPROVE, 10)
    assert risk_store.look_up(request) == Lookup(None, False, ())

    assert risk_store.record(request, assessment, NOW) == assessment
    declined = Assessment(request.assessment_id, Decision.DECLINE, 99)
    assert risk_store.record(request, declined, NOW) == assessment
    assert risk_store.look_up(request) == Lookup(assessment, True, ())
    assert risk_store.stored_assessment(request.assessment_id) == assessment


def test_block_entries_match_the_parties_of_a_transfer(risk_store):
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    risk_store.block(BlockEntry(f"customer:{customer}", "kyc", NOW))
    request = RiskRequest("tr_x", customer, "acc-a", "acc-b", 1, "USD")

    assert risk_store.look_up(request).blocked == (f"customer:{customer}",)
    assert risk_store.unblock(f"customer:{customer}") is True
    assert risk_store.unblock(f"customer:{customer}") is False
    assert risk_store.look_up(request).blocked == ()


# --- rail ---------------------------------------------------------------------------------------------


def test_payments_are_created_once_and_saved_by_version(rail_store):
    payment = RailPayment(
        f"tr_{uuid.uuid4().hex}",
        2500,
        "USD",
        SealedCreditor('{"v":1}', "BANKGB22", "****5678"),
        PaymentStatus.ACCEPTED,
        Plan.SETTLE,
        NOW,
        settle_at=NOW,
        task_token="t.secret",
    )

    assert rail_store.create(payment) == payment
    assert (
        rail_store.create(
            RailPayment(payment.payment_id, 1, "USD", None, PaymentStatus.CANCELLED, Plan.NONE, NOW)
        )
        == payment
    )
    settled = payment.next(status=PaymentStatus.SETTLED, settled_at=NOW)
    assert rail_store.save(settled) is True
    assert rail_store.save(settled) is False
    assert rail_store.get(payment.payment_id) == settled


def test_what_a_validation_reads_comes_in_one_batch_across_the_ledger_and_orders_tables(embedded_aws):
    # GIVEN two ledger accounts, a premium owner, an order and a day total on DynamoDB Local
    from finfaas.domain.ledger import AccountStatus, NewAccount
    from finfaas.services.transfers.service import ComposedValidationReads, LedgerAccounts
    from finfaas.store.call_meter import DynamoCallMeter
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.transfer_reads import TransferValidationReads
    from finfaas.store.transfers_store import TransfersStore

    ledger, orders = ledger_store_from_config(), TransfersStore()
    owner, tag = f"cust-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    debit, credit, missing = f"acc-a-{tag}", f"acc-b-{tag}", f"acc-x-{tag}"
    ledger.open_account(NewAccount(debit, owner, "USD"), NOW)
    ledger.open_account(NewAccount(credit, "cust-other", "USD"), NOW)
    ledger.set_account_status(credit, AccountStatus.FROZEN, NOW)
    orders.set_tier(owner, Tier.PREMIUM)
    order = new_order(owner_id=owner)
    orders.create(order, accepted(order))
    counted = DailyUsage(owner, "2026-01-15", "USD", 4_200, 10**9)
    assert orders.reserve_usage(order.changed(NOW), counted) is UsageOutcome.RESERVED
    reads = TransferValidationReads(orders, ledger.models.account)
    meter = DynamoCallMeter()
    meter.start()

    # WHEN validation reads the order, both accounts, the tier and the day's total; and an unknown
    # owner's missing account
    try:
        facts = reads.facts(owner, [debit, credit], "2026-01-15", "USD", order.transfer_id)
        unknown = reads.facts(f"cust-{tag}", [missing], None, "USD")
    finally:
        meter.stop()

    # THEN one BatchGetItem each answers what the stores answer one read at a time
    assert facts == ComposedValidationReads(LedgerAccounts(ledger), orders).facts(
        owner, [debit, credit], "2026-01-15", "USD", order.transfer_id)
    assert facts.order is not None and facts.order.version == order.version + 1
    assert facts.tier is Tier.PREMIUM and facts.day_total_minor == 4_200
    assert facts.accounts[credit].status == "FROZEN" and facts.accounts[debit].owner_id == owner
    assert (unknown.accounts, unknown.tier, unknown.day_total_minor) == ({}, Tier.STANDARD, 0)
    assert sum(meter.snapshot().values()) == 2
    assert all(call.startswith("BatchGetItem") for call in meter.snapshot())


# --- a validation's one write with risk's decision --------------------------------------------------------


@pytest.fixture(params=["memory", "dynamodb"])
def orders_and_risk(request) -> tuple[Any, Any]:
    """An orders store that writes risk's items in its own transaction, and that risk store."""
    if request.param == "memory":
        risk = InMemoryRiskStore()
        return InMemoryTransferOrders(risk), risk
    request.getfixturevalue("embedded_aws")
    from finfaas.store.risk_store import RiskStore
    from finfaas.store.transfers_store import TransfersStore

    risk = RiskStore()
    return TransfersStore(risk=risk), risk


def screened_order(orders, risk) -> tuple[TransferOrder, DailyUsage, AssessmentToRecord]:
    """An accepted order, the day's usage it reserves and risk's decision on the place read for it."""
    order = new_order()
    orders.create(order, accepted(order))
    request = RiskRequest(order.transfer_id, order.owner_id, "acc-a", "acc-b", 700, "USD")
    before = risk.look_up(request, WINDOW).window_before
    assessment = Assessment(order.transfer_id, Decision.APPROVE, 10)
    pending = AssessmentToRecord(request, WINDOW, before, 100, assessment, NOW)
    return order, DailyUsage(order.owner_id, "2026-01-15", "USD", 700, 10**6), pending


def test_a_validation_writes_the_order_its_day_and_risks_decision_and_count_together_once(orders_and_risk):
    orders, risk = orders_and_risk
    order, usage, pending = screened_order(orders, risk)
    validated = order.changed(NOW, usage_day="2026-01-15")

    assert orders.reserve_usage(validated, usage, pending) is UsageOutcome.RESERVED
    # a lost reply's repeat is refused by the order's version and counts nothing more
    assert orders.reserve_usage(validated, usage, pending) is UsageOutcome.CONFLICT

    assert orders.get(order.transfer_id).version == validated.version
    assert orders.day_total_minor(order.owner_id, "2026-01-15", "USD") == 700
    counted = HourCount(1, 700)
    assert risk.look_up(pending.request, WINDOW) == Lookup(pending.assessment, True, (), counted, counted)


def test_a_validation_whose_risk_window_moved_writes_nothing_at_all(orders_and_risk):
    # GIVEN risk's decision judged on the first place, then another transfer of the customer counted
    orders, risk = orders_and_risk
    order, usage, pending = screened_order(orders, risk)
    other = RiskRequest(f"tr_{uuid.uuid4().hex}", order.owner_id, "acc-a", "acc-b", 10, "USD")
    assert risk.count(other, WINDOW, 100) == HourCount(1, 10)

    outcome = orders.reserve_usage(order.changed(NOW, usage_day="2026-01-15"), usage, pending)

    # THEN neither the order, nor the day, nor risk moved
    assert outcome is UsageOutcome.SCREENING_MOVED
    assert orders.get(order.transfer_id) == order
    assert orders.day_total_minor(order.owner_id, "2026-01-15", "USD") == 0
    assert risk.look_up(pending.request, WINDOW) == Lookup(None, False, (), HourCount(1, 10), None)


def test_a_validation_with_risks_lookup_reads_it_in_the_same_one_batch(embedded_aws):
    from finfaas.services.transfers.model import Screening
    from finfaas.store.call_meter import DynamoCallMeter
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.risk_store import RiskStore
    from finfaas.store.transfer_reads import TransferValidationReads
    from finfaas.store.transfers_store import TransfersStore

    risk = RiskStore()
    orders, ledger = TransfersStore(risk=risk), ledger_store_from_config()
    order, usage, pending = screened_order(orders, risk)
    assert risk.count_and_record(pending.request, WINDOW, pending.before, 100, pending.assessment, NOW)
    blocked = f"customer:{order.owner_id}"
    risk.block(BlockEntry(blocked, "fraud report", NOW))
    reads = TransferValidationReads(orders, ledger.models.account)
    meter = DynamoCallMeter()
    meter.start()
    try:
        facts = reads.facts(order.owner_id, ["acc-a", "acc-b"], "2026-01-15", "USD", order.transfer_id,
                            Screening(pending.request, WINDOW))
    finally:
        meter.stop()

    assert facts.order == order
    assert facts.risk == risk.look_up(pending.request, WINDOW)
    assert facts.risk is not None and facts.risk.blocked == (blocked,)
    assert facts.risk.recorded == pending.assessment and facts.risk.place == HourCount(1, 700)
    assert sum(meter.snapshot().values()) == 1
    assert all(call.startswith("BatchGetItem") for call in meter.snapshot())
