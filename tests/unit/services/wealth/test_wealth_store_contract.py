"""The wealth store's contract, passed by the in-memory fake here and by store/wealth_store.py on
DynamoDB Local (tests/integration/services/wealth): the batch's paging over a product's positions,
figures published once or over their version, chunk records written once, products and their status."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from finfaas.domain.wealth import Lot
from finfaas.services.wealth.model import (
    DailyIncome,
    IncomeChunk,
    NavFigure,
    OrderKind,
    OrderStatus,
    Position,
    Product,
    ProductKind,
    ProductStatus,
    fund_account_id,
    recent_incomes_max,
)
from finfaas_dev.fakes.wealth import InMemoryWealthStore
from finfaas_dev.wealth import seeded_holdings

DAY = date(2027, 3, 4)


def new_product() -> Product:
    product_id = f"mmf-{uuid.uuid4().hex[:10]}"
    # A market of its own: the stage's daily batch of CN never meets the contract's products.
    return Product(product_id, ProductKind.MMF, "Cash", "KT", "CNY", ProductStatus.OPEN, 100,
                   fund_account_id(product_id))


class WealthStoreContract:
    @pytest.fixture
    def store(self):
        raise NotImplementedError

    def test_a_product_is_created_once_and_closed_only_from_the_status_it_was_read_in(self, store):
        product = new_product()
        assert store.create_product(product) == product
        assert store.create_product(replace(product, name="Other")) == product
        closed = replace(product, status=ProductStatus.CLOSED)
        assert store.save_product(closed, "open")
        assert not store.save_product(replace(product, name="Late"), "open")
        assert store.product(product.product_id) == closed
        assert store.product("missing") is None

    def test_the_batch_pages_over_every_position_of_a_product_once_in_customer_order(self, store):
        product = new_product()
        customers = [f"c{n:03d}" for n in range(23)]
        for customer in reversed(customers):
            store.create_position(Position(product.product_id, customer, f"wp-{customer}", DAY))
        store.create_position(Position(new_product().product_id, "c000", "wp-other", DAY))
        seen, cursor = [], None
        while True:
            page = store.positions_page(product.product_id, 10, cursor)
            assert len(page.positions) <= 10
            seen += [p.customer_id for p in page.positions]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == customers
        assert [p.product_id for p in store.positions_of("c000")].count(product.product_id) == 1

    def test_a_figure_is_published_once_or_over_the_version_it_replaces(self, store):
        product_id = new_product().product_id
        first = DailyIncome(product_id, DAY, Decimal("0.6512"), datetime(2027, 3, 4, tzinfo=UTC))
        assert store.publish_income(first, None)
        assert not store.publish_income(replace(first, income_per_10k_units=Decimal("0.7")), None)
        corrected = replace(first, income_per_10k_units=Decimal("0.7000"), version=2)
        assert not store.publish_income(corrected, 5)
        assert store.publish_income(corrected, 1)
        assert store.daily_income(product_id, DAY) == corrected
        assert store.daily_incomes(product_id, DAY, DAY) == [corrected]
        assert store.daily_income(product_id, date(2027, 3, 5)) is None
        marked = replace(corrected, posting_started=True, version=3)  # the batch's mark before it posts
        assert store.publish_income(marked, 2)
        assert store.daily_income(product_id, DAY) == marked

    def test_a_nav_is_published_once_or_over_the_version_it_replaces(self, store):
        product_id = new_product().product_id
        first = NavFigure(product_id, DAY, Decimal("1.1800"), datetime(2027, 3, 4, tzinfo=UTC))
        assert store.publish_nav(first, None)
        assert not store.publish_nav(replace(first, nav=Decimal("1.19")), None)
        corrected = replace(first, nav=Decimal("1.1900"), version=2)
        assert not store.publish_nav(corrected, 5)
        assert store.publish_nav(corrected, 1)
        assert store.nav(product_id, DAY) == corrected
        assert store.nav(product_id, date(2027, 3, 5)) is None

    def test_a_nav_position_keeps_its_units_lots_and_version(self, store):
        product_id = new_product().product_id
        held = Position(product_id, "c000", "wp-c000", DAY, units_minor=8_374_087,
                        lots=(Lot(8_374_087, DAY),), version=1)
        assert store.create_position(held) == held

    def test_an_mmf_position_keeps_its_accrued_units_and_newest_incomes(self, store):
        product_id = new_product().product_id
        days = recent_incomes_max + 2  # more days than the row keeps
        held = Position(product_id, "c000", "wp-c000", DAY, ledger_units_minor=1_000_000)
        for n in range(days):
            held = held.credited(DAY + timedelta(days=n), 60 + n)
        earned = sum(range(60, 60 + days))
        assert (held.accrued_units_minor, held.cumulative_income_minor) == (earned, earned)
        assert held.version == days + 1
        assert len(held.recent_incomes) == recent_incomes_max
        assert held.recent_incomes[0] == (DAY + timedelta(days=days - 1), 60 + days - 1)
        assert store.create_position(held) == held
        # a sweep moves the accrued units into the mirrored ledger units: the holder's units stay the same
        swept = held.swept()
        assert (swept.ledger_units_minor, swept.accrued_units_minor, swept.mmf_units_minor) == (
            1_000_000 + earned, 0, held.mmf_units_minor)

    def test_a_row_written_before_the_mirror_reads_back_without_it_and_keeps_it_unknown(self, store):
        old = store.create_position(Position(new_product().product_id, "c000", "wp-c000", DAY))
        assert old.ledger_units_minor is None
        assert (old.moved(-500).ledger_units_minor, old.moved(-500).version) == (None, old.version + 1)

    def test_a_chunk_is_recorded_once(self, store):
        product_id = new_product().product_id
        chunk = IncomeChunk(product_id, DAY, "c000", 3, 300, 2)
        assert store.record_chunk(chunk)
        assert not store.record_chunk(replace(chunk, income_total_minor=9))
        assert store.chunks(product_id, DAY) == [chunk]

    def test_an_order_waiting_for_its_nav_is_listed_for_another_day_once_and_flagged_on_its_version(self,
                                                                                                  store):
        product = new_product()
        _, (order,) = seeded_holdings(product, [f"c-{uuid.uuid4().hex[:8]}"], [10_000], DAY)
        store.seed([], [order])
        later = date(2027, 3, 5)
        store.relist_due(order, later)
        store.relist_due(order, later)  # a rerun lists it again: still once
        assert store.due_orders(product.product_id, later, 10, None) == (
            [(order.customer_id, order.order_id)], None)
        flagged = replace(order, awaiting_nav_since=later, lots_redeemed=(Lot(500, DAY),), corrections=1,
                          version=order.version + 1)
        assert store.save_order(flagged)
        assert not store.save_order(replace(flagged, awaiting_nav_since=DAY))  # on a version it moved from
        assert store.order(order.customer_id, order.order_id) == flagged
        assert store.priced_orders(product.product_id, DAY, 10, None) == ([], None)

    def test_a_placed_order_holds_its_position_is_due_on_its_confirmation_date_not_priced_yet(self, store):
        # GIVEN a position of 100.00 units
        product = new_product()
        (position,), (seeded,) = seeded_holdings(product, [f"c-{uuid.uuid4().hex[:8]}"], [10_000], DAY)
        store.seed([position], [])
        later = DAY + timedelta(days=1)
        order = replace(seeded, order_id="r-1", kind=OrderKind.REDEEM, status=OrderStatus.PENDING,
                        trade_date=DAY, confirmation_date=later, version=1)
        held = replace(position, units_held_minor=4_000, version=position.version + 1)
        # WHEN a redemption is placed on it, then another on the version it moved from
        assert store.place_order(order, held)
        assert not store.place_order(replace(order, order_id="r-2"), held)
        # THEN the units are held once, the order is due on its confirmation date, and no NAV priced it
        assert store.position(product.product_id, position.customer_id) == held
        assert store.order(position.customer_id, "r-2") is None
        assert store.due_orders(product.product_id, later, 10, None) == (
            [(position.customer_id, "r-1")], None)
        assert store.priced_orders(product.product_id, DAY, 10, None) == ([], None)


class TestInMemoryWealthStore(WealthStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryWealthStore()
