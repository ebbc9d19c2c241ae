"""Merchant settlement: once per business date, each merchant is paid what its receivable shards took in
since its previous settlement, less the application fees and the rolling reserve, plus the reserves of
earlier settlements whose period is over, with a report that reconciles:
captures - refunds - fees - dispute_losses - reserve + reserve_released = payout.

The run is a small saga with its plan stored first. It reads each shard's ledger statement back to the
previous settlement's cut (entries older than `settlement_lag_seconds` only, so a transaction still in
flight is never skipped), classifies each entry by the intent step whose id it carries, prices the fees
from the intents, and stores the settlement PLANNED with its legs (ids `stl-<merchant>-<yyyymmdd>-<n>`),
conditionally on no settlement of that merchant and date and on no other date having followed the
previous settlement (two dates planned from one cut at once: the second is refused). Then it moves the
legs on the ledger (linked batches: a replay of a batch that committed is answered by the ledger, never
applied twice) and saves the settlement PAID with `payout.paid` in the same write. A crash anywhere leaves
either nothing (planned again from scratch) or the PLANNED record, which the next run finishes with the
same legs: nothing is paid twice. The payout leg credits the currency's settlement account, the suite's
side of the rail.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from finfaas.domain.calendar import MarketCalendar
from finfaas.domain.ledger import AccountKind, Entry, linked_legs_max, system_account_id
from finfaas.domain.payments import fee_earned_minor, reserve_release_date, settlement_split
from finfaas.platform.logging import get_logger
from finfaas.services.payments.errors import (
    MerchantNotFound,
    SettlementDateInFuture,
    SettlementNotFound,
    SettlementOutOfOrder,
    SettlementWindowTooLarge,
)
from finfaas.services.payments.model import (
    PAYMENT_ID_PREFIX,
    SETTLEMENT_TRANSFER_PREFIX,
    Merchant,
    PaymentIntent,
    RunProgress,
    Settlement,
    SettlementLeg,
    SettlementRun,
    SettlementStatus,
    payment_id_hex_chars,
    payout_event,
    settlement_transfer_id,
)
from finfaas.services.payments.ports import Merchants, PaymentIntents, PaymentsLedger, Settlements

# The market whose business date (services/business_date) and calendar date settlements and reserve periods.
SETTLEMENT_MARKET = "CN"
# Entries younger than this stay for the next settlement: a ledger transaction stamps its entries before
# it commits, so one still in flight may commit with a key below a cut taken at that moment.
settlement_lag_seconds = 60
# A shard read back further than this in one settlement is refused (settle more often): bounds a run.
settlement_entries_per_shard_max = 20_000
statement_page_size = 100
settle_legs_per_batch_max = linked_legs_max
# One tick of the daily run settles at most this many merchants (each a few reads and transactions,
# within the tick's minute); the rest follow on the next ticks.
settlement_run_merchants_max = 50
# One settlement releases the reserves of at most this many earlier ones (more than a year of daily
# settlements); any further due wait for the next, as the release pointer moves only over those read.
reserve_release_settlements_max = 400
RESERVE_RELEASE = "reserve_release"  # the purpose of the leg paying a released reserve out
_PAYMENT_ID_CHARS = len(PAYMENT_ID_PREFIX) + payment_id_hex_chars
_log = get_logger("payments.settlement")

CSV_COLUMNS = ("merchant_id", "business_date", "currency", "status", "cut_at", "captures_minor",
               "refunds_minor", "fees_minor", "dispute_losses_minor", "reserve_minor", "payout_minor",
               "fees_carried_minor", "entries", "reconciles", "reserve_released_minor")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Window:
    """What a settlement's entries add up to, by kind; net is what the shards took in."""

    captures: int = 0
    refunds: int = 0
    fees: int = 0
    dispute_losses: int = 0
    entries: int = 0
    per_shard: dict[str, int] = field(default_factory=dict)
    cuts: dict[str, str] = field(default_factory=dict)

    @property
    def net(self) -> int:
        return self.captures - self.refunds - self.dispute_losses


@dataclass(frozen=True)
class _Release:
    """The reserves a settlement releases: those withheld on the dates in (after, through]."""

    after: date | None
    through: date | None
    due_minor: int
    released_minor: int


