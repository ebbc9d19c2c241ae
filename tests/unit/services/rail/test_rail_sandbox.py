"""The sandbox rail and the suite's adapter to it (services/rail/), without the saga around them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain.creditor import Creditor, CreditorVault
from finfaas.platform.pii import EnvelopeCipher, KeyedDigests
from finfaas.services.rail.api import HandOff
from finfaas.services.rail.errors import InvalidNotice, PaymentNotFound
from finfaas.services.rail.model import PaymentStatus, Plan
from finfaas.services.rail.service import REJECTED_ERROR, RailAdapter, SandboxBank, SandboxSettings, plan_for
from finfaas.services.suite_clients import TaskNotWaiting
from finfaas.services.webhooks.model import new_webhook_secret
from finfaas_dev.fakes.platform import InMemoryDataKeys
from finfaas_dev.fakes.rail import InMemoryRailStore

NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
TOKEN = "dHJhbnNmZXI6dHJfMQ.secret"
# The stage's keys: transfers seals a payee with them, the rail opens it.
DATA_KEYS = InMemoryDataKeys()
SEALING_VAULT = CreditorVault(EnvelopeCipher(DATA_KEYS), KeyedDigests(b"k" * 32))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Timers:
    def __init__(self) -> None:
        self.scheduled: list[tuple[str, int]] = []

    def settle_later(self, payment_id: str, delay_seconds: int) -> None:
        self.scheduled.append((payment_id, delay_seconds))


class Notices:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict]] = []

    def send(self, body: bytes, headers) -> None:
        self.sent.append((body, dict(headers)))


class Orchestrator:
    """Waits for TOKEN until one report arrives."""

    def __init__(self) -> None:
        self.reports: list[tuple] = []
        self.waiting = {TOKEN}

    def heartbeat(self, task_token: str) -> bool:
        return task_token in self.waiting

    def succeed(self, task_token: str, output) -> None:
        self._report(task_token, ("success", output))

    def fail(self, task_token: str, error: str, cause: str) -> None:
        self._report(task_token, ("failure", error, cause))

    def _report(self, token: str, report: tuple) -> None:
        if token not in self.waiting:
            raise TaskNotWaiting("not waiting")
        self.waiting.discard(token)
        self.reports.append(report)


@pytest.fixture
def parts():
    clock, store, timers, notices, orchestrator = (
        Clock(),
        InMemoryRailStore(),
        Timers(),
        Notices(),
        Orchestrator(),
    )
    key = new_webhook_secret()
    bank = SandboxBank(
        store,
        timers,
        notices,
        key,
        settings=SandboxSettings(settle_seconds=2),
        clock=clock,
        draw=lambda: 0.99,
    )
    adapter = RailAdapter(bank, store, orchestrator, key, vault=CreditorVault(EnvelopeCipher(DATA_KEYS)),
                          clock=clock)
    return clock, store, timers, notices, orchestrator, bank, adapter


def hand_off(account_number: str = "12345678", token: str = TOKEN, sealed_for: str = "tr_1") -> HandOff:
    """The saga's message for payment tr_1, its payee sealed (by transfers) for transfer `sealed_for`."""
    sealed = SEALING_VAULT.seal(sealed_for, Creditor("BANKGB22", account_number, "Carol Payee"))
    return HandOff(
        task_token=token,
        payment_id="tr_1",
        amount_minor=2500,
        currency="USD",
        creditor=sealed.in_flight(),
    )


@pytest.mark.parametrize(
    ("number", "draw", "plan"),
    [
        ("00000001", 0.99, Plan.REJECT),
        ("00000002", 0.99, Plan.LOSE_NOTICE),
        ("00000003", 0.99, Plan.STUCK),
        ("12345678", 0.05, Plan.REJECT),
        ("12345678", 0.12, Plan.LOSE_NOTICE),
        ("12345678", 0.17, Plan.STUCK),
        ("12345678", 0.30, Plan.SETTLE),
    ],
)
def test_test_account_numbers_decide_and_otherwise_the_configured_rates(number, draw, plan):
    settings = SandboxSettings(reject_rate=0.1, timeout_rate=0.1)
    assert plan_for(Creditor("BANKGB22", number, "x"), settings, draw) is plan


