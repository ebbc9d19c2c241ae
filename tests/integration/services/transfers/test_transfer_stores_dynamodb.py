"""The transfers, risk and rail stores: the DynamoDB store and the in-memory fake pass one contract."""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.limits import Tier
from finfaas.domain.risk_rules import Assessment, Decision, RiskRequest
from finfaas.services.rail.model import PaymentStatus, Plan, RailPayment
from finfaas.services.risk.model import BlockEntry
from finfaas.services.transfers.model import (
    DailyUsage,
    OrderEvent,
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


# --- risk ---------------------------------------------------------------------------------------------


def test_an_assessment_is_recorded_once_with_its_counters(risk_store):
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    request = RiskRequest(f"tr_{uuid.uuid4().hex}", customer, "acc-a", "bank1:0009", 700, "USD")
    assessment = Assessment(request.assessment_id, Decision.APPROVE, 10)

    assert risk_store.record(request, assessment, "2026-01-15T09", NOW) == assessment
    assert (
        risk_store.record(
            request, Assessment(request.assessment_id, Decision.DECLINE, 99), "2026-01-15T09", NOW
        )
        == assessment
    )
    context = risk_store.context_for(request, "2026-01-15T09")
    assert (context.hourly_transfers, context.hourly_amount_minor, context.destination_seen) == (1, 700, True)
    assert risk_store.stored_assessment(request.assessment_id) == assessment


def test_block_entries_match_the_parties_of_a_transfer(risk_store):
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    risk_store.block(BlockEntry(f"customer:{customer}", "kyc", NOW))
    request = RiskRequest("tr_x", customer, "acc-a", "acc-b", 1, "USD")

    assert risk_store.context_for(request, "2026-01-15T09").blocked == (f"customer:{customer}",)
    assert risk_store.unblock(f"customer:{customer}") is True
    assert risk_store.unblock(f"customer:{customer}") is False
    assert risk_store.context_for(request, "2026-01-15T09").blocked == ()


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
