"""The risk service: one recorded assessment per transfer, counters moved once, block lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain.creditor import payee_fingerprint
from finfaas.domain.risk_rules import Decision, RiskPolicy, RiskRequest
from finfaas.platform.pii import KeyedDigests
from finfaas.services.risk.errors import InvalidBlockEntry
from finfaas.services.risk.service import RiskService
from finfaas_dev.fakes.risk import InMemoryRiskStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def request(transfer_id: str, amount_minor: int = 1_000, destination: str = "acc-b") -> RiskRequest:
    return RiskRequest(transfer_id, "cust-1", "acc-a", destination, amount_minor, "USD")


@pytest.fixture
def clock() -> Clock:
    return Clock()


DIGESTS = KeyedDigests(b"k" * 32)


def fingerprint(bank_code: str, account_number: str) -> str:
    return payee_fingerprint(DIGESTS, bank_code, account_number)


@pytest.fixture
def service(clock) -> RiskService:
    return RiskService(
        InMemoryRiskStore(), RiskPolicy(hourly_transfers_flag=3, hourly_transfers_block=5), clock,
        payee_fingerprint=fingerprint,
    )


def test_assessing_the_same_transfer_again_returns_the_recorded_answer_and_counts_once(service):
    first = service.assess(request("tr_1"))
    again = service.assess(request("tr_1"))
    assert again == first
    # THEN only one transfer was counted: the second transfer is the second of the hour
    second = service.assess(request("tr_2"))
    count = next(f for f in second.findings if f.rule == "velocity_count")
    assert count.detail.startswith("2 transfers")


def test_a_payee_is_new_only_the_first_time(service):
    first = service.assess(request("tr_1", destination="bank1:0001"))
    second = service.assess(request("tr_2", destination="bank1:0001"))
    assert next(f for f in first.findings if f.rule == "new_payee").score > 0
    assert next(f for f in second.findings if f.rule == "new_payee").detail == "payee seen before"


def test_velocity_counts_per_hour_window(service, clock):
    for n in range(3):
        service.assess(request(f"tr_{n}"))
    assert service.assess(request("tr_3")).decision is Decision.REVIEW
    clock.now += timedelta(hours=1)
    assert service.assess(request("tr_4")).decision is Decision.APPROVE


def test_a_blocked_payee_declines_until_unblocked_and_is_kept_only_as_its_fingerprint(service):
    # GIVEN an operator blocks a payee by bank and account number; transfers send its fingerprint
    payee = fingerprint("BANK1", "12340001")
    service.block("destination", "BANK1:12340001", "fraud report 42")

    assert service.assess(request("tr_1", destination=payee)).decision is Decision.DECLINE
    assert [e.entry for e in service.blocked()] == [f"destination:{payee}"]
    assert "12340001" not in repr(service.blocked())
    assert service.unblock("destination", "BANK1:12340001") is True
    assert service.assess(request("tr_2", destination=payee)).decision is not Decision.DECLINE
    assert service.unblock("destination", "BANK1:12340001") is False


def test_an_internal_destination_is_blocked_by_its_account_id(service):
    service.block("destination", "acc-b", "mule account")
    assert service.assess(request("tr_1", destination="acc-b")).decision is Decision.DECLINE
    assert [e.entry for e in service.blocked()] == ["destination:acc-b"]


def test_block_entries_are_checked(service):
    with pytest.raises(InvalidBlockEntry):
        service.block("planet", "mars", "no")
    with pytest.raises(InvalidBlockEntry):
        service.block("customer", "a b", "spaces")
