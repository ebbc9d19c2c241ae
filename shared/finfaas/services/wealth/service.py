"""Wealth's use cases: the catalogue (ops), orders and positions (customers), the daily batch.

Every money step is one ledger transaction carrying the wealth row it changes (services/payments does
the same with its intents): a subscription's hold on the wallet with its new order, a confirmation's
post with the order's new status, a fast redemption with the day's usage of the cap, a batch chunk's
incomes (one transfer to the holders' account) with the chunk's record and its holders' credited rows.
Money and row commit together or not at all, and the row's condition (attribute_not_exists, a version)
is the exactly-once guard.

Units of an MMF position are the balance of its ledger account (NAV 1.00: a hundredth of a unit is a
cent) plus the income accrued on its row, which a redemption sweeps onto the account first. The
order's dates come from the business date and the market's calendar, never the wall clock's date: the
clock gives only the time of day, so an advanced sandbox date moves orders with it.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from finfaas.domain.calendar import MarketCalendar, zone
from finfaas.domain.errors import AccountNotFound, InsufficientFunds, TransferNotFound
from finfaas.domain.ledger import Account, Actor, transaction_items_max
from finfaas.domain.wealth import (
    UNITS_PER_INCOME_FIGURE,
    YIELD_WINDOW_DAYS,
    InsufficientUnits,
    Lot,
    MaturityInstruction,
    WealthError,
    check_fast_redemption,
    check_figure,
    check_minimum,
    early_redemption,
    income_per_10k_units_max,
    mature,
    maturity_date,
    mmf_distributable,
    mmf_income,
    nav_max,
    nav_redemption,
    nav_subscription,
    order_dates,
    seven_day_yield_percent,
)
from finfaas.services.business_date.errors import BusinessDateChanged, BusinessDateFollowsClock
from finfaas.services.business_date.model import BusinessDateMode
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService
from finfaas.services.wealth.errors import (
    BatchDateMismatch,
    FigureAlreadyPublished,
    FigureNotPublished,
    InsufficientBalance,
    InvalidOrder,
    OrderConflict,
    OrderExistsWithDifferentFields,
    OrderNotFound,
    PositionNotFound,
    ProductClosed,
    ProductExists,
    ProductNotFound,
    WalletAccountNotFound,
)
from finfaas.services.wealth.model import (
    DailyIncome,
    FigureCorrection,
    IncomeChunk,
    NavFigure,
    OrderKind,
    OrderStatus,
    Position,
    Product,
    ProductKind,
    ProductStatus,
    SubscribeCommand,
    SubscriptionOrder,
    chunk_transfer_id,
    fee_account_id,
    figure_corrections_max,
    fund_shard_account_id,
    hold_id,
    holders_account_id,
    order_transfer_id,
    position_account_id,
    recent_incomes_max,
    remainder_transfer_id,
    rolled_order_id,
    rounding_account_id,
    sweep_transfer_id,
)
from finfaas.services.wealth.ports import (
    AlreadyRecorded,
    BusinessDates,
    RowMoved,
    RowWrite,
    WealthLedger,
    WealthRepository,
)

# A page's chunks are posted this many at once, each moving income from its own shard of the fund's
# account to its own shard of the holders' account (the chunk's index in the page modulo the shards): the
# emulator and DynamoDB serialize transactions on one item, and a posting waits on the store about half
# its time. Bounded: each thread holds one connection.
chunk_posting_threads_max = 4
fund_shards = chunk_posting_threads_max
# A chunk is one ledger transaction: one transfer of its holders' incomes (fund shard → holders' shard:
# the transfer, two entries, two accounts, the outbox event), the chunk's record and each earning holder's
# position row, the holder's sub-ledger of the income: 6 + 1 + 93 = DynamoDB's 100 items.
chunk_ledger_items = 6
chunk_holders_max = transaction_items_max - chunk_ledger_items - 1
# The batch reads this many positions per Task (one Query: the rows mirror their ledger units): one chunk
# per posting thread, so a page's fixed reads (the catalogue, the day's figure, the Query, the shards)
# are spread over 372 holders.
page_positions_max = chunk_posting_threads_max * chunk_holders_max
# A chunk whose holders' rows moved under it (a redemption swept a row's accrued units) is built again
# from fresh rows at most this many times; then the Task fails and its retry reads the page again.
chunk_attempts_max = 3
# A correction racing the batch's mark on the day's income figure: the mark reads the figure again.
figure_mark_attempts_max = 3
# A redemption's sweep racing the batch's chunk or another sweep of the same row: read it again.
sweep_attempts_max = 3
confirm_orders_per_page_max = 25
orders_listed_max = 100
income_statement_days_max = recent_incomes_max
catalogue_products_max = 1_000  # the catalogue is one partition, read whole by the batch
cursor_chars_max = 512
# Fast redemptions of one position racing for the day's cap: each loser judges the cap again.
fast_redemption_attempts_max = 3
# Two runs of the batch confirming orders of one NAV position at once: the loser reads it again.
nav_confirm_attempts_max = 3
# An MMF order's confirmation racing a sweep or a rival run on its position's row: read it again.
mmf_confirm_attempts_max = 3
# A NAV correction re-prices at most this many orders per call (one ledger transaction each, so an ops
# request stays short); the same correction again resumes with the rest.
corrected_orders_per_call_max = 100


_log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RedeemCommand:
    """A redemption of amount_minor units (NAV 1.00: minor units of money) to the wallet account."""

    order_id: str
    product_id: str
    account_id: str
    amount_minor: int
    fast: bool
    term_order_id: str | None = None  # a fixed term's early redemption: the term it redeems


@dataclass(frozen=True, slots=True)
class PositionSummary:
    """What a customer sees of a position."""

    position: Position
    product: Product
    units_minor: int
    available_units_minor: int
    yesterday_income_minor: int
    pending_orders: tuple[SubscriptionOrder, ...]


@dataclass(frozen=True, slots=True)
class PageResult:
    """One Task of the batch: what it did and where the next resumes (None: done)."""

    processed: int
    posted: int
    next_cursor: str | None
    # NAV orders left pending because their trade date's NAV is not published: listed for the next day.
    deferred: int = 0


@dataclass(frozen=True, slots=True)
class NavCorrection:
    """A NAV corrected: the figure, the orders re-priced by this call, and whether more remain."""

    figure: NavFigure
    repriced: int
    more: bool


@dataclass(frozen=True, slots=True)
class Settlement:
    product_id: str
    day: date
    distributable_minor: int
    posted_minor: int
    remainder_minor: int
    holders: int
    seven_day_yield_percent: Decimal | None


class WealthService:
    """The catalogue, orders, positions and the daily batch on the business date and calendars."""

    def __init__(self, repository: WealthRepository, ledger: WealthLedger, business_dates: BusinessDates,
                 calendars: Mapping[str, MarketCalendar], clock: Callable[[], datetime] = _utc_now,
                 page_positions: int = page_positions_max, chunk_holders: int = chunk_holders_max) -> None:
        assert 0 < page_positions <= page_positions_max and 0 < chunk_holders <= chunk_holders_max
        self._page_positions = page_positions
        self._chunk_holders = chunk_holders
        self._repo = repository
        self._ledger = ledger
        self._business_dates = business_dates
        self._calendars = dict(calendars)
        self._clock = clock

    # --- operators: the catalogue and the published figures ------------------------------------

    def create_product(self, product: Product) -> Product:
        """Open the fund's accounts, then record the product; the same product again answers it."""
        if product.market not in self._calendars:
            raise WealthError(f"market: no calendar for {product.market!r}; known: {sorted(self._calendars)}",
                              field="market")
        self._ledger.open_account(product.fund_account_id, product.product_id, product.currency,
                                  limited=False)
        self._ledger.open_account(rounding_account_id(product.product_id), product.product_id,
                                  product.currency, limited=False)
        if product.kind is ProductKind.NAV_FUND:
            self._ledger.open_account(fee_account_id(product.product_id), product.product_id,
                                      product.currency, limited=False)
        if product.kind is ProductKind.MMF:
            self._ledger.open_account(holders_account_id(product.product_id), product.product_id,
                                      product.currency, limited=False)
        stored = self._repo.create_product(product)
        if stored != product:
            raise ProductExists("the product id is taken by another product",
                                errors=(("product_id", "taken by another product"),))
        return stored

    def probe(self) -> None:
        """One read of the wealth table (readiness)."""
        self._repo.product("readiness-probe")

    def product(self, product_id: str) -> Product:
        found = self._repo.product(product_id)
        if found is None:
            raise ProductNotFound("no such product", errors=(("product_id", "not found"),))
        return found

    def close_product(self, product_id: str) -> Product:
        """No new subscriptions; holdings run on. Closing a closed product changes nothing."""
        product = self.product(product_id)
        if product.status is ProductStatus.CLOSED:
            return product
        closed = replace(product, status=ProductStatus.CLOSED)
        if not self._repo.save_product(closed, product.status.value):
            return self.product(product_id)
        return closed

    def publish_income(self, product_id: str, day: date, income_per_10k_units: Decimal) -> DailyIncome:
        """An MMF day's income per 10,000 units (4 decimals), once: a day already published is refused
        (a correction is an operator's action of its own, correct_income)."""
        product = self._mmf(product_id)
        figure = check_figure(income_per_10k_units, field="income_per_10k_units",
                              maximum=income_per_10k_units_max)
        if self._repo.daily_income(product_id, day) is not None:
            raise FigureAlreadyPublished(f"{day.isoformat()}: already published (a correction: ops action)",
                                         errors=(("date", "already published"),))
        wanted = DailyIncome(product.product_id, day, figure, self._clock())
        if not self._repo.publish_income(wanted, None):
            raise FigureAlreadyPublished(f"{day.isoformat()}: published meanwhile",
                                         errors=(("date", "already published"),))
        return wanted

    def correct_income(self, product_id: str, day: date, income_per_10k_units: Decimal, reason: str,
                       actor: str) -> DailyIncome:
        """Replace a published day's income before the batch settles it (nothing was posted on it), with
        the reason kept on the figure. A settled day is refused: its income was posted to every holder
        and compounded into the units every later day earned on (docs/design.md, "Corrections")."""
        self._mmf(product_id)
        figure = check_figure(income_per_10k_units, field="income_per_10k_units",
                              maximum=income_per_10k_units_max)
        existing = self._repo.daily_income(product_id, day)
        if existing is None:
            raise FigureNotPublished(f"{day.isoformat()}: nothing published to correct",
                                     errors=(("date", "not published"),))
        if existing.settled:
            raise FigureAlreadyPublished(f"{day.isoformat()}: settled by the batch, its income posted",
                                         errors=(("date", "already settled by the batch"),))
        if existing.posting_started:  # half posted at the old figure: conservation needs one
            raise FigureAlreadyPublished(f"{day.isoformat()}: the batch is posting this day's income",
                                         errors=(("date", "being posted by the batch"),))
        if existing.income_per_10k_units == figure:
            return existing  # the same correction again (a retry): nothing to change
        corrections = _corrections(existing.corrections, existing.income_per_10k_units, reason, actor,
                                   self._clock())
        wanted = replace(existing, income_per_10k_units=figure, version=existing.version + 1,
                         corrections=corrections)
        if not self._repo.publish_income(wanted, existing.version):
            raise FigureAlreadyPublished(f"{day.isoformat()}: changed meanwhile; read it and retry",
                                         errors=(("date", "changed meanwhile"),))
        return wanted

    def publish_nav(self, product_id: str, day: date, nav: Decimal) -> NavFigure:
        """A NAV fund's NAV of a trading day (4 decimals), once: a day already published is refused (a
        correction is an operator's action of its own, correct_nav). A late NAV is taken: the orders
        waiting for it are confirmed by the next batch."""
        product = self._nav_fund(product_id)
        figure = check_figure(nav, field="nav", maximum=nav_max, positive=True)
        if not self._calendars[product.market].is_trading_day(day):
            raise WealthError(f"date: {day.isoformat()} is not a trading day of {product.market}",
                              field="date")
        if self._repo.nav(product_id, day) is not None:
            raise FigureAlreadyPublished(f"{day.isoformat()}: already published (a correction: ops action)",
                                         errors=(("date", "already published"),))
        wanted = NavFigure(product_id, day, figure, self._clock())
        if not self._repo.publish_nav(wanted, None):
            raise FigureAlreadyPublished(f"{day.isoformat()}: published meanwhile",
                                         errors=(("date", "already published"),))
        return wanted

    def correct_nav(self, product_id: str, day: date, nav: Decimal, reason: str, actor: str) -> NavCorrection:
        """Replace a published NAV (the reason kept on the figure) and re-price the orders confirmed at
        it: each order's confirmation reversed and confirmed again at the corrected NAV, in one ledger
        transaction with the order's next version. At most corrected_orders_per_call_max orders a call;
        the same correction again resumes (orders already at the corrected NAV are skipped)."""
        product = self._nav_fund(product_id)
        figure = check_figure(nav, field="nav", maximum=nav_max, positive=True)
        existing = self._repo.nav(product_id, day)
        if existing is None:
            raise FigureNotPublished(f"{day.isoformat()}: no NAV published to correct",
                                     errors=(("date", "not published"),))
        if existing.nav != figure:
            corrections = _corrections(existing.corrections, existing.nav, reason, actor, self._clock())
            wanted = replace(existing, nav=figure, version=existing.version + 1, corrections=corrections)
            if not self._repo.publish_nav(wanted, existing.version):
                raise FigureAlreadyPublished(f"{day.isoformat()}: changed meanwhile; read it and retry",
                                             errors=(("date", "changed meanwhile"),))
            existing = wanted
        elif not existing.corrections:
            raise FigureAlreadyPublished(f"{day.isoformat()}: the NAV is {figure} already",
                                         errors=(("nav", "the published NAV already"),))
        repriced, cursor = 0, None
        while True:
            listed, cursor = self._repo.priced_orders(product_id, day, confirm_orders_per_page_max, cursor)
            for customer_id, order_id in listed:
                order = self._repo.order(customer_id, order_id)
                if order is None or order.nav is None or order.nav == figure:
                    continue  # re-priced by an earlier call
                if repriced == corrected_orders_per_call_max:
                    return NavCorrection(existing, repriced, more=True)
                self._reprice(product, order, existing)
                repriced += 1
            if cursor is None:
                return NavCorrection(existing, repriced, more=False)

    def _reprice(self, product: Product, order: SubscriptionOrder, figure: NavFigure) -> None:
        """One order priced again at the corrected NAV: its confirmation's money reversed and moved again
        (net: the difference), the order's next version, and for a subscription the position's units."""
        for _ in range(nav_confirm_attempts_max):
            n = order.corrections + 1
            reversal = order_transfer_id(order.customer_id, order.order_id, f"r{n}")
            again = order_transfer_id(order.customer_id, order.order_id, f"c{n}")
            try:
                if order.kind is OrderKind.REDEEM:
                    self._reprice_redemption(product, order, figure, reversal, again)
                else:
                    self._reprice_subscription(product, order, figure, reversal, again)
                return
            except (AlreadyRecorded, RowMoved):
                pass  # a rival correction, or the position moved: read again
            order = self._repo.order(order.customer_id, order.order_id) or order
            if order.nav == figure.nav:
                return
        raise OrderConflict(f"order {order.order_id} changed while it was re-priced; correct again",
                            errors=(("nav", "retry"),))

    def _reprice_subscription(self, product: Product, order: SubscriptionOrder, figure: NavFigure,
                              reversal: str, again: str) -> None:
        assert order.units_minor is not None and order.fee_minor is not None
        priced = nav_subscription(order.amount_minor, product.subscription_fee_rate, figure.nav)
        assert priced.fee_minor == order.fee_minor, "a subscription's fee does not depend on the NAV"
        delta = priced.units_minor - order.units_minor
        position = self._repo.position(product.product_id, order.customer_id)
        assert position is not None, "a confirmed subscription has its position"
        lots = list(position.lots)
        # Lots of one confirmation date are alike for the fee (it depends on the date only): the last one
        # of the order's date takes the difference.
        at = next((i for i in reversed(range(len(lots)))
                   if lots[i].confirmed_on == order.confirmation_date), None)
        free = position.units_minor - position.units_held_minor
        if at is None or lots[at].units_minor + delta < 0 or free + delta < 0:
            raise OrderConflict(f"order {order.order_id}: its units are redeemed or held already; the "
                                "correction needs the fund manager's decision",
                                errors=(("nav", "units redeemed"),))
        if lots[at].units_minor + delta == 0:
            del lots[at]
        else:
            lots[at] = Lot(lots[at].units_minor + delta, lots[at].confirmed_on)
        corrected = replace(order, nav=figure.nav, units_minor=priced.units_minor,
                            corrections=order.corrections + 1,
                            version=order.version + 1)
        holding = replace(position, units_minor=position.units_minor + delta, lots=tuple(lots),
                          version=position.version + 1)
        # The confirmation (wallet → fund) reversed and made again: the cash does not change with the NAV,
        # so the wallet's net is zero and the ledger records the correction beside the order's money.
        legs = [(reversal, product.fund_account_id, order.account_id, order.amount_minor),
                (again, order.account_id, product.fund_account_id, order.amount_minor)]
        self._ledger.post_linked(legs, product.currency, self._repo.confirm_write(corrected, holding))

    def _reprice_redemption(self, product: Product, order: SubscriptionOrder, figure: NavFigure,
                            reversal: str, again: str) -> None:
        assert order.nav is not None and order.units_minor is not None
        if not order.lots_redeemed:
            raise OrderConflict(f"order {order.order_id}: confirmed without its lots recorded; the "
                                "correction needs the fund manager's decision",
                                errors=(("nav", "lots unknown"),))
        tiers = product.redemption_fee_tiers
        before = nav_redemption(order.lots_redeemed, order.units_minor, order.nav, tiers, order.trade_date)
        after = nav_redemption(order.lots_redeemed, order.units_minor, figure.nav, tiers, order.trade_date)
        corrected = replace(order, nav=figure.nav, fee_minor=after.fee_minor,
                            corrections=order.corrections + 1, version=order.version + 1)
        # The net paid (fund → wallet) reversed and paid again at the corrected NAV: the wallet's net is the
        # difference, judged by the ledger on the wallet's balance (a wallet short of it refuses).
        legs = [(reversal, order.account_id, product.fund_account_id, before.net_minor),
                (again, product.fund_account_id, order.account_id, after.net_minor)]
        self._refused_reprice(order, lambda: self._ledger.post_linked(legs, product.currency,
                                                                      self._repo.order_write(corrected)))

    @staticmethod
    def _refused_reprice(order: SubscriptionOrder, operation: Callable[[], None]) -> None:
        try:
            operation()
        except (InsufficientBalance, InsufficientFunds) as error:
            raise OrderConflict(f"order {order.order_id}: the wallet holds less than the difference to take "
                                "back; correct again once it does",
                                errors=(("nav", "wallet short"),)) from error

    def _mmf(self, product_id: str) -> Product:
        product = self.product(product_id)
        if product.kind is not ProductKind.MMF:
            raise InvalidOrder("income is published for money-market funds only",
                               errors=(("product_id", "not a money-market fund"),))
        return product

    def _nav_fund(self, product_id: str) -> Product:
        product = self.product(product_id)
        if product.kind is not ProductKind.NAV_FUND:
            raise InvalidOrder("a NAV is published for NAV funds only",
                               errors=(("product_id", "not a NAV fund"),))
        return product

    def daily_incomes(self, product_id: str, first: date, last: date) -> list[DailyIncome]:
        self.product(product_id)
        return self._repo.daily_incomes(product_id, first, last)

    # --- customers: orders -----------------------------------------------------------------------

    def subscribe(self, customer_id: str, command: SubscribeCommand) -> SubscriptionOrder:
        """Hold the amount on the wallet toward the position and record a pending order confirmed on T+1,
        in one ledger transaction; a retry returns the same order."""
        product = self._open_product(command.product_id)
        self._check_instruction(product, command)
        check_minimum(command.amount_minor, product.minimum_minor)
        order = self._priced(customer_id, command.order_id, product, command.account_id,
                             command.amount_minor, OrderKind.SUBSCRIBE, command.maturity_instruction)
        existing = self._repo.order(customer_id, command.order_id)
        if existing is not None:
            return self._same(existing, order)
        # Refused before anything is written (the hold's own conditions still decide under races).
        wallet = self._ledger.account(command.account_id)
        if wallet is None or wallet[0] != customer_id:
            raise WalletAccountNotFound("no such wallet account", errors=(("account_id", "not found"),))
        if wallet[2] < command.amount_minor:
            raise InsufficientBalance("the wallet's available balance is below the amount",
                                      errors=(("amount", "above the available balance"),))
        # The position's ledger account now (the hold's credit side); its row at confirmation, so that
        # a product's positions change only in the batch's confirm step, never while it posts income.
        account = position_account_id(product.product_id, customer_id)
        self._ledger.open_account(account, customer_id, product.currency, limited=True)
        if product.kind is ProductKind.NAV_FUND:
            account = product.fund_account_id  # the cash buys units from the fund: NAV units are not money
        with _recorded_ok():
            self._ledger.hold(order.hold_id, command.account_id, account, command.amount_minor,
                              product.currency, customer_id, self._repo.order_write(order))
        return self._stored(customer_id, order)

    def redeem(self, customer_id: str, command: RedeemCommand) -> SubscriptionOrder:
        """Standard: hold the units, paid to the wallet on T+1 (the units earn until then). Fast: paid at
        once, within the product's daily cap per customer and business date."""
        product = self.product(command.product_id)
        if product.fixed_term is not None:
            return self._redeem_early(customer_id, product, command)
        if product.kind is ProductKind.NAV_FUND and command.fast:
            raise InvalidOrder("mode: a NAV fund redeems at the next NAV (standard) only",
                               errors=(("mode", "standard only"),))
        kind = OrderKind.FAST_REDEEM if command.fast else OrderKind.REDEEM
        order = self._priced(customer_id, command.order_id, product, command.account_id,
                             command.amount_minor, kind, None)
        existing = self._repo.order(customer_id, command.order_id)
        if existing is not None:
            return self._same(existing, order)
        if product.kind is ProductKind.NAV_FUND:
            return self._redeem_nav(customer_id, order)
        position = self._repo.position(product.product_id, customer_id)
        if position is None:
            raise PositionNotFound("no position in this product", errors=(("product_id", "no position"),))
        wallet = self._ledger.account(command.account_id)
        if wallet is None or wallet[0] != customer_id:  # redemptions pay only the customer's own wallet
            raise WalletAccountNotFound("no such wallet account", errors=(("account_id", "not found"),))
        _, available = self._ledger.balances([position.account_id]).get(position.account_id, (0, 0))
        if command.amount_minor > available + position.accrued_units_minor:
            raise InsufficientUnits("amount: more than the position's available units", field="amount")
        today = self._business_dates.current(product.market).business_date
        if command.fast:  # refused before the sweep writes anything (the loop below judges it again)
            used = self._repo.fast_usage(product.product_id, customer_id, today)
            check_fast_redemption(command.amount_minor, used, product.fast_redemption_cap_minor)
        position = self._swept(product, position)
        if not command.fast:
            with _recorded_ok():
                self._ledger.hold(order.hold_id, position.account_id, command.account_id,
                                  command.amount_minor, product.currency, customer_id,
                                  self._repo.order_write(order))
            return self._stored(customer_id, order)
        done = replace(order, status=OrderStatus.CONFIRMED, confirmation_date=today,
                       hold_id=order_transfer_id(customer_id, command.order_id, "f"))
        for attempt in range(fast_redemption_attempts_max):
            if attempt:  # another fast redemption of the day, or a chunk, committed first: judge again
                used = self._repo.fast_usage(product.product_id, customer_id, today)
                check_fast_redemption(command.amount_minor, used, product.fast_redemption_cap_minor)
                position = self._repo.position(product.product_id, customer_id) or position
            write = self._repo.fast_usage_write(product.product_id, customer_id, today, used,
                                                used + command.amount_minor, done,
                                                position.moved(-command.amount_minor))
            try:
                self._ledger.transfer(done.hold_id, position.account_id, command.account_id,
                                      command.amount_minor, product.currency, customer_id, write)
            except AlreadyRecorded:
                pass
            except RowMoved:
                continue
            return self._stored(customer_id, done)
        raise OrderConflict("fast redemptions of this position ran at once; retry",
                            errors=(("order_id", "retry"),))

    def _swept(self, product: Product, position: Position) -> Position:
        """The position with its accrued income units moved onto its ledger account (holders' account →
        position, with the row's next version), so that a redemption's hold or transfer sees every unit.
        A chunk or another sweep that changed the row first: read it again."""
        for _ in range(sweep_attempts_max):
            if position.accrued_units_minor == 0:
                return position
            swept = position.swept()
            try:
                self._ledger.transfer(sweep_transfer_id(position.account_id, position.version),
                                      holders_account_id(product.product_id), position.account_id,
                                      position.accrued_units_minor, product.currency, None,
                                      self._repo.position_write(swept))
                return swept
            except (AlreadyRecorded, RowMoved):
                pass
            position = self._repo.position(position.product_id, position.customer_id) or position
        raise OrderConflict("the position changed while this redemption ran; retry",
                            errors=(("order_id", "retry"),))

    def _redeem_early(self, customer_id: str, product: Product, command: RedeemCommand) -> SubscriptionOrder:
        """Redeem a fixed term's principal before maturity, paid at once with the demand rate's interest for
        the days held, in one ledger transaction with the term's next version (at most one partial)."""
        terms = product.fixed_term
        assert terms is not None
        if command.fast or command.term_order_id is None:
            raise InvalidOrder("term_order_id: an early redemption names the term it redeems",
                               errors=(("term_order_id", "required for a fixed-term product"),))
        asked = self._priced(customer_id, command.order_id, product, command.account_id, command.amount_minor,
                             OrderKind.REDEEM, None)
        existing = self._repo.order(customer_id, command.order_id)
        if existing is not None:
            return self._same(existing, asked)
        term = self._repo.order(customer_id, command.term_order_id)
        if term is None or term.product_id != product.product_id or term.kind is not OrderKind.SUBSCRIBE:
            raise OrderNotFound("no such term", errors=(("term_order_id", "not found"),))
        if term.status is not OrderStatus.CONFIRMED:
            raise InvalidOrder("term_order_id: the term is not running",
                               errors=(("term_order_id", "not running"),))
        wallet = self._ledger.account(command.account_id)
        if wallet is None or wallet[0] != customer_id:  # redemptions pay only the customer's own wallet
            raise WalletAccountNotFound("no such wallet account", errors=(("account_id", "not found"),))
        today = self._business_dates.current(product.market).business_date
        result = early_redemption(terms, term.amount_minor - term.early_redeemed_minor, command.amount_minor,
                                  term.confirmation_date, today, term.partial_redemptions)
        done = replace(asked, status=OrderStatus.CONFIRMED, confirmation_date=today,
                       hold_id=order_transfer_id(customer_id, command.order_id, "e"))
        updated = replace(term, early_redeemed_minor=term.early_redeemed_minor + command.amount_minor,
                          partial_redemptions=result.partial_redemptions, version=term.version + 1)
        account = position_account_id(product.product_id, customer_id)
        legs = [(done.hold_id, account, command.account_id, command.amount_minor)]
        if result.interest_minor:
            legs.append((order_transfer_id(customer_id, command.order_id, "ei"), product.fund_account_id,
                         command.account_id, result.interest_minor))
        try:
            self._ledger.post_linked(legs, product.currency, self._repo.term_write(updated, [], [done]))
        except AlreadyRecorded:  # the term moved: this request's lost answer, or a rival redemption
            stored = self._repo.order(customer_id, command.order_id)
            if stored is None:
                raise OrderConflict("the term changed while this redemption ran; retry",
                                    errors=(("term_order_id", "retry"),)) from None
            return self._same(stored, asked)
        return self._stored(customer_id, done)

    def _redeem_nav(self, customer_id: str, order: SubscriptionOrder) -> SubscriptionOrder:
        """Hold the units on the position and record the order (one transaction, no money yet): the
        batch of T+1 prices it at T's NAV, takes the holding period's fee and pays the net."""
        if self._repo.position(order.product_id, customer_id) is None:
            raise PositionNotFound("no position in this product", errors=(("product_id", "no position"),))
        wallet = self._ledger.account(order.account_id)
        if wallet is None or wallet[0] != customer_id:  # redemptions pay only the customer's own wallet
            raise WalletAccountNotFound("no such wallet account", errors=(("account_id", "not found"),))
        if order.amount_minor <= 0:
            raise WealthError("amount: must be greater than zero", field="amount")
        for _ in range(nav_confirm_attempts_max):
            position = self._repo.position(order.product_id, customer_id)
            if position is None:
                raise PositionNotFound("no position in this product", errors=(("product_id", "no position"),))
            if order.amount_minor > position.units_minor - position.units_held_minor:
                raise InsufficientUnits("amount: more than the position's available units", field="amount")
            held = replace(position, units_held_minor=position.units_held_minor + order.amount_minor,
                           version=position.version + 1)
            if self._repo.place_order(order, held):
                return self._stored(customer_id, order)
            existing = self._repo.order(customer_id, order.order_id)
            if existing is not None:
                return self._same(existing, order)
        raise OrderConflict("orders of this position ran at once; retry", errors=(("order_id", "retry"),))

    def order(self, customer_id: str, order_id: str) -> SubscriptionOrder:
        """The customer's own order; another customer's is not found, as a missing one."""
        found = self._repo.order(customer_id, order_id)
        if found is None:
            raise OrderNotFound("no such order", errors=(("order_id", "not found"),))
        return found

    def orders(self, customer_id: str) -> list[SubscriptionOrder]:
        return self._repo.orders_of(customer_id, orders_listed_max)

    # --- customers: positions --------------------------------------------------------------------

    def positions(self, customer_id: str) -> list[PositionSummary]:
        return [self._summary(p) for p in self._repo.positions_of(customer_id)]

    def position(self, customer_id: str, product_id: str) -> PositionSummary:
        return self._summary(self._position_row(customer_id, product_id))

    def income_statement(self, customer_id: str, product_id: str) -> list[tuple[date, int]]:
        """(day, income) of the position's newest income days, newest first (kept on its row: the row is
        all the statement reads)."""
        return list(self._position_row(customer_id, product_id).recent_incomes[:income_statement_days_max])

    def _position_row(self, customer_id: str, product_id: str) -> Position:
        found = self._repo.position(product_id, customer_id)
        if found is None:
            raise PositionNotFound("no such position", errors=(("product_id", "no position"),))
        return found

    def _summary(self, position: Position) -> PositionSummary:
        product = self.product(position.product_id)
        units, available = self._ledger.balances([position.account_id]).get(position.account_id, (0, 0))
        units, available = units + position.accrued_units_minor, available + position.accrued_units_minor
        today = self._business_dates.current(product.market).business_date
        yesterday = today - timedelta(days=1)
        income = position.last_income_minor if position.last_income_date == yesterday else 0
        pending = tuple(o for o in self._repo.orders_of(position.customer_id, orders_listed_max)
                        if o.product_id == position.product_id and o.status is OrderStatus.PENDING)
        return PositionSummary(position, product, units, available, income, pending)

    # --- the daily batch -------------------------------------------------------------------------

    def begin_day(self, market: str, day: date) -> bool:
        """True when day is the market's business date (the batch runs); False when the date already
        moved past it (a rerun of a finished day: nothing to do); refused when day is still ahead."""
        business_date = self._business_dates.current(market)
        current = business_date.business_date
        if business_date.mode is BusinessDateMode.CLOCK:
            # The clock moves the date: a day's batch runs once the day has ended, and reruns post nothing.
            if day >= current:
                raise BatchDateMismatch(f"{day.isoformat()} has not ended ({current.isoformat()} today)",
                                        errors=(("business_date", "not ended"),))
            return True
        if current > day:
            return False
        if current < day:
            raise BatchDateMismatch(f"the business date is {current.isoformat()}, not {day.isoformat()}",
                                    errors=(("business_date", "not the market's business date"),))
        return True

    def confirm_page(self, market: str, day: date, cursor: str | None) -> PageResult:
        """Post the holds of the orders confirmed on day (subscriptions into positions, standard
        redemptions to wallets), a page at a time; an order already confirmed is skipped."""
        products = self._products(market)
        index, inner = _decode_cursor(cursor, len(products))
        if index >= len(products):
            return PageResult(0, 0, None)
        product = products[index]
        due, after = self._repo.due_orders(product.product_id, day, confirm_orders_per_page_max, inner)
        posted = deferred = 0
        for customer_id, order_id in due:
            order = self._repo.order(customer_id, order_id)
            if order is not None and product.kind is ProductKind.NAV_FUND:
                try:
                    posted += self._confirm_nav(product, order)
                except FigureNotPublished:
                    # Its NAV is late: the order waits, listed for the next day's batch, and the rest of
                    # the day (other orders, income, maturities, the date's advance) runs on.
                    self._await_nav(order, day)
                    deferred += 1
                continue
            if order is None or order.status is not OrderStatus.PENDING:
                continue
            if product.kind is ProductKind.MMF:
                posted += self._confirm_mmf(product, order)
                continue
            if order.kind is OrderKind.SUBSCRIBE:
                self._position_for(product, customer_id, order.confirmation_date)
            confirmed = replace(order, status=OrderStatus.CONFIRMED, version=order.version + 1)
            write = self._repo.order_write(confirmed)
            if product.fixed_term is not None:  # the term runs from the confirmation (its value date)
                maturity = maturity_date(product.fixed_term, order.confirmation_date)
                write = self._repo.term_write(confirmed, [(confirmed, maturity)])
            try:
                self._ledger.post(order.hold_id, order_transfer_id(customer_id, order_id, "p"), write)
            except AlreadyRecorded:
                continue  # a rival run confirmed it first
            posted += 1
        return PageResult(len(due), posted, _next_cursor(index, after, len(products)), deferred)

    def _confirm_mmf(self, product: Product, order: SubscriptionOrder) -> int:
        """Post an MMF order's hold (units into the position, or out to the wallet) with the order's next
        version and the position's mirrored units (on its version) in one transaction. A sweep or a chunk
        that moved the row first: read it again. 1 when it posted."""
        sign = 1 if order.kind is OrderKind.SUBSCRIBE else -1
        for _ in range(mmf_confirm_attempts_max):
            if order.status is not OrderStatus.PENDING:
                return 0  # a rival run confirmed it first
            position = self._position_for(product, order.customer_id, order.confirmation_date)
            confirmed = replace(order, status=OrderStatus.CONFIRMED, version=order.version + 1)
            write = self._repo.confirm_write(confirmed, position.moved(sign * order.amount_minor))
            try:
                self._ledger.post(order.hold_id, order_transfer_id(order.customer_id, order.order_id, "p"),
                                  write)
                return 1
            except (AlreadyRecorded, RowMoved):
                pass
            order = self._repo.order(order.customer_id, order.order_id) or order
        raise OrderConflict("the position kept changing while its order was confirmed; run the step again",
                            errors=(("order_id", "retry"),))

    def _await_nav(self, order: SubscriptionOrder, day: date) -> None:
        """List the order for the next day first (a crash after it loses nothing), then flag it, once."""
        self._repo.relist_due(order, day + timedelta(days=1))
        if order.awaiting_nav_since is None:
            self._repo.save_order(replace(order, awaiting_nav_since=day, version=order.version + 1))
        _log.warning("wealth order %s of %s waits for the NAV of %s", order.order_id, order.product_id,
                     order.trade_date.isoformat())

    def _confirm_nav(self, product: Product, order: SubscriptionOrder) -> int:
        if order.kind is OrderKind.REDEEM:
            return self._confirm_nav_redemption(product, order)
        return self._confirm_nav_subscription(product, order)

    def _nav_of(self, product: Product, order: SubscriptionOrder) -> NavFigure:
        figure = self._repo.nav(product.product_id, order.trade_date)
        if figure is None:  # the batch stops here until ops publish it, then runs again
            raise FigureNotPublished(f"{product.product_id}: no NAV published for "
                                     f"{order.trade_date.isoformat()}",
                                     errors=(("date", "NAV not published"),))
        return figure

    def _confirm_nav_redemption(self, product: Product, order: SubscriptionOrder) -> int:
        """Price a NAV redemption at T's NAV (lots first in, first out, the fee by holding period stays in
        the fund) and pay the net from the fund to the wallet with the position's units taken, in one
        transaction. 1 when it posted."""
        posted = 0
        for _ in range(nav_confirm_attempts_max):
            if order.status is not OrderStatus.PENDING:
                return posted
            figure = self._nav_of(product, order)
            position = self._repo.position(product.product_id, order.customer_id)
            assert position is not None, "a redemption holds units of its position"
            priced = nav_redemption(position.lots, order.amount_minor, figure.nav,
                                    product.redemption_fee_tiers, order.trade_date)
            confirmed = replace(order, status=OrderStatus.CONFIRMED, version=order.version + 1,
                                nav=figure.nav, units_minor=order.amount_minor, fee_minor=priced.fee_minor,
                                fee_booked=True, lots_redeemed=priced.taken, awaiting_nav_since=None)
            redeemed = replace(position, units_minor=position.units_minor - order.amount_minor,
                               units_held_minor=position.units_held_minor - order.amount_minor,
                               lots=priced.remaining, version=position.version + 1)
            try:
                self._ledger.transfer(order_transfer_id(order.customer_id, order.order_id, "p"),
                                      product.fund_account_id, order.account_id, priced.net_minor,
                                      product.currency, None, self._repo.confirm_write(confirmed, redeemed))
                posted = 1
            except (AlreadyRecorded, RowMoved):
                pass  # a rival run confirmed it, or moved the position: read again
            order = self._repo.order(order.customer_id, order.order_id) or order
        if order.status is OrderStatus.PENDING:
            raise OrderConflict("runs of the batch confirmed this position at once; run the step again",
                                errors=(("order_id", "retry"),))
        return posted

    def _confirm_nav_subscription(self, product: Product, order: SubscriptionOrder) -> int:
        """Price a NAV subscription at its trade date's NAV and post its hold into the fund with the units
        added to the position (one transaction), then book its fee to the fee account (a second, guarded
        by the order's next version, so a rerun finishes a step a crash interrupted). 1 when it posted."""
        posted = 0
        for _ in range(nav_confirm_attempts_max):
            if order.status is not OrderStatus.PENDING:
                break
            figure = self._nav_of(product, order)
            priced = nav_subscription(order.amount_minor, product.subscription_fee_rate, figure.nav)
            position = self._position_for(product, order.customer_id, order.confirmation_date)
            confirmed = replace(order, status=OrderStatus.CONFIRMED, version=order.version + 1,
                                nav=figure.nav, units_minor=priced.units_minor, fee_minor=priced.fee_minor,
                                fee_booked=priced.fee_minor == 0, awaiting_nav_since=None)
            holding = replace(position, units_minor=position.units_minor + priced.units_minor,
                              lots=(*position.lots, Lot(priced.units_minor, order.confirmation_date)),
                              version=position.version + 1)
            try:
                self._ledger.post(order.hold_id, order_transfer_id(order.customer_id, order.order_id, "p"),
                                  self._repo.confirm_write(confirmed, holding))
                posted = 1
            except (AlreadyRecorded, RowMoved):
                pass  # a rival run confirmed it, or moved the position: read again
            order = self._repo.order(order.customer_id, order.order_id) or order
        if order.status is OrderStatus.PENDING:
            raise OrderConflict("runs of the batch confirmed this position at once; run the step again",
                                errors=(("order_id", "retry"),))
        if order.status is OrderStatus.CONFIRMED and not order.fee_booked and order.fee_minor:
            booked = replace(order, fee_booked=True, version=order.version + 1)
            with _recorded_ok():
                self._ledger.transfer(order_transfer_id(order.customer_id, order.order_id, "fee"),
                                      product.fund_account_id, fee_account_id(product.product_id),
                                      order.fee_minor, product.currency, None, self._repo.order_write(booked))
        return posted

    def maturity_page(self, market: str, day: date, cursor: str | None) -> PageResult:
        """Mature a page of the fixed terms ending on day: interest for the term from the fund, paid to
        the wallet or rolled with the principal into a new term, per the order's instruction. Each term
        is one ledger transaction with the order's next version, so a rerun matures nothing twice."""
        products = [p for p in self._products(market) if p.fixed_term is not None]
        index, inner = _decode_cursor(cursor, len(products))
        if index >= len(products):
            return PageResult(0, 0, None)
        product = products[index]
        terms = product.fixed_term
        assert terms is not None
        found, after = self._repo.maturing(product.product_id, day, confirm_orders_per_page_max, inner)
        posted = 0
        for customer_id, order_id in found:
            order = self._repo.order(customer_id, order_id)
            if order is None or order.status is not OrderStatus.CONFIRMED:
                continue
            if order.maturity_instruction is None:
                continue
            principal = order.amount_minor - order.early_redeemed_minor
            if principal == 0:
                continue  # redeemed whole before maturity: nothing left to mature
            result = mature(terms, principal, order.maturity_instruction)
            account = position_account_id(product.product_id, customer_id)
            # Legs independent of each other: the interest goes from the fund straight to where it ends
            # (the wallet, or the position when it rolls), the principal paid out leaves the position.
            rolls_interest = order.maturity_instruction is MaturityInstruction.ROLL_OVER_ALL
            legs = [(order_transfer_id(customer_id, order_id, "mi"), product.fund_account_id,
                     account if rolls_interest else order.account_id, result.interest_minor)]
            if order.maturity_instruction is MaturityInstruction.PAY_OUT:
                legs.append((order_transfer_id(customer_id, order_id, "mp"), account, order.account_id,
                             principal))
            legs = [leg for leg in legs if leg[3] > 0]
            listed = []
            if result.rolled_over_minor:
                rolled = replace(order, order_id=rolled_order_id(order_id, day),
                                 amount_minor=result.rolled_over_minor, early_redeemed_minor=0,
                                 partial_redemptions=0,
                                 placed_at=datetime.combine(day, order.placed_at.timetz()), trade_date=day,
                                 confirmation_date=day, hold_id="", status=OrderStatus.CONFIRMED, version=1)
                listed.append((rolled, maturity_date(terms, day)))
            matured = replace(order, status=OrderStatus.MATURED, version=order.version + 1)
            assert legs, "a term pays interest or principal"
            try:
                self._ledger.post_linked(legs, product.currency, self._repo.term_write(matured, listed))
            except AlreadyRecorded:
                continue  # a rival run matured it first
            posted += 1
        return PageResult(len(found), posted, _next_cursor(index, after, len(products)))

    def income_page(self, market: str, day: date, cursor: str | None) -> PageResult:
        """Post one page of holders' income for day: the units are the positions' ledger balances and
        accrued units; a chunk of holders is one ledger transaction (their incomes as one transfer to the
        holders' account) with their credited rows and the chunk's record, so a rerun or a rival run finds
        the chunk posted and posts nothing twice."""
        products = [p for p in self._products(market) if p.kind is ProductKind.MMF]
        index, inner = _decode_cursor(cursor, len(products))
        if index >= len(products):
            return PageResult(0, 0, None)
        product = products[index]
        page = self._repo.positions_page(product.product_id, self._page_positions, inner)
        figure = self._repo.daily_income(product.product_id, day)
        if figure is None:
            if not page.positions:
                return PageResult(0, 0, _next_cursor(index, None, len(products)))  # no holders: no income
            raise FigureNotPublished(f"{product.product_id}: no income published for {day.isoformat()}",
                                     errors=(("date", "income not published"),))
        figure = self._posting(figure)
        if inner is None:  # the product's first page of the day opens the shards (once, idempotent)
            for shard in range(fund_shards):
                for account in (product.fund_account_id, holders_account_id(product.product_id)):
                    self._ledger.open_account(fund_shard_account_id(account, shard), product.product_id,
                                              product.currency, limited=False)
        size = self._chunk_holders
        chunks = [page.positions[start:start + size] for start in range(0, len(page.positions), size)]

        def post(n: int) -> int:
            if _credited(chunks[n], day):
                return 0  # posted by an earlier run: a rerun reads nothing for it
            return self._post_chunk(product, figure, day, self._mirrored(chunks[n]), n % fund_shards)

        if len(chunks) <= 1:
            posted = sum(post(n) for n in range(len(chunks)))
        else:
            # Each chunk is guarded by its own record: a failed one fails the Task (after the others
            # finish), and the retried page posts only the chunks not recorded yet.
            with ThreadPoolExecutor(min(chunk_posting_threads_max, len(chunks))) as pool:
                posted = sum(pool.map(post, range(len(chunks))))
        return PageResult(len(page.positions), posted, _next_cursor(index, page.next_cursor, len(products)))

    def _posting(self, figure: DailyIncome) -> DailyIncome:
        """The figure marked as being posted, on the version it was read in: a correction that came first
        is read and marked instead, and none can come after (correct_income refuses a marked figure)."""
        for _ in range(figure_mark_attempts_max):
            if figure.posting_started:
                return figure
            marked = replace(figure, posting_started=True, version=figure.version + 1)
            if self._repo.publish_income(marked, figure.version):
                return marked
            figure = self._repo.daily_income(figure.product_id, figure.day) or figure
        raise OrderConflict(f"{figure.day.isoformat()}: the income figure kept changing; run the page again",
                            errors=(("cursor", "retry"),))

    def _mirrored(self, positions: Sequence[Position]) -> list[Position]:
        """The rows with their ledger units: a row written before the mirror existed gets its ledger
        balance (one BatchGetItem for such rows of the chunk), written with its income. The read is
        exact for the row's version: every move of the ledger units writes the row's next version."""
        missing = [p.account_id for p in positions if p.ledger_units_minor is None]
        if not missing:
            return list(positions)
        balances = self._ledger.balances(missing)
        return [p if p.ledger_units_minor is not None
                else replace(p, ledger_units_minor=balances.get(p.account_id, (0, 0))[0]) for p in positions]

    def _post_chunk(self, product: Product, figure: DailyIncome, day: date, held: Sequence[Position],
                    shard: int) -> int:
        """Post a chunk once; its rows changed by a sweep or an order meanwhile: build it again from fresh
        rows (the same holders, so the same record)."""
        for _ in range(chunk_attempts_max):
            try:
                return self._post_chunk_once(product, figure, day, held, shard)
            except RowMoved:
                fresh = [self._repo.position(p.product_id, p.customer_id) for p in held]
                held = self._mirrored([p for p in fresh if p is not None])
        raise OrderConflict("holders' positions kept changing while their chunk posted; run the page again",
                            errors=(("cursor", "retry"),))

    def _post_chunk_once(self, product: Product, figure: DailyIncome, day: date, held: Sequence[Position],
                         shard: int) -> int:
        if _credited(held, day):
            return 0
        rate, rounding = figure.income_per_10k_units, product.rounding
        incomes = [(p, p.mmf_units_minor, mmf_income(p.mmf_units_minor, rate, rounding)) for p in held]
        chunk = IncomeChunk(product.product_id, day, held[0].customer_id, len(held),
                            sum(units for _, units, _ in incomes), sum(i for _, _, i in incomes))
        credited = [p.credited(day, i) for p, _, i in incomes if i > 0]
        if not credited:
            self._repo.record_chunk(chunk)
            return 0
        fund = fund_shard_account_id(product.fund_account_id, shard)
        holders = fund_shard_account_id(holders_account_id(product.product_id), shard)
        leg = (chunk_transfer_id(product.product_id, day, chunk.first_customer_id), fund, holders,
               chunk.income_total_minor)
        try:
            self._ledger.post_linked([leg], product.currency, self._repo.chunk_write(chunk, credited))
        except AlreadyRecorded:
            return 0
        return len(credited)

    def settle(self, market: str, day: date) -> list[Settlement]:
        """For every MMF of the market: the day's distributable income from all units the chunks
        counted, the remainder (distributable − Σ posted) booked to the rounding account, the 7-day
        yield; recorded on the day's figure with the remainder's posting, once."""
        settled = []
        for product in self._products(market):
            if product.kind is ProductKind.MMF:
                settlement = self._settle_product(product, day)
                if settlement is not None:
                    settled.append(settlement)
        return settled

    def _settle_product(self, product: Product, day: date) -> Settlement | None:
        figure = self._repo.daily_income(product.product_id, day)
        if figure is None and not self._repo.positions_page(product.product_id, 1, None).positions:
            return None  # a fund without holders has nothing to settle
        if figure is None:
            raise FigureNotPublished(f"{product.product_id}: no income published for {day.isoformat()}",
                                     errors=(("date", "income not published"),))
        if not figure.settled:
            chunks = self._repo.chunks(product.product_id, day)
            units = sum(c.units_total_minor for c in chunks)
            posted = sum(c.income_total_minor for c in chunks)
            distributable = mmf_distributable(units, figure.income_per_10k_units, product.rounding)
            first = day - timedelta(days=YIELD_WINDOW_DAYS - 1)
            week = self._repo.daily_incomes(product.product_id, first, day)
            yield_percent = (seven_day_yield_percent([f.income_per_10k_units for f in week])
                             if len(week) == YIELD_WINDOW_DAYS else None)
            result = replace(figure, version=figure.version + 1, seven_day_yield_percent=yield_percent,
                             units_total_minor=units, distributable_minor=distributable, posted_minor=posted,
                             remainder_minor=distributable - posted, holders=sum(c.holders for c in chunks))
            self._book_remainder(product, result)
            figure = self._repo.daily_income(product.product_id, day) or result
        assert figure.distributable_minor is not None and figure.posted_minor is not None
        assert figure.remainder_minor is not None and figure.holders is not None
        assert figure.posted_minor + figure.remainder_minor == figure.distributable_minor, "not conserved"
        return Settlement(product.product_id, day, figure.distributable_minor, figure.posted_minor,
                          figure.remainder_minor, figure.holders, figure.seven_day_yield_percent)

    def _book_remainder(self, product: Product, result: DailyIncome) -> None:
        remainder = result.remainder_minor or 0
        if remainder == 0:
            self._repo.settle_without_money(result)
            return
        # A negative remainder (half-up rounding paid more than the fund earned on the whole) is paid by
        # the rounding account back to the fund.
        debit, credit = product.fund_account_id, rounding_account_id(product.product_id)
        if remainder < 0:
            debit, credit = credit, debit
        try:
            self._ledger.transfer(remainder_transfer_id(product.product_id, result.day), debit, credit,
                                  abs(remainder), product.currency, None, self._repo.settlement_write(result))
        except AlreadyRecorded:
            return

    def end_day(self, market: str, day: date) -> date:
        """Advance the business date to the day after; a rerun finds it moved and changes nothing. On a
        stage whose business date follows the clock, the clock moves it."""
        target = day + timedelta(days=1)
        current = self._business_dates.current(market).business_date
        if current >= target:
            return current
        try:
            return self._business_dates.advance(market, to=target).business_date
        except BusinessDateChanged:
            return self._business_dates.current(market).business_date
        except BusinessDateFollowsClock:
            return current

    def _products(self, market: str) -> list[Product]:
        return [p for p in self._repo.products(catalogue_products_max) if p.market == market]

    # --- shared ----------------------------------------------------------------------------------

    def _open_product(self, product_id: str) -> Product:
        product = self.product(product_id)
        if product.status is not ProductStatus.OPEN:
            raise ProductClosed("the product takes no new subscriptions", errors=(("product_id", "closed"),))
        return product

    def _position_for(self, product: Product, customer_id: str, opened_on: date) -> Position:
        existing = self._repo.position(product.product_id, customer_id)
        if existing is not None:
            return existing
        account = position_account_id(product.product_id, customer_id)
        # An MMF position's account holds nothing posted before its first confirmation posts into it.
        mirror = 0 if product.kind is ProductKind.MMF else None
        return self._repo.create_position(Position(product.product_id, customer_id, account, opened_on,
                                                   ledger_units_minor=mirror))

    @staticmethod
    def _check_instruction(product: Product, command: SubscribeCommand) -> None:
        fixed_term = product.kind is ProductKind.FIXED_TERM
        if fixed_term != (command.maturity_instruction is not None):
            need = "required for a fixed-term product" if fixed_term else "only for fixed-term products"
            raise InvalidOrder(f"maturity_instruction: {need}", errors=(("maturity_instruction", need),))

    def _priced(self, customer_id: str, order_id: str, product: Product, account_id: str, amount_minor: int,
                kind: OrderKind, instruction: MaturityInstruction | None) -> SubscriptionOrder:
        business_date = self._business_dates.current(product.market).business_date
        local_zone = zone(product.cutoff.time_zone)
        time_of_day = self._clock().astimezone(local_zone).time()
        placed_at = datetime.combine(business_date, time_of_day, tzinfo=local_zone)
        dates = order_dates(self._calendars[product.market], placed_at, product.cutoff)
        return SubscriptionOrder(order_id, customer_id, product.product_id, account_id, amount_minor,
                                 product.currency, instruction, placed_at, dates.trade_date,
                                 dates.confirmation_date, hold_id(customer_id, order_id), kind=kind)

    def _stored(self, customer_id: str, order: SubscriptionOrder) -> SubscriptionOrder:
        stored = self._repo.order(customer_id, order.order_id)
        return self._same(stored, order) if stored is not None else order

    @staticmethod
    def _same(stored: SubscriptionOrder, asked: SubscriptionOrder) -> SubscriptionOrder:
        if stored.request() != asked.request():
            raise OrderExistsWithDifferentFields("the order id is taken by another order",
                                                 errors=(("order_id", "taken by another order"),))
        return stored


