"""The product catalogue and subscription orders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from finfaas.domain.calendar import Cutoff
from finfaas.domain.money import currency_exponent
from finfaas.domain.wealth import (
    FAST_REDEMPTION_DAILY_CAP_MINOR,
    WEALTH_CURRENCY_EXPONENT,
    FeeTier,
    FixedTerm,
    MaturityInstruction,
    Rounding,
    WealthError,
    check_fee_tiers,
    check_rate,
    fee_rate_max,
)

product_id_chars_max = 64
order_id_chars_max = 64


class ProductKind(StrEnum):
    MMF = "mmf"  # money-market fund: NAV 1.00, daily income as units
    NAV_FUND = "nav_fund"  # priced at the next published NAV
    FIXED_TERM = "fixed_term"  # rate, term, interest at maturity


class ProductStatus(StrEnum):
    OPEN = "open"  # takes new subscriptions
    CLOSED = "closed"  # existing holdings run on; no new subscriptions


@dataclass(frozen=True, slots=True)
class Product:
    """One product of the catalogue; the settings of other kinds stay at their defaults."""

    product_id: str
    kind: ProductKind
    name: str
    market: str
    currency: str
    status: ProductStatus
    minimum_minor: int
    # The fund's account that receives subscription cash when an order is confirmed.
    fund_account_id: str
    cutoff: Cutoff = field(default_factory=Cutoff)
    rounding: Rounding = Rounding.TRUNCATE  # MMF income
    fast_redemption_cap_minor: int = FAST_REDEMPTION_DAILY_CAP_MINOR  # MMF
    subscription_fee_rate: Decimal = Decimal(0)  # NAV fund
    redemption_fee_tiers: tuple[FeeTier, ...] = ()  # NAV fund
    fixed_term: FixedTerm | None = None

    def __post_init__(self) -> None:
        # At NAV 1.00 a hundredth of a unit is a minor unit only in a two-decimal currency.
        if currency_exponent(self.currency) != WEALTH_CURRENCY_EXPONENT:
            raise WealthError("currency: wealth products trade in a two-decimal currency", field="currency")
        if self.minimum_minor <= 0:
            raise WealthError("minimum: must be greater than zero", field="minimum")
        cap_max = FAST_REDEMPTION_DAILY_CAP_MINOR
        if self.kind is ProductKind.MMF and not 0 < self.fast_redemption_cap_minor <= cap_max:
            raise WealthError(f"fast_redemption_cap: 1-{FAST_REDEMPTION_DAILY_CAP_MINOR} minor units",
                              field="fast_redemption_cap")
        if self.kind is ProductKind.NAV_FUND:
            check_rate(self.subscription_fee_rate, field="subscription_fee_rate", maximum=fee_rate_max)
            check_fee_tiers(self.redemption_fee_tiers)
        if (self.kind is ProductKind.FIXED_TERM) != (self.fixed_term is not None):
            raise WealthError("fixed_term: the terms of a fixed-term product, and of no other",
                              field="fixed_term")
        if self.fixed_term is not None and self.fixed_term.minimum_minor != self.minimum_minor:
            raise WealthError("fixed_term: its minimum is the product's", field="fixed_term")


class OrderStatus(StrEnum):
    PENDING = "pending"  # cash held in the wallet, waiting for confirmation on T+1


@dataclass(frozen=True, slots=True)
class SubscribeCommand:
    """A customer's subscription: the client's order id makes it idempotent."""

    order_id: str
    product_id: str
    account_id: str  # the customer's wallet, debited at confirmation
    amount_minor: int
    maturity_instruction: MaturityInstruction | None = None  # fixed-term products only


@dataclass(frozen=True, slots=True)
class SubscriptionOrder:
    """A subscription as recorded: dates from the business calendar, the cash held under hold_id."""

    order_id: str
    customer_id: str
    product_id: str
    account_id: str
    amount_minor: int
    currency: str
    maturity_instruction: MaturityInstruction | None
    placed_at: datetime
    trade_date: date
    confirmation_date: date
    hold_id: str
    status: OrderStatus = OrderStatus.PENDING

    def request(self) -> tuple[str, str, str, int, MaturityInstruction | None]:
        """What a repeated request must repeat to be the same order."""
        return (self.customer_id, self.product_id, self.account_id, self.amount_minor,
                self.maturity_instruction)


def hold_id(order_id: str) -> str:
    """The ledger transfer id of an order's hold: derived, so a retried subscription holds once."""
    return f"{order_id}-hold"
