"""The payments store contracts (merchants, intents and their pages), written once: the in-memory fakes
run them here, the DynamoDB store runs them in tests/integration/services/payments against DynamoDB Local."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain.payments import FeeSchedule, Rounding
from finfaas.services.payments.model import (
    CaptureMethod,
    IntentEvent,
    IntentFilter,
    IntentStatus,
    LedgerStep,
    Merchant,
    MerchantStatus,
    PaymentIntent,
    SettlementAccount,
)
from finfaas_dev.fakes.payments import InMemoryMerchants, InMemoryPaymentIntents

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def new_merchant(**changes) -> Merchant:
    merchant = Merchant(
        merchant_id=f"m-{uuid.uuid4().hex[:12]}", name="Corner Books", currency="USD",
        settlement=SettlementAccount("SANDUS00", "000123456789", "Corner Books LLC"),
        fees=FeeSchedule(290, 30, Rounding.HALF_UP), reserve_bps=1_000, capture_window_seconds=7 * 86_400,
        receivable_shards=8, status=MerchantStatus.ACTIVE, created_at=T0)
    return replace(merchant, **changes)


class MerchantsContract:
    """Merchants; subclasses provide the `store` fixture."""

    def test_a_created_merchant_reads_back_field_for_field(self, store):
        merchant = new_merchant(fees=FeeSchedule(5_000, 10**12, Rounding.DOWN))

        assert store.create(merchant) == merchant

        assert store.get(merchant.merchant_id) == merchant

    def test_a_taken_id_returns_the_stored_merchant_and_writes_nothing(self, store):
        first = new_merchant()
        store.create(first)

        answer = store.create(replace(first, name="Someone Else"))

        assert answer == first
        assert store.get(first.merchant_id) == first

    def test_an_unknown_merchant_is_none(self, store):
        assert store.get(f"m-{uuid.uuid4().hex}") is None

    def test_a_change_is_saved_only_over_the_version_it_was_made_from(self, store):
        merchant = new_merchant()
        store.create(merchant)
        later = T0 + timedelta(minutes=1)

        assert store.save(merchant.deactivated(later))
        assert not store.save(merchant.deactivated(later + timedelta(minutes=1)))  # from a stale read

        stored = store.get(merchant.merchant_id)
        assert (stored.status, stored.version, stored.updated_at) == (MerchantStatus.INACTIVE, 2, later)

    def test_a_merchant_never_created_is_not_saved(self, store):
        merchant = new_merchant()

        assert not store.save(replace(merchant, version=2))

        assert store.get(merchant.merchant_id) is None


class TestInMemoryMerchants(MerchantsContract):
    @pytest.fixture
    def store(self):
        return InMemoryMerchants()


def new_intent(merchant_id: str, owner_id: str, minutes: int, status: IntentStatus = IntentStatus.SUCCEEDED):
    return PaymentIntent(
        payment_id=f"pi_{uuid.uuid4().hex[:24]}", owner_id=owner_id, customer_account_id=f"acc-{owner_id}",
        merchant_id=merchant_id, receivable_account_id=f"mrc-{merchant_id}-recv-0",
        amount_minor=100 + minutes,
        currency="USD", capture_method=CaptureMethod.MANUAL, application_fee_minor=3,
        created_at=T0 + timedelta(minutes=minutes), status=status,
        ledger=(LedgerStep("hold", "h-1", 100),), metadata={"order": str(minutes)})


EVENT = IntentEvent("payment_intent.created", {"payment_intent": "pi_x"})


def created(intents, intent: PaymentIntent) -> PaymentIntent:
    return intents.create(intent, EVENT)


class IntentPagesContract:
    """PaymentIntents' creation, versioned save and pages; subclasses provide the `intents` fixture."""

    def test_an_intent_reads_back_field_for_field(self, intents):
        intent = new_intent("m-a", "c-1", 0)

        assert intents.create(intent, EVENT) == intent

        assert intents.get(intent.payment_id) == intent
        assert intents.save(replace(intent, status=IntentStatus.CANCELED, version=2), EVENT)
        assert not intents.save(replace(intent, version=2), EVENT)

    def test_a_merchants_intents_come_newest_first_page_by_page(self, intents):
        merchant = f"m-{uuid.uuid4().hex[:8]}"
        made = [created(intents, new_intent(merchant, f"c-{n % 2}", n)) for n in range(5)]
        created(intents, new_intent(f"m-{uuid.uuid4().hex[:8]}", "c-0", 9))  # another merchant's

        first = intents.page(IntentFilter(merchant_id=merchant), 3, None)
        second = intents.page(IntentFilter(merchant_id=merchant), 3, first.last_key)

        assert [i.payment_id for i in first.intents] == [i.payment_id for i in reversed(made[2:])]
        assert [i.payment_id for i in second.intents] == [made[1].payment_id, made[0].payment_id]
        assert second.last_key is None or intents.page(
            IntentFilter(merchant_id=merchant), 3, second.last_key).intents == []

    def test_filters_by_owner_status_and_creation_time(self, intents):
        merchant, owner = f"m-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
        made = [created(intents, new_intent(merchant, owner, n, status)) for n, status in enumerate(
            [IntentStatus.SUCCEEDED, IntentStatus.CANCELED, IntentStatus.SUCCEEDED, IntentStatus.SUCCEEDED])]
        created(intents, new_intent(merchant, "someone-else", 2))

        def ids(wanted: IntentFilter) -> list[str]:
            return [i.payment_id for i in intents.page(wanted, 10, None).intents]

        assert ids(IntentFilter(owner_id=owner)) == [i.payment_id for i in reversed(made)]
        assert ids(IntentFilter(merchant_id=merchant, owner_id=owner, status=IntentStatus.CANCELED)) == [
            made[1].payment_id]
        window = IntentFilter(owner_id=owner, created_gte=made[1].created_at, created_lt=made[3].created_at)
        assert ids(window) == [made[2].payment_id, made[1].payment_id]