def test_a_payment_settles_after_its_delay_and_the_signed_notice_reaches_the_waiting_saga(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts

    assert adapter.hand_off(hand_off()) == "submitted"
    assert timers.scheduled == [("tr_1", 2)]
    assert bank.settle_due("tr_1").status is PaymentStatus.ACCEPTED  # too early: re-scheduled
    clock.now += timedelta(seconds=2)
    assert bank.settle_due("tr_1").status is PaymentStatus.SETTLED
    body, headers = notices.sent[-1]
    assert adapter.on_notice(headers, body, now=clock.now.timestamp()) == "reported"
    assert orchestrator.reports[0][0] == "success"
    # a repeated notice (the bank retries) finds nobody waiting and changes nothing
    assert adapter.on_notice(headers, body, now=clock.now.timestamp()) == "not_waiting"


def test_a_forged_or_altered_notice_is_refused(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts
    adapter.hand_off(hand_off())
    clock.now += timedelta(seconds=2)
    bank.settle_due("tr_1")
    body, headers = notices.sent[-1]
    altered = json.dumps({**json.loads(body), "status": "REJECTED"}).encode()

    with pytest.raises(InvalidNotice):
        adapter.on_notice(headers, altered, now=clock.now.timestamp())
    assert orchestrator.reports == []


def test_a_rejection_is_reported_as_a_failure_the_saga_catches(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts
    adapter.hand_off(hand_off("99990001"))
    clock.now += timedelta(seconds=2)
    bank.settle_due("tr_1")
    body, headers = notices.sent[-1]

    adapter.on_notice(headers, body, now=clock.now.timestamp())

    assert orchestrator.reports[0][:2] == ("failure", REJECTED_ERROR)


def test_a_hand_off_whose_token_nobody_waits_for_pays_nothing(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts

    assert adapter.hand_off(hand_off(token="dHJhbnNmZXI6dHJfMQ.forged")) == "ignored"
    assert store.get("tr_1") is None


def test_a_recall_cancels_an_unsettled_payment_for_good(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts
    adapter.hand_off(hand_off("99990003"))  # stuck

    assert adapter.recall("tr_1").status is PaymentStatus.CANCELLED
    clock.now += timedelta(hours=1)
    assert bank.settle_due("tr_1").status is PaymentStatus.CANCELLED


def test_a_recall_reports_a_settled_payment_as_settled(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts
    adapter.hand_off(hand_off("99990002"))  # settles, notice lost
    clock.now += timedelta(seconds=2)
    bank.settle_due("tr_1")

    assert notices.sent == []
    assert adapter.recall("tr_1").status is PaymentStatus.SETTLED


def test_a_payment_recalled_before_it_arrived_is_refused_when_it_does(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts

    assert adapter.recall("tr_1").status is PaymentStatus.CANCELLED
    assert adapter.hand_off(hand_off()) == "refused"
    assert orchestrator.reports[0][:2] == ("failure", REJECTED_ERROR)
    assert store.get("tr_1").plan is Plan.NONE


@pytest.mark.parametrize("payment_id", ["", "tr 1", "tr_1\n", "{[", "\u202etr_1", "t" * 65, "tr.1"])
def test_a_recall_of_an_id_no_hand_off_can_carry_is_not_found_and_records_nothing(parts, payment_id):
    clock, store, timers, notices, orchestrator, bank, adapter = parts

    with pytest.raises(PaymentNotFound):
        adapter.recall(payment_id)
    assert store.get(payment_id) is None


def test_the_rail_pays_the_opened_payee_and_keeps_it_sealed(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts

    # GIVEN a test account number whose plan only the opened payee reveals (0001: rejected)
    assert adapter.hand_off(hand_off("99990001")) == "submitted"

    stored = store.get("tr_1")
    assert stored.plan is Plan.REJECT
    assert stored.creditor.account_number_masked == "****0001"
    assert "99990001" not in repr(stored) and "Carol" not in repr(stored)


def test_a_payee_sealed_for_another_transfer_is_refused_and_nothing_is_paid(parts):
    clock, store, timers, notices, orchestrator, bank, adapter = parts

    # GIVEN the sealed payee of transfer tr_2 copied into the hand-off of tr_1
    assert adapter.hand_off(hand_off(sealed_for="tr_2")) == "refused"

    assert store.get("tr_1") is None and timers.scheduled == []
    assert orchestrator.reports[0][:2] == ("failure", REJECTED_ERROR)


def test_a_settle_message_for_another_payment_id_is_harmless(parts):
    *_, bank, adapter = parts
    assert bank.settle_due("tr_unknown") is None
