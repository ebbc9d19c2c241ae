"""The product catalogue, orders, positions and the published figures of the daily batch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
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
    Lot,
    MaturityInstruction,
    Rounding,
    WealthError,
    check_fee_tiers,
    check_rate,
    fee_rate_max,
)

product_id_chars_max = 64
order_id_chars_max = 64
# A rolled-over term's order id is its first order's id and its maturity: `<first id>~YYYYMMDD`.
ROLLED_SUFFIX_CHARS = len("~YYYYMMDD")
# A published figure keeps the history of its corrections, bounded: a day corrected more often than this
# is a matter for the fund's manager, not another correction.
figure_corrections_max = 10
correction_reason_chars_max = 500


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
    # The fund's own ledger account (model.fund_account_id): pays the holders' daily income.
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
    PENDING = "pending"  # cash (or units) held, waiting for confirmation on T+1
    CONFIRMED = "confirmed"  # the hold posted: units added (subscription) or cash paid (redemption)
    MATURED = "matured"  # a fixed term ended: interest paid or rolled, principal paid or rolled


class OrderKind(StrEnum):
    SUBSCRIBE = "subscribe"  # cash held on the wallet, posted into the position on T+1
    REDEEM = "redeem"  # standard redemption: units held on the position, paid to the wallet on T+1
    FAST_REDEEM = "fast_redeem"  # instant, within the product's daily cap


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
    kind: OrderKind = OrderKind.SUBSCRIBE
    version: int = 1
    # A NAV fund's order once confirmed: the NAV it was priced at, the units it moved, its fee, and
    # whether the fee reached the fund's fee account (a step of its own after the confirmation).
    nav: Decimal | None = None
    units_minor: int | None = None
    fee_minor: int | None = None
    fee_booked: bool = False
    # A fixed term's principal redeemed early (paid at once) and how many partial redemptions it had.
    early_redeemed_minor: int = 0
    partial_redemptions: int = 0
    # A NAV order whose trade date's NAV was not published when its confirmation came: the first day it
    # waited (each batch since lists it again until the NAV is published).
    awaiting_nav_since: date | None = None
    # A confirmed NAV redemption's lots (units and confirmation dates): a NAV correction prices them again.
    lots_redeemed: tuple[Lot, ...] = ()
    # How many NAV corrections re-priced the order (each one's ledger ids carry its number).
    corrections: int = 0

    def request(self) -> tuple[str, str, str, str, int, MaturityInstruction | None]:
        """What a repeated request must repeat to be the same order."""
        return (self.customer_id, self.kind.value, self.product_id, self.account_id, self.amount_minor,
                self.maturity_instruction)


Order = SubscriptionOrder  # subscriptions and redemptions share one record, told apart by `kind`


def rolled_order_id(order_id: str, maturity: date) -> str:
    """The order of the new term a rolled-over maturity starts: derived, so a rerun writes the same. The
    first order's id with the maturity, whatever the roll-over: the length never grows, and maturities
    of one chain only grow, so each term of the chain has its own id."""
    first = order_id.partition("~")[0]  # a client's order id never holds `~` (api.OrderId)
    return f"{first}~{maturity:%Y%m%d}"


def hold_id(customer_id: str, order_id: str) -> str:
    """The ledger transfer id of an order's hold: derived, so a retried order holds once."""
    return order_transfer_id(customer_id, order_id, "h")


# A position keeps its newest income days on its row (the income statement reads them there).
recent_incomes_max = 31


@dataclass(frozen=True, slots=True)
class Position:
    """A customer's holding of a product. An MMF's units are the balance of its ledger account
    (`account_id`) plus the income units accrued on the row: the row is the holder's sub-ledger of the
    daily income (the ledger books a chunk's incomes as one transfer to the fund's holders' account), and
    a redemption first moves the accrued units onto the ledger account (a sweep)."""

    product_id: str
    customer_id: str
    account_id: str
    opened_on: date
    last_income_date: date | None = None  # the day last credited: income posts once per (position, day)
    last_income_minor: int = 0
    cumulative_income_minor: int = 0
    # A NAV fund's units are kept here (they are not money: the cash is in the fund's account), with
    # their lots for the redemption fee's holding period and the units pending redemptions hold;
    # `version` guards their changes.
    units_minor: int = 0
    lots: tuple[Lot, ...] = ()
    version: int = 1
    units_held_minor: int = 0
    # An MMF's income units credited by the batch and not yet swept onto the ledger account, and the
    # newest income days (day, income), newest first, at most recent_incomes_max.
    accrued_units_minor: int = 0
    recent_incomes: tuple[tuple[date, int], ...] = ()
    # An MMF's mirror of its ledger account's posted balance, kept exact by every transaction that moves
    # that balance (orders' confirmations, fast redemptions, sweeps), so the batch reads only rows. None on
    # a row written before the mirror existed: the batch reads its ledger balance and sets it.
    ledger_units_minor: int | None = None

    @property
    def mmf_units_minor(self) -> int:
        """An MMF holder's units: the mirrored ledger balance and the accrued income units."""
        assert self.ledger_units_minor is not None, "a mirror read from the ledger first"
        return self.ledger_units_minor + self.accrued_units_minor

    def moved(self, ledger_units_minor: int) -> Position:
        """The row after its ledger account moved by ledger_units_minor (a mirror not kept yet stays
        unknown), on the next version: every move of the ledger units writes the row."""
        mirror = self.ledger_units_minor
        return replace(self, ledger_units_minor=None if mirror is None else mirror + ledger_units_minor,
                       version=self.version + 1)

    def swept(self) -> Position:
        """The row after its accrued units moved onto its ledger account (the units stay the same)."""
        return replace(self.moved(self.accrued_units_minor), accrued_units_minor=0)

    def credited(self, day: date, income_minor: int) -> Position:
        """The row after the day's income: accrued, last, cumulative and recent, on the next version."""
        assert income_minor > 0 and (self.last_income_date is None or self.last_income_date < day)
        return replace(self, last_income_date=day, last_income_minor=income_minor,
                       cumulative_income_minor=self.cumulative_income_minor + income_minor,
                       accrued_units_minor=self.accrued_units_minor + income_minor,
                       recent_incomes=((day, income_minor), *self.recent_incomes)[:recent_incomes_max],
                       version=self.version + 1)