class TestInMemoryIntentPages(IntentPagesContract):
    @pytest.fixture
    def intents(self):
        return InMemoryPaymentIntents()


def authorized(base: datetime, days_left: int, status: IntentStatus = IntentStatus.REQUIRES_CAPTURE,
               warned: bool = False) -> PaymentIntent:
    """An intent held until base + days_left, warned or not."""
    intent = replace(new_intent(f"m-{uuid.uuid4().hex[:8]}", "c-1", 0, status),
                     hold_id="h-1", capture_before=base + timedelta(days=days_left))
    return replace(intent, expiry_warned_at=base) if warned else intent


class ExpiryIndexContract:
    """The expiry job's selection (due_for_expiry); subclasses provide the `intents` fixture. The table
    may hold other tests' intents: each test judges its own, at times no other test uses."""

    def test_due_intents_come_longest_due_first_and_only_while_capturable(self, intents):
        # GIVEN, from a base no other test uses, intents due (warning a day before capture_before, expiry
        # at it once warned) at base+1d, base+4d and base+10d, and one that holds nothing any more
        base = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 10**6)
        soon = created(intents, authorized(base, 2))
        later = created(intents, authorized(base, 5, IntentStatus.PARTIALLY_CAPTURED))
        warned = created(intents, authorized(base, 10, warned=True))
        created(intents, authorized(base, 1, IntentStatus.SUCCEEDED))
        ours = {soon.payment_id, later.payment_id, warned.payment_id}

        def due(days: int) -> list[str]:
            return [p for p in intents.due_for_expiry(base + timedelta(days=days), 1000) if p in ours]

        # THEN each is due from its time on, the longest due first
        assert due(0) == []
        assert due(4) == [soon.payment_id, later.payment_id]
        assert due(10) == [soon.payment_id, later.payment_id, warned.payment_id]
        # WHEN one ends (canceled) and one is warned: the first leaves, the second is due at capture_before
        assert intents.save(replace(soon, status=IntentStatus.CANCELED, hold_id=None, version=2), EVENT)
        assert intents.save(replace(later, expiry_warned_at=base + timedelta(days=4), version=2), EVENT)
        assert due(4) == []
        assert due(10) == [later.payment_id, warned.payment_id]

    def test_a_selection_reads_at_most_its_limit(self, intents):
        base = datetime(1980, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 10**6)
        for days in (1, 2, 3):
            created(intents, authorized(base, days))

        assert len(intents.due_for_expiry(base + timedelta(days=5), 2)) == 2


class TestInMemoryExpiryIndex(ExpiryIndexContract):
    @pytest.fixture
    def intents(self):
        return InMemoryPaymentIntents()