@contextmanager
def _recorded_ok() -> Iterator[None]:
    """A new order's row exists already: this request's own earlier attempt (its answer was lost) or a
    rival with the same order id; the caller reads the stored order and compares."""
    try:
        yield
    except AlreadyRecorded:
        pass


def _corrections(history: Sequence[FigureCorrection], previous: Decimal, reason: str, actor: str,
                 at: datetime) -> tuple[FigureCorrection, ...]:
    if len(history) >= figure_corrections_max:
        raise FigureAlreadyPublished(f"corrected {len(history)} times already: the fund manager's matter",
                                     errors=(("date", "corrected too often"),))
    return (*history, FigureCorrection(previous, reason, actor, at))


def _credited(positions: Sequence[Position], day: date) -> bool:
    """A row is credited for the day only with its chunk's record: the chunk is posted."""
    return any(p.last_income_date is not None and p.last_income_date >= day for p in positions)


def _decode_cursor(cursor: str | None, products: int) -> tuple[int, str | None]:
    """(product index, the store's cursor within it) of a batch cursor; the batch issues them itself."""
    if cursor is None:
        return 0, None
    if len(cursor) > cursor_chars_max:
        raise InvalidOrder("cursor: too long", errors=(("cursor", "too long"),))
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        index, inner = int(raw["p"]), raw.get("c")
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidOrder("cursor: not one the batch issued", errors=(("cursor", "malformed"),)) from error
    if not 0 <= index <= products or not (inner is None or isinstance(inner, str)):
        raise InvalidOrder("cursor: not one the batch issued", errors=(("cursor", "malformed"),))
    return index, inner