def intent_step(transfer_id: str) -> tuple[str, str] | None:
    """(payment id, step kind) of a ledger id an intent step made (`<pi_...>-<kind><n>-<tag>`); None for
    any other transfer."""
    if not transfer_id.startswith(PAYMENT_ID_PREFIX) or transfer_id[_PAYMENT_ID_CHARS:][:1] != "-":
        return None
    rest = transfer_id[_PAYMENT_ID_CHARS + 1:]
    kind = rest.split("-", 1)[0].rstrip("0123456789")
    return transfer_id[:_PAYMENT_ID_CHARS], kind


class MerchantSettlement:
    """The settlement use cases: settle a merchant for a business date, read its report."""

    def __init__(self, merchants: Merchants, intents: PaymentIntents, ledger: PaymentsLedger,
                 settlements: Settlements, business_date: Callable[[], date],
                 clock: Callable[[], datetime] = _utc_now, *,
                 legs_per_batch: int = settle_legs_per_batch_max,
                 lag_seconds: int = settlement_lag_seconds,
                 on_paid: Callable[[Settlement], object] | None = None,
                 calendar: MarketCalendar | None = None) -> None:
        self._merchants = merchants
        self._intents = intents
        self._ledger = ledger
        self._settlements = settlements
        self._business_date = business_date
        self._clock = clock
        self._legs_per_batch = legs_per_batch
        self._lag_seconds = lag_seconds
        self._on_paid = on_paid  # hands the payout to the rail (rail_payouts); again on a rerun, harmlessly
        self._calendar = calendar  # business days of the reserve period (None: Monday to Friday)

    def settle(self, merchant_id: str, business_date: date) -> Settlement:
        """The merchant's settlement of business_date, planned, paid and stored; run again, the stored one
        (a PLANNED one is finished with its own legs)."""
        merchant = self._merchant(merchant_id)
        today = self._business_date()
        if business_date > today:
            raise SettlementDateInFuture(f"date: {business_date} is after the business date {today}",
                                         field="date")
        stored = self._settlements.get(merchant_id, business_date)
        if stored is None:
            latest = self._settlements.latest(merchant_id)
            if latest is not None and latest.business_date > business_date:
                raise SettlementOutOfOrder(f"date: {merchant_id} is settled up to {latest.business_date}",
                                           field="date")
            if latest is not None and latest.status is not SettlementStatus.PAID:
                # the previous day's crashed run first: its cut is this one's start
                latest = self._finish(latest)
            if latest is not None and self._on_paid is not None:
                self._on_paid(latest)  # its payout's hand-off again, in case a crash lost it
            # Claims the place after `latest`: a rival settling another date from the same cut (the daily
            # run against an operator's settlement of a missed day) is refused before anything moves.
            stored = self._settlements.create(self._plan(merchant, business_date, latest),
                                              latest.business_date if latest is not None else None)
        settled = self._finish(stored)
        if self._on_paid is not None:
            self._on_paid(settled)
        return settled

    def settle_due(self, limit: int = settlement_run_merchants_max) -> SettlementRun:
        """One tick of the daily run: the next merchants (by id) not yet settled for today's business date,
        each settled as settle() does; progress is kept per date so later ticks go on. A merchant that
        fails is passed over (logged): its next settlement starts from its last cut, so what it is owed
        is paid then. Safe to run twice at once (settle() is)."""
        today = self._business_date()
        progress = self._settlements.run_progress(today) or RunProgress(today, "", False, 0)
        if progress.done:
            return SettlementRun(today, (), (), True)
        settled: list[str] = []
        failed: list[str] = []
        ids = self._merchants.merchant_ids(progress.after or None, limit)
        for merchant_id in ids:
            try:
                self.settle(merchant_id, today)
            except Exception as error:  # one merchant that cannot be settled now must not stop the day
                _log.error("settlement failed", merchant_id=merchant_id, error_type=type(error).__name__)
                failed.append(merchant_id)
                continue
            settled.append(merchant_id)
        done = len(ids) < limit
        after = ids[-1] if ids else progress.after
        self._settlements.save_run_progress(RunProgress(today, after, done, progress.version + 1))
        return SettlementRun(today, tuple(settled), tuple(failed), done)

    def report(self, merchant_id: str, business_date: date) -> Settlement:
        self._merchant(merchant_id)
        found = self._settlements.get(merchant_id, business_date)
        if found is None:
            raise SettlementNotFound(f"no settlement of {merchant_id} for {business_date}")
        return found

    def verify(self, settlement: Settlement, previous: Settlement | None) -> list[str]:
        """What does not agree between a stored settlement and the ledger: its figures against its
        shards' entries between the previous cut and its own (counted again), its legs against the
        ledger's transfers, and captures - refunds - fees - dispute_losses - reserve = payout."""
        name = f"settlement {settlement.merchant_id} {settlement.business_date}"
        problems = [] if settlement.reconciles else [f"{name}: its figures do not add up to the payout"]
        if settlement.status is not SettlementStatus.PAID:
            problems.append(f"{name}: {settlement.status.value}, not paid")
        merchant = self._merchant(settlement.merchant_id)
        before = dict(previous.cuts) if previous is not None else {}
        window = _Window(fees=previous.fees_carried_minor if previous is not None else 0)
        intents: dict[str, PaymentIntent | None] = {}
        for shard, cut in settlement.cuts:
            for entry in self._window_entries(shard, before.get(shard), settlement.cut_at):
                if entry.entry_key <= cut:
                    self._count(window, shard, entry, intents)
        counted = (window.captures, window.refunds, window.dispute_losses,
                   window.fees - settlement.fees_carried_minor)
        stored = (settlement.captures_minor, settlement.refunds_minor, settlement.dispute_losses_minor,
                  settlement.fees_minor)
        if counted != stored:
            problems.append(f"{name}: the ledger's entries give (captures, refunds, dispute losses, fees) "
                            f"{counted}, the report {stored}")
        for leg in settlement.legs:
            transfer = self._ledger.get_transfer(leg.transfer_id)
            if transfer is None or (transfer.debit_account_id, transfer.credit_account_id,
                                    transfer.amount_minor) != (leg.debit_account_id, leg.credit_account_id,
                                                               leg.amount_minor):
                problems.append(f"{name}: leg {leg.transfer_id} is not in the ledger as planned")
        if settlement.payout_reversal_id and self._ledger.get_transfer(settlement.payout_reversal_id) is None:
            problems.append(f"{name}: its failed payout never went back to the reserve "
                            f"({settlement.payout_reversal_id} is not in the ledger)")
        by_purpose = {purpose: sum(leg.amount_minor for leg in settlement.legs if leg.purpose == purpose)
                      for purpose in ("fees", "reserve", "payout", RESERVE_RELEASE)}
        if (by_purpose["fees"], by_purpose["reserve"], by_purpose["payout"] + by_purpose[RESERVE_RELEASE],
                by_purpose[RESERVE_RELEASE]) != (max(settlement.fees_minor, 0), settlement.reserve_minor,
                                                 settlement.payout_minor, settlement.reserve_released_minor):
            problems.append(f"{name}: its legs move {by_purpose}, not its figures")
        problems.extend(self._verify_release(name, merchant, settlement, previous))
        return problems

    def _verify_release(self, name: str, merchant: Merchant, settlement: Settlement,
                        previous: Settlement | None) -> list[str]:
        """The release starts where the previous settlement's stopped, releases only reserves whose period
        was over, what was due is their sum, and no more than that was paid."""
        after = previous.reserve_released_through if previous is not None else None
        through = settlement.reserve_released_through
        if through is None:
            ok = after is None and settlement.reserve_released_minor == settlement.reserve_due_minor == 0
            return [] if ok else [f"{name}: releases reserve without saying which"]
        problems = []
        if settlement.reserve_released_after != after:
            problems.append(f"{name}: its release starts after {settlement.reserve_released_after}, "
                            f"the previous stopped at {after}")
        due = 0
        for held in self._settlements.of_merchant(settlement.merchant_id, reserve_release_settlements_max,
                                                  settlement.reserve_released_after):
            if held.business_date > through:
                break
            due += held.reserve_minor
            if reserve_release_date(held.business_date, merchant.reserve_period_days,
                                    self._calendar) > settlement.business_date:
                problems.append(f"{name}: releases the reserve of {held.business_date} before its period")
        if due != settlement.reserve_due_minor or not 0 <= settlement.reserve_released_minor <= due:
            problems.append(f"{name}: releases {settlement.reserve_released_minor} of {due} due, "
                            f"recorded due {settlement.reserve_due_minor}")
        return problems

    # --- internals ---

    def _merchant(self, merchant_id: str) -> Merchant:
        merchant = self._merchants.get(merchant_id)
        if merchant is None:
            raise MerchantNotFound(f"merchant {merchant_id} not found")
        return merchant

    def _finish(self, settlement: Settlement) -> Settlement:
        """Moves the legs (a batch that committed before is a replay) and stores PAID with payout.paid."""
        while settlement.status is SettlementStatus.PLANNED:
            legs = list(settlement.legs)
            for start in range(0, len(legs), self._legs_per_batch):
                self._ledger.move(legs[start:start + self._legs_per_batch], settlement.currency)
            paid = settlement.paid(self._clock())
            # payout.paid waits for the rail's settlement of the payout (services/payments/rail_payouts.py)
            if self._settlements.save(paid, payout_event(paid, "payout.created")):
                return paid
            again = self._settlements.get(settlement.merchant_id, settlement.business_date)
            assert again is not None, "a settlement is never deleted"
            settlement = again
        return settlement

    def _plan(self, merchant: Merchant, business_date: date, previous: Settlement | None) -> Settlement:
        now = self._clock()
        cut_at = now - timedelta(seconds=self._lag_seconds)
        cuts = dict(previous.cuts) if previous is not None else {}
        window = _Window(fees=previous.fees_carried_minor if previous is not None else 0)
        intents: dict[str, PaymentIntent | None] = {}
        for shard in merchant.accounts.receivables:
            for entry in self._window_entries(shard, cuts.get(shard), cut_at):
                window.cuts.setdefault(shard, entry.entry_key)  # newest first: the first is the cut
                self._count(window, shard, entry, intents)
        for shard in merchant.accounts.receivables:
            window.cuts.setdefault(shard, cuts.get(shard, ""))
        split = settlement_split(net_minor=window.net, fees_minor=window.fees,
                                 reserve_bps=merchant.reserve_bps)
        legs = self._legs(merchant, business_date, window, split.fees_collected_minor, split.reserve_minor,
                          split.payout_minor)
        release = self._release(merchant, business_date, previous)
        if release.released_minor > 0:
            leg_id = settlement_transfer_id(merchant.merchant_id, business_date, len(legs))
            legs.append(SettlementLeg(leg_id, merchant.accounts.reserve,
                                      system_account_id(AccountKind.SETTLEMENT, merchant.currency),
                                      release.released_minor, RESERVE_RELEASE))
        planned = Settlement(
            merchant.merchant_id, business_date, merchant.currency, SettlementStatus.PLANNED, cut_at,
            tuple(sorted(window.cuts.items())), window.captures, window.refunds, split.fees_collected_minor,
            split.fees_carried_minor, window.dispute_losses, split.reserve_minor,
            split.payout_minor + release.released_minor, window.entries, tuple(legs), now,
            reserve_released_minor=release.released_minor, reserve_due_minor=release.due_minor,
            reserve_released_after=release.after, reserve_released_through=release.through)
        assert planned.reconciles, planned
        return planned

    def _release(self, merchant: Merchant, business_date: date, previous: Settlement | None) -> _Release:
        """The reserves earlier settlements withheld whose period is over on business_date, from where the
        previous settlement's release stopped (each date's reserve is released by exactly one settlement);
        paid out as far as the reserve account holds them (a dispute may have drawn on it)."""
        after = previous.reserve_released_through if previous is not None else None
        through, due = after, 0
        earlier = self._settlements.of_merchant(merchant.merchant_id, reserve_release_settlements_max, after)
        for held in earlier:
            if held.business_date >= business_date or reserve_release_date(
                    held.business_date, merchant.reserve_period_days, self._calendar) > business_date:
                break  # in date order: the later ones are due later still
            due += held.reserve_minor
            through = held.business_date
        if due == 0:
            return _Release(after, through, 0, 0)
        account = self._ledger.account(merchant.accounts.reserve)
        held_now = max(account.balance_minor - account.debits_pending, 0) if account is not None else 0
        return _Release(after, through, due, min(due, held_now))

    def _window_entries(self, shard: str, after_key: str | None, cut_at: datetime) -> Iterator[Entry]:
        """The shard's entries newer than after_key and not after cut_at, newest first."""
        cursor: str | None = None
        read = 0
        while True:
            page = self._ledger.statement(shard, statement_page_size, cursor)
            for line in page.lines:
                entry = line.entry
                if after_key is not None and entry.entry_key <= after_key:
                    return
                read += 1
                if read > settlement_entries_per_shard_max:
                    raise SettlementWindowTooLarge(
                        f"date: {shard} has more than {settlement_entries_per_shard_max} entries to settle")
                if entry.created_at <= cut_at:
                    yield entry
            if not page.has_more or page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _count(self, window: _Window, shard: str, entry: Entry,
               intents: dict[str, PaymentIntent | None]) -> None:
        delta = entry.balance_delta_minor
        step = intent_step(entry.transfer_id)
        if delta == 0 or step is None or entry.transfer_id.startswith(SETTLEMENT_TRANSFER_PREFIX + "-"):
            return  # holds and releases move nothing posted; other transfers are not a payment's
        payment_id, kind = step
        if payment_id not in intents:
            intents[payment_id] = self._intents.get(payment_id)
        intent = intents[payment_id]
        if intent is None:
            return
        window.entries += 1
        window.per_shard[shard] = window.per_shard.get(shard, 0) + delta
        if kind == "c":
            window.captures += delta
            window.fees += self._capture_fee(intent, entry.transfer_id)
        elif kind == "r":
            window.refunds -= delta
            refund = next((r for r in intent.refunds if r.transfer_id == entry.transfer_id), None)
            window.fees -= refund.fee_refunded_minor if refund is not None else 0
        elif kind == "rr":  # a rail refund the rail refused, given back: a refund less, its fee share again
            window.refunds -= delta
            refund = next((r for r in intent.refunds if r.reversal_id == entry.transfer_id), None)
            window.fees += refund.fee_refunded_minor if refund is not None else 0
        else:  # d, df (amount and fee taken), dw (amount won back)
            window.dispute_losses -= delta

    @staticmethod
    def _capture_fee(intent: PaymentIntent, transfer_id: str) -> int:
        """The fee earned by this capture: the fee's share of the running total captured after it, less
        before it (domain.payments.fee_earned_minor)."""
        before = 0
        for step in intent.ledger:
            if step.kind not in ("capture", "payment"):
                continue
            if step.transfer_id == transfer_id:
                def earned(received: int) -> int:
                    return fee_earned_minor(fee_minor_total=intent.application_fee_minor,
                                            amount_minor=intent.amount_minor, received_minor=received)
                return earned(before + step.amount_minor) - earned(before)
            before += step.amount_minor
        return 0

    def _legs(self, merchant: Merchant, business_date: date, window: _Window, fees: int, reserve: int,
              payout: int) -> list[SettlementLeg]:
        """Each shard's net, matched to the fees, the reserve and the payout in turn (and, for fees given
        back, the fee account's amount to the payout): at most shards + 2 legs."""
        currency = merchant.currency
        fees_account = system_account_id(AccountKind.FEES, currency)
        sources = [(shard, amount) for shard, amount in sorted(window.per_shard.items()) if amount > 0]
        if fees < 0:
            sources.append((fees_account, -fees))
        targets = [(fees_account, max(fees, 0), "fees"), (merchant.accounts.reserve, reserve, "reserve"),
                   (system_account_id(AccountKind.SETTLEMENT, currency), payout, "payout")]
        accounts = [account for account, _ in sources]
        left = [amount for _, amount in sources]
        legs: list[SettlementLeg] = []
        index = 0
        for target, wanted, purpose in targets:
            while wanted > 0:
                taken = min(wanted, left[index])
                if taken > 0:
                    transfer_id = settlement_transfer_id(merchant.merchant_id, business_date, len(legs))
                    legs.append(SettlementLeg(transfer_id, accounts[index], target, taken, purpose))
                left[index] -= taken
                wanted -= taken
                if left[index] == 0:
                    index += 1
        return legs


# --- the report as CSV ------------------------------------------------------------------------------------


def settlement_csv(settlement: Settlement) -> str:
    """One header line and one line of figures (minor units), for spreadsheets and bank reconciliation."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerow([settlement.merchant_id, settlement.business_date.isoformat(), settlement.currency,
                     settlement.status.value, settlement.cut_at.isoformat(), settlement.captures_minor,
                     settlement.refunds_minor, settlement.fees_minor, settlement.dispute_losses_minor,
                     settlement.reserve_minor, settlement.payout_minor, settlement.fees_carried_minor,
                     settlement.entries, str(settlement.reconciles).lower(),
                     settlement.reserve_released_minor])
    return out.getvalue()
