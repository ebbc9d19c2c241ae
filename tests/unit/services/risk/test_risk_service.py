"""The risk service: one recorded assessment per transfer, counters moved once, block lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain.creditor import payee_fingerprint
from finfaas.domain.risk_rules import Decision, RiskPolicy, RiskRequest
from finfaas.platform.pii import KeyedDigests
from finfaas.services.risk.errors import InvalidBlockEntry, RiskStoreUnavailable
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


def velocity(assessment) -> str:
    return next(f for f in assessment.findings if f.rule == "velocity_count").detail


class LosesTheFirstRecord(InMemoryRiskStore):
    """A store whose first screening finds its window moved (so it is counted alone), then fails before
    its decision is recorded: the function died in between."""

    def __init__(self) -> None:
        super().__init__()
        self.records_to_lose = 1

    def count_and_record(self, *args, **kwargs):
        return None if self.records_to_lose else super().count_and_record(*args, **kwargs)

    def record(self, *args, **kwargs):
        if self.records_to_lose:
            self.records_to_lose -= 1
            raise RiskStoreUnavailable("lost (test)")
        return super().record(*args, **kwargs)


def test_a_transfer_counted_but_not_recorded_is_judged_on_its_first_place_when_retried(clock):
    # GIVEN the first screening of tr_1 counted it, then failed before its decision was recorded
    service = RiskService(LosesTheFirstRecord(), RiskPolicy(hourly_transfers_flag=3), clock)
    with pytest.raises(RiskStoreUnavailable):
        service.assess(request("tr_1"))
    second = service.assess(request("tr_2"))

    retried = service.assess(request("tr_1"))

    # THEN the retry keeps the first place and counts nothing more: the next transfer is the third
    assert (velocity(retried), velocity(second)) == ("1 transfers this hour", "2 transfers this hour")
    third = service.assess(request("tr_3"))
    assert velocity(third).startswith("3 transfers") and third.decision is Decision.REVIEW


class CountsAnotherBeforeTheWrite(InMemoryRiskStore):
    """A store in which another transfer of the same customer is counted between a screening's read and
    its write, once."""

    def __init__(self, intruder: RiskRequest) -> None:
        super().__init__()
        self.intruder: RiskRequest | None = intruder

    def count_and_record(self, request, window, before, transfers_max, assessment, now):
        if self.intruder is not None:
            self.count(self.intruder, window, transfers_max)
            self.intruder = None
        return super().count_and_record(request, window, before, transfers_max, assessment, now)


def test_a_transfer_whose_window_moved_before_its_write_is_judged_after_the_one_counted_first(clock):
    # GIVEN tr_2 of the same customer is counted while tr_1 is being screened (after tr_1 read its window)
    store = CountsAnotherBeforeTheWrite(request("tr_2", amount_minor=500))
    service = RiskService(store, RiskPolicy(hourly_transfers_flag=3), clock)

    first = service.assess(request("tr_1"))

    # THEN tr_1 is judged on the place after tr_2 (not the first place it read), and both count once
    assert velocity(first) == "2 transfers this hour"
    assert velocity(service.assess(request("tr_3"))).startswith("3 transfers this hour")
    assert velocity(service.assess(request("tr_1"))) == "2 transfers this hour"


def test_past_the_block_count_every_transfer_of_the_hour_is_declined_and_none_is_counted(service, clock):
    # GIVEN the service's block count is 5: the 5th transfer of the hour is the first declined
    assessments = [service.assess(request(f"tr_{n}")) for n in range(1, 8)]

    assert [a.decision for a in assessments] == [Decision.APPROVE, Decision.APPROVE, Decision.REVIEW,
                                                 Decision.REVIEW, Decision.DECLINE, Decision.DECLINE,
                                                 Decision.DECLINE]
    # THEN the 6th took no place: the 7th is judged on the same place, past the block count
    assert [velocity(a).split(" (")[0] for a in assessments[4:]] == [
        "5 transfers this hour", "6 transfers this hour", "6 transfers this hour"]
    assert service.assess(request("tr_6")) == assessments[5]
    clock.now += timedelta(hours=1)
    assert service.assess(request("tr_8")).decision is Decision.APPROVE


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
