"""Random ledger histories run on the DynamoDB store and the in-memory reference ledger side by side.

After every step both must agree on the result or the error, on every account of the run and on
every transfer the step touched; at the end, on every transfer, every statement and past balances.
The reference ledger alone is also checked for the invariants money relies on.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from finfaas.domain.errors import LedgerError
from finfaas.domain.ledger import (
    AccountKind,
    AccountStatus,
    Actor,
    NewAccount,
    NewTransfer,
    PostPending,
    Reversal,
    VoidPending,
)
from finfaas.store.ledger_store import DynamoLedgerStore
from finfaas.store.tables import LedgerTables
from finfaas_dev.testing.reference_model import ReferenceLedger
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

STORE_EXAMPLES_MAX = 12
STORE_STEPS_PER_EXAMPLE = 30
MODEL_EXAMPLES_MAX = 150
ACCOUNTS_PER_RUN_MAX = 8
EXPIRY_SWEEP_HOLDS_MAX = 1000
CURRENCIES = ("USD", "JPY")
OUTCOMES: Counter[str] = Counter()  # what the histories exercised, to show they are not vacuous
HUGE_AMOUNTS = [2**53 + 1, 12345678901234567890]  # exact only as integers
AMOUNTS = st.integers(0, 9).flatmap(
    lambda k: st.sampled_from(HUGE_AMOUNTS) if k == 0 else st.integers(1, 300))


class Clock:
    """Near real time (so sweeps never expire other tests' long holds), moved only by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def tick(self, seconds: float = 0.001) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class Outcome:
    """What an operation returned, or the domain error it raised (errors compare by meaning)."""

    @staticmethod
    def of(call):
        try:
            return ("ok", call())
        except LedgerError as error:
            return ("error", error)


class LedgerHistories(RuleBasedStateMachine):
    """Each rule applies the same request to every ledger under test and compares the outcomes."""

    def __init__(self, store: DynamoLedgerStore | None) -> None:
        super().__init__()
        self.model = ReferenceLedger()
        self.ledgers = [self.model] + ([store] if store is not None else [])
        self.store = store
        self.clock = Clock()
        self.run = uuid.uuid4().hex[:8]
        self.accounts: dict[str, str] = {}  # id -> currency
        self.transfer_ids: list[str] = []
        self.pending_ids: list[str] = []
        self.requests: list[tuple[str, object, Actor]] = []  # replayable successful requests
        self.touched: set[str] = set()

    def id(self, name: str) -> str:
        return f"{self.run}-{name}"

    def apply(self, method: str, request, actor: Actor | None = None, *, now: datetime | None = None):
        when = now or self.clock.tick()
        args = (request, actor, when) if actor is not None else (request, when)
        outcomes = [Outcome.of(lambda ledger=ledger: getattr(ledger, method)(*args))
                    for ledger in self.ledgers]
        assert all(o == outcomes[0] for o in outcomes), f"{method}({request}) differs: {outcomes}"
        result = outcomes[0]
        OUTCOMES[f"{method}: {'ok' if result[0] == 'ok' else type(result[1]).__name__}"] += 1
        return result

    # --- set-up ---

    @initialize()
    def open_funding_and_customers(self):
        """Per currency: a funding account, and customers of owners a and b with deposits."""
        for code in CURRENCIES:
            self._open(NewAccount(self.id(f"fund-{code}"), "system", code, AccountKind.FUNDING, False))
            for owner in "ab":
                account_id = self._open(NewAccount(self.id(f"{owner}-{code}"), self.id(owner), code))
                funding = self.id(f"fund-{code}")
                deposit = NewTransfer(self.id(f"dep-{account_id}"), funding, account_id, 500, code)
                self.transfer_ids.append(deposit.transfer_id)
                self._record("create_transfers", [deposit], Actor.system(), {deposit.transfer_id})

    @precondition(lambda self: len(self.accounts) < ACCOUNTS_PER_RUN_MAX)
    @rule(currency=st.sampled_from(CURRENCIES), overdraft=st.sampled_from([0, 50]),
          owner=st.sampled_from("ab"))
    def open_account(self, currency, overdraft, owner):
        self._open(NewAccount(self.id(f"acc{len(self.accounts)}"), self.id(owner), currency,
                              overdraft_limit_minor=overdraft))

    def _open(self, new: NewAccount) -> str:
        if self.apply("open_account", new)[0] == "ok":
            self.accounts[new.account_id] = new.currency
        return new.account_id

    # --- money movement ---

    def _leg(self, data, pending: bool) -> NewTransfer:
        """Mostly valid legs within one currency; now and then a ghost, a mismatch or the same account."""
        currency = data.draw(st.sampled_from(CURRENCIES), label="currency")
        same = [a for a, c in self.accounts.items() if c == currency]
        debit = data.draw(st.sampled_from(same + [self.id("ghost")]), label="debit")
        others = [a for a in same if a != debit] or same
        anywhere = data.draw(st.integers(0, 4), label="credit anywhere") == 0
        credit = data.draw(st.sampled_from(sorted(self.accounts) if anywhere else others), label="credit")
        timeout = data.draw(st.sampled_from([0, 0, 2, 5]), label="timeout") if pending else 0
        transfer_id = self.id(f"t{len(self.transfer_ids)}")
        self.transfer_ids.append(transfer_id)
        return NewTransfer(transfer_id, debit, credit, data.draw(AMOUNTS, label="amount"), currency, pending,
                           timeout)

    def _actor(self, data) -> Actor:
        customers = [Actor(self.id("a")), Actor(self.id("b"))]
        return data.draw(st.sampled_from([Actor.system()] * 6 + customers), label="actor")

    def _some_transfer(self, data, preferred: list[str], label: str) -> str:
        """Mostly one of `preferred` (e.g. holds for a post), sometimes any transfer id of the run."""
        use_preferred = preferred and data.draw(st.integers(0, 4), label=f"{label} preferred") > 0
        return data.draw(st.sampled_from(preferred if use_preferred else self.transfer_ids), label=label)

    @rule(data=st.data(), pending=st.booleans())
    def transfer(self, data, pending):
        leg = self._leg(data, pending)
        self._record("create_transfers", [leg], self._actor(data), {leg.transfer_id})

    @rule(data=st.data())
    def hold(self, data):
        self.transfer(data, pending=True)

    @rule(data=st.data(), size=st.integers(2, 4))
    def linked(self, data, size):
        legs = [self._leg(data, data.draw(st.booleans(), label="pending")) for _ in range(size)]
        self._record("create_transfers", legs, Actor.system(), {leg.transfer_id for leg in legs})

    @precondition(lambda self: self.pending_ids)
    @rule(data=st.data(), partial=st.booleans())
    def post(self, data, partial):
        pending_id = self._some_transfer(data, self.pending_ids, "pending")
        amount = data.draw(st.integers(1, 300), label="post amount") if partial else None
        request = PostPending(self.id(f"p{len(self.transfer_ids)}"), pending_id, amount)
        self.transfer_ids.append(request.transfer_id)
        self._record("post_pending", request, self._actor(data), {pending_id, request.transfer_id})

    @precondition(lambda self: self.pending_ids)
    @rule(data=st.data())
    def void(self, data):
        pending_id = self._some_transfer(data, self.pending_ids, "pending")
        request = VoidPending(self.id(f"v{len(self.transfer_ids)}"), pending_id)
        self.transfer_ids.append(request.transfer_id)
        self._record("void_pending", request, Actor.system(), {pending_id, request.transfer_id})

    @rule(data=st.data())
    def reverse(self, data):
        posted = [t for t in self.transfer_ids if t not in self.pending_ids]
        original = self._some_transfer(data, posted, "original")
        request = Reversal(self.id(f"r{len(self.transfer_ids)}"), original)
        self.transfer_ids.append(request.transfer_id)
        self._record("reverse", request, Actor.system(), {original, request.transfer_id})

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), tamper=st.booleans())
    def retry(self, data, tamper):
        """A client retries an earlier successful request, exactly or with a changed amount."""
        method, request, actor = data.draw(st.sampled_from(self.requests), label="retried")
        if tamper and method == "create_transfers":
            first = request[0]
            request = [NewTransfer(first.transfer_id, first.debit_account_id, first.credit_account_id,
                                   first.amount_minor + 1, first.currency, first.pending,
                                   first.timeout_seconds)]
        legs = request if isinstance(request, list) else [request]
        self.touched |= {leg.transfer_id for leg in legs}
        self.apply(method, request, actor)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5]))
    def time_passes_and_holds_expire(self, seconds):
        now = self.clock.tick(seconds)
        outcomes = [Outcome.of(lambda ledger=ledger: ledger.expire_due_holds(now, EXPIRY_SWEEP_HOLDS_MAX))
                    for ledger in self.ledgers]
        mine = [sorted(t.transfer_id for t in o[1] if t.pending_id.startswith(self.run)) for o in outcomes]
        assert all(m == mine[0] for m in mine), f"expiries differ: {mine}"
        self.touched |= {t.pending_id for t in outcomes[0][1]}

    @rule(data=st.data(), status=st.sampled_from(list(AccountStatus)))
    def change_status(self, data, status):
        customers = sorted(a for a in self.accounts if "-fund-" not in a)
        account_id = data.draw(st.sampled_from(customers), label="account")
        when = self.clock.tick()
        outcomes = [Outcome.of(lambda ledger=ledger: ledger.set_account_status(account_id, status, when))
                    for ledger in self.ledgers]
        assert all(o == outcomes[0] for o in outcomes), f"status {status} of {account_id}: {outcomes}"

    def _record(self, method: str, request, actor: Actor, touched: set[str]) -> None:
        self.touched |= touched
        if self.apply(method, request, actor)[0] == "ok":
            self.requests.append((method, request, actor))
            if method == "create_transfers":
                self.pending_ids += [leg.transfer_id for leg in request if leg.pending]

    # --- agreement ---

    def _transfers_agree(self, transfer_ids) -> None:
        for transfer_id in transfer_ids:
            assert self.store.get_transfer(transfer_id) == self.model.get_transfer(transfer_id), transfer_id

    @invariant()
    def accounts_and_touched_transfers_agree(self):
        if self.store is None:
            return
        for account_id in self.accounts:
            assert self.store.get_account(account_id) == self.model.get_account(account_id), account_id
        self._transfers_agree(self.touched)
        self.touched.clear()

    @invariant()
    def money_is_conserved_and_limits_hold(self):
        accounts = list(self.model.accounts.values())
        for currency in CURRENCIES:
            assert sum(a.balance_minor for a in accounts if a.currency == currency) == 0
        for account in accounts:
            assert not account.is_limited or account.available_minor >= 0, account
            assert min(account.debits_pending, account.credits_pending) >= 0

    def teardown(self):
        if self.store is None:
            return
        self._transfers_agree(self.transfer_ids)
        for account_id in self.accounts:
            assert _statement(self.store, account_id) == _statement(self.model, account_id), account_id
            for moment in (self.clock.now - timedelta(seconds=2), self.clock.now):
                assert self.store.balance_at(account_id, moment) == self.model.balance_at(account_id, moment)


