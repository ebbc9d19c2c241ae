"""Wealth's request and response shapes and its error table (for the wealth function to come)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt

from finfaas.domain import wealth as rules
from finfaas.domain.calendar import CalendarError
from finfaas.domain.ledger import identifier_chars_max
from finfaas.domain.money import transfer_amount_minor_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.services.wealth.errors import (
    InsufficientBalance,
    InvalidOrder,
    OrderExistsWithDifferentFields,
    OrderNotFound,
    ProductClosed,
    ProductNotFound,
    WalletAccountNotFound,
    WealthStoreUnavailable,
)
from finfaas.services.wealth.model import OrderStatus, SubscribeCommand, SubscriptionOrder

# The hold's transfer id appends a suffix to the order id, and must stay a valid ledger identifier.
HOLD_SUFFIX_CHARS = len("-hold")
Identifier = Annotated[str, Field(min_length=1, max_length=identifier_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]
OrderId = Annotated[str, Field(min_length=1, max_length=identifier_chars_max - HOLD_SUFFIX_CHARS,
                               pattern=r"^[A-Za-z0-9_-]+$")]


class SubscribeBody(StrictModel):
    """Subscribe amount (minor units) of the wallet account to a product; order_id makes it idempotent."""

    order_id: OrderId
    product_id: Identifier
    account_id: Identifier
    amount: Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max, description="minor units")]
    maturity_instruction: rules.MaturityInstruction | None = None

    def command(self) -> SubscribeCommand:
        return SubscribeCommand(self.order_id, self.product_id, self.account_id, self.amount,
                                self.maturity_instruction)


class OrderView(BaseModel):
    order_id: str
    product_id: str
    account_id: str
    amount: int = Field(description="minor units")
    currency: str
    maturity_instruction: rules.MaturityInstruction | None
    placed_at: datetime
    trade_date: date = Field(description="T: the trading day the order belongs to")
    confirmation_date: date = Field(description="T+1: confirmation, and the first day of income")
    status: OrderStatus


def order_view(order: SubscriptionOrder) -> OrderView:
    return OrderView(order_id=order.order_id, product_id=order.product_id, account_id=order.account_id,
                     amount=order.amount_minor, currency=order.currency,
                     maturity_instruction=order.maturity_instruction, placed_at=order.placed_at,
                     trade_date=order.trade_date, confirmation_date=order.confirmation_date,
                     status=order.status)


ERRORS = {
    rules.BelowMinimum: ErrorSpec(422, rules.BelowMinimum.code, "Below the product's minimum"),
    rules.FastRedemptionCapExceeded: ErrorSpec(422, rules.FastRedemptionCapExceeded.code,
                                               "Fast redemption cap exceeded"),
    rules.InsufficientUnits: ErrorSpec(422, rules.InsufficientUnits.code, "Insufficient units"),
    rules.PartialRedemptionUsed: ErrorSpec(409, rules.PartialRedemptionUsed.code, "Partial redemption used"),
    rules.InvalidFigure: ErrorSpec(422, rules.InvalidFigure.code, "Invalid figure"),
    rules.WealthError: ErrorSpec(422, rules.WealthError.code, "Invalid wealth input"),
    InvalidOrder: ErrorSpec(422, InvalidOrder.code, "Invalid order"),
    ProductNotFound: ErrorSpec(404, ProductNotFound.code, "Product not found"),
    ProductClosed: ErrorSpec(409, ProductClosed.code, "Product closed"),
    OrderNotFound: ErrorSpec(404, OrderNotFound.code, "Order not found"),
    OrderExistsWithDifferentFields: ErrorSpec(409, OrderExistsWithDifferentFields.code,
                                              "Order exists with different fields"),
    WalletAccountNotFound: ErrorSpec(404, WalletAccountNotFound.code, "Wallet account not found"),
    InsufficientBalance: ErrorSpec(422, InsufficientBalance.code, "Insufficient balance"),
    # The market's calendar does not cover the business date: configuration, not the customer's input.
    CalendarError: ErrorSpec(503, "calendar_not_configured", "Calendar not configured"),
    WealthStoreUnavailable: ErrorSpec(503, WealthStoreUnavailable.code, "Wealth store unavailable"),
}