@dataclass(frozen=True, slots=True)
class FigureCorrection:
    """An operator's correction of a published figure: the value it replaced, why, who and when."""

    previous: Decimal
    reason: str
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DailyIncome:
    """An MMF day's published income per 10,000 units and, once the batch settled it, the day's result:
    Σ holders' incomes + remainder = distributable (the formula on every unit outstanding)."""

    product_id: str
    day: date
    income_per_10k_units: Decimal
    published_at: datetime
    version: int = 1
    seven_day_yield_percent: Decimal | None = None
    units_total_minor: int | None = None
    distributable_minor: int | None = None
    posted_minor: int | None = None
    remainder_minor: int | None = None
    holders: int | None = None
    corrections: tuple[FigureCorrection, ...] = ()
    # Set (on the next version) by the batch before it posts any of the day's income: from then on the
    # figure is the one every chunk is posted at, and a correction is refused.
    posting_started: bool = False

    @property
    def settled(self) -> bool:
        return self.distributable_minor is not None


@dataclass(frozen=True, slots=True)
class NavFigure:
    """A NAV fund's net asset value per unit on a trading day (4 decimals), published by ops."""

    product_id: str
    day: date
    nav: Decimal
    published_at: datetime
    version: int = 1
    corrections: tuple[FigureCorrection, ...] = ()


@dataclass(frozen=True, slots=True)
class IncomeChunk:
    """The income of one ledger transaction of the batch: its holders' units and incomes, recorded in the
    same transaction as the postings, so a rerun finds it and the settlement sums every chunk once."""

    product_id: str
    day: date
    first_customer_id: str
    holders: int
    units_total_minor: int
    income_total_minor: int


@dataclass(frozen=True, slots=True)
class PositionPage:
    """Positions of a product in customer order; `next_cursor` resumes after the last (None: the end)."""

    positions: tuple[Position, ...]
    next_cursor: str | None


def position_account_id(product_id: str, customer_id: str) -> str:
    """The ledger account holding a customer's units of a product (owned by the customer)."""
    digest = hashlib.sha256(f"{product_id}\x00{customer_id}".encode()).hexdigest()[:24]
    return f"wp-{digest}"


def fund_account_id(product_id: str) -> str:
    """The fund's own account: pays the holders' daily income (it may go below zero: the fund's assets
    earn outside the ledger) and receives fees."""
    return f"wf-{hashlib.sha256(product_id.encode()).hexdigest()[:24]}-fund"


def fund_shard_account_id(fund_account: str, shard: int) -> str:
    """A shard of the fund's account for the income it pays (shard 0 is the fund's account itself):
    chunks posted at once each debit their own shard, never one hot item. The fund's balance is their sum.
    The holders' account is sharded the same way."""
    assert shard >= 0
    return fund_account if shard == 0 else f"{fund_account}-{shard}"


def holders_account_id(product_id: str) -> str:
    """The fund's holders' account: the income units accrued on MMF positions' rows and not yet swept
    onto their ledger accounts (Σ of its shards = Σ positions' accrued units)."""
    return f"wf-{hashlib.sha256(product_id.encode()).hexdigest()[:24]}-hld"


def chunk_transfer_id(product_id: str, day: date, first_customer_id: str) -> str:
    """The ledger id of a batch chunk's incomes (fund → holders' account): one per chunk and day."""
    digest = hashlib.sha256(f"{product_id}\x00{first_customer_id}".encode()).hexdigest()[:32]
    return f"wc-{digest}-{day:%Y%m%d}"


def sweep_transfer_id(position_account: str, version: int) -> str:
    """The ledger id of a sweep of a position's accrued units, per row version: a retry sweeps once."""
    return f"{position_account}-s{version}"


def fee_account_id(product_id: str) -> str:
    """The fund's fee account: NAV subscription fees (redemption fees stay in the fund's account)."""
    return f"wf-{hashlib.sha256(product_id.encode()).hexdigest()[:24]}-fee"


def rounding_account_id(product_id: str) -> str:
    """The fund's rounding account: each day's remainder (distributable − Σ posted)."""
    return f"wf-{hashlib.sha256(product_id.encode()).hexdigest()[:24]}-rnd"


def remainder_transfer_id(product_id: str, day: date) -> str:
    return f"wr-{hashlib.sha256(product_id.encode()).hexdigest()[:24]}-{day:%Y%m%d}"


def order_transfer_id(customer_id: str, order_id: str, step: str) -> str:
    """A ledger id derived from the customer and the client's order id (two customers may pick the same
    order id) and the step (`h` hold, `p` post, `f` fast redemption, `fee` a NAV subscription's fee,
    `mi` a fixed term's interest, `mp` its principal paid out)."""
    digest = hashlib.sha256(f"{customer_id}\x00{order_id}".encode()).hexdigest()[:40]
    return f"wo-{digest}-{step}"