def _statement(ledger, account_id: str) -> list[tuple]:
    """Every line of the statement, page by page (3 per page), without keys or timestamps."""
    lines, cursor = [], None
    while True:
        page = ledger.statement(account_id, 3, cursor)
        lines += [(x.entry.transfer_id, x.entry.kind, x.entry.debits_posted, x.entry.credits_posted,
                   x.entry.debits_pending, x.entry.credits_pending, x.balance_after_minor)
                  for x in page.lines]
        if not page.has_more:
            return lines
        cursor = page.next_cursor


def test_reference_ledger_keeps_its_invariants():
    run_state_machine_as_test(lambda: LedgerHistories(None), settings=settings(
        max_examples=MODEL_EXAMPLES_MAX, stateful_step_count=40, deadline=None))


def test_store_matches_reference_ledger(embedded_aws):
    store = DynamoLedgerStore(LedgerTables.for_stage(embedded_aws.stage), os.environ["AWS_DEFAULT_REGION"])
    OUTCOMES.clear()
    run_state_machine_as_test(lambda: LedgerHistories(store), settings=settings(
        max_examples=STORE_EXAMPLES_MAX, stateful_step_count=STORE_STEPS_PER_EXAMPLE, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], database=None,
        # Shrinking against the emulator can take many minutes; a failure shows its full history.
        phases=[Phase.explicit, Phase.generate]))
    print("\noutcomes compared:", dict(sorted(OUTCOMES.items())))
    for expected in ("create_transfers: ok", "create_transfers: InsufficientFunds", "reverse: ok"):
        assert OUTCOMES[expected] > 0, f"no '{expected}' in {STORE_EXAMPLES_MAX} histories"
    assert OUTCOMES["post_pending: ok"] + OUTCOMES["void_pending: ok"] > 0, "no hold was ever resolved"