def _next_cursor(index: int, inner: str | None, products: int) -> str | None:
    if inner is None:
        index += 1
        if index >= products:
            return None
    return base64.urlsafe_b64encode(json.dumps({"p": index, "c": inner}).encode()).decode()


__all__ = ["UNITS_PER_INCOME_FIGURE", "NavCorrection", "PageResult", "PositionSummary", "RedeemCommand",
           "Settlement", "WealthService"]


class InProcessLedger:
    """WealthLedger over the ledger's own use cases in process (the DynamoDB store): each money call's
    RowWrite joins the ledger operation's transaction as its TransactionExtra."""

    def __init__(self, ledger: LedgerService,
                 read_balances: Callable[[Sequence[str]], dict[str, tuple[int, int]]] | None = None) -> None:
        self.ledger = ledger
        self._read_balances = read_balances

    def open_account(self, account_id: str, owner_id: str, currency: str, limited: bool) -> None:
        self.ledger.open_account(owner_id=owner_id, currency=currency, account_id=account_id,
                                 debits_must_not_exceed_credits=limited)

    def account(self, account_id: str) -> tuple[str, int, int] | None:
        try:
            found = self.ledger.get_account(account_id)
        except AccountNotFound:
            return None
        return found.owner_id, found.balance_minor, found.available_minor

    def balances(self, account_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        if not account_ids:
            return {}
        if self._read_balances is not None:
            return self._read_balances(account_ids)
        found = [a for a in (self.account_or_none(i) for i in account_ids) if a is not None]
        return {a.account_id: (a.balance_minor, a.available_minor) for a in found}

    def account_or_none(self, account_id: str) -> Account | None:
        try:
            return self.ledger.get_account(account_id)
        except AccountNotFound:
            return None

    def hold(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
             currency: str, owner_id: str, write: RowWrite) -> None:
        request = TransferRequest(debit_account_id, credit_account_id, amount_minor, currency, transfer_id,
                                  pending=True)
        self._refusals(lambda: self.ledger.transfer(request, Actor(owner_id), extra=write))

    def post(self, pending_id: str, transfer_id: str, write: RowWrite) -> None:
        self.ledger.post_pending(pending_id, transfer_id=transfer_id, extra=write)

    def transfer(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
                 currency: str, owner_id: str | None, write: RowWrite) -> None:
        request = TransferRequest(debit_account_id, credit_account_id, amount_minor, currency, transfer_id)
        self._refusals(lambda: self.ledger.transfer(request, Actor(owner_id), extra=write))

    def post_linked(self, legs: Sequence[tuple[str, str, str, int]], currency: str, write: RowWrite) -> None:
        requests = [TransferRequest(debit, credit, amount, currency, transfer_id)
                    for transfer_id, debit, credit, amount in legs]
        self.ledger.transfer_linked(requests, extra=write)

    def transfer_exists(self, transfer_id: str) -> bool:
        try:
            self.ledger.get_transfer(transfer_id)
        except TransferNotFound:
            return False
        return True

    @staticmethod
    def _refusals(operation: Callable[[], object]) -> None:
        """The ledger's refusals of a customer's order, as wealth's own (naming wealth's fields)."""
        try:
            operation()
        except AccountNotFound as error:
            raise WalletAccountNotFound("no such account", errors=(("account_id", "not found"),)) from error
        except InsufficientFunds as error:
            raise InsufficientBalance("the available balance is below the amount",
                                      errors=(("amount", "above the available balance"),)) from error
