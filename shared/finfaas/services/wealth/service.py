"""Wealth's use cases: subscribe to a product, read one's own order.

A subscription holds the cash first and records the order second, both keyed by the client's order id:
a refused hold (balance, account) writes nothing, and a retry after a crash between the two finds the
hold already made (the ledger replays it) and records the order. The order's dates come from the
business date and the market's calendar, never the wall clock's date: the clock gives only the time
of day, so that in the sandbox an advanced business date moves orders with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from finfaas.domain.calendar import MarketCalendar, zone
from finfaas.domain.wealth import check_minimum, order_dates
from finfaas.services.wealth.errors import (
    InvalidOrder,
    OrderExistsWithDifferentFields,
    OrderNotFound,
    ProductClosed,
    ProductNotFound,
)
from finfaas.services.wealth.model import (
    Product,
    ProductKind,
    ProductStatus,
    SubscribeCommand,
    SubscriptionOrder,
    hold_id,
)
from finfaas.services.wealth.ports import BusinessDates, OrderRepository, ProductCatalogue, WalletHolds


def _utc_now() -> datetime:
    return datetime.now(UTC)


class WealthService:
    """Subscriptions to the catalogue's products, on the business date and the market's calendar."""

    def __init__(self, catalogue: ProductCatalogue, orders: OrderRepository, holds: WalletHolds,
                 business_dates: BusinessDates, calendars: Mapping[str, MarketCalendar],
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self._catalogue = catalogue
        self._orders = orders
        self._holds = holds
        self._business_dates = business_dates
        self._calendars = dict(calendars)
        self._clock = clock

    def subscribe(self, customer_id: str, command: SubscribeCommand) -> SubscriptionOrder:
        """Hold the amount and record a pending order confirmed on T+1; a retry returns the same order."""
        product = self._open_product(command.product_id)
        self._check_instruction(product, command)
        check_minimum(command.amount_minor, product.minimum_minor)
        order = self._priced(customer_id, command, product)
        existing = self._orders.order(command.order_id)
        if existing is not None:
            return self._same(existing, order)
        self._holds.hold(order.hold_id, customer_id, command.account_id, product.fund_account_id,
                         command.amount_minor, product.currency)
        return self._same(self._orders.create(order), order)

    def order(self, customer_id: str, order_id: str) -> SubscriptionOrder:
        """The customer's own order; another customer's is not found, as a missing one."""
        found = self._orders.order(order_id)
        if found is None or found.customer_id != customer_id:
            raise OrderNotFound("no such order", errors=(("order_id", "not found"),))
        return found

    def _open_product(self, product_id: str) -> Product:
        product = self._catalogue.product(product_id)
        if product is None:
            raise ProductNotFound("no such product", errors=(("product_id", "not found"),))
        if product.status is not ProductStatus.OPEN:
            raise ProductClosed("the product takes no new subscriptions", errors=(("product_id", "closed"),))
        return product

    @staticmethod
    def _check_instruction(product: Product, command: SubscribeCommand) -> None:
        fixed_term = product.kind is ProductKind.FIXED_TERM
        if fixed_term != (command.maturity_instruction is not None):
            need = "required for a fixed-term product" if fixed_term else "only for fixed-term products"
            raise InvalidOrder(f"maturity_instruction: {need}", errors=(("maturity_instruction", need),))

    def _priced(self, customer_id: str, command: SubscribeCommand, product: Product) -> SubscriptionOrder:
        business_date = self._business_dates.current(product.market).business_date
        local_zone = zone(product.cutoff.time_zone)
        time_of_day = self._clock().astimezone(local_zone).time()
        placed_at = datetime.combine(business_date, time_of_day, tzinfo=local_zone)
        dates = order_dates(self._calendars[product.market], placed_at, product.cutoff)
        return SubscriptionOrder(command.order_id, customer_id, command.product_id, command.account_id,
                                 command.amount_minor, product.currency, command.maturity_instruction,
                                 placed_at, dates.trade_date, dates.confirmation_date,
                                 hold_id(command.order_id))

    @staticmethod
    def _same(stored: SubscriptionOrder, asked: SubscriptionOrder) -> SubscriptionOrder:
        if stored.request() != asked.request():
            raise OrderExistsWithDifferentFields("the order id is taken by another order",
                                                 errors=(("order_id", "taken by another order"),))
        return stored
