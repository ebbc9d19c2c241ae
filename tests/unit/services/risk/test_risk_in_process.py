"""Payments' risk check run in its own process (services/risk/in_process.py), through the payments
function's handle(event, context): risk's rules and store, the thresholds the risk function publishes, and
the breaker's degraded rule when they cannot be had."""

from __future__ import annotations

import pytest
from finfaas.domain.money import parse_currency
from finfaas.domain.risk_rules import RiskPolicy, RiskRequest
from finfaas.services.risk.api import risk_rules_view
from finfaas.services.risk.in_process import (
    InProcessRisk,
    policy_from_rules,
    policy_refresh_seconds,
    policy_stale_seconds_max,
)
from finfaas.services.risk.model import hour_window
from finfaas.services.risk.service import RiskService
from finfaas_dev.fakes.risk import InMemoryRiskStore
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from unit.services.payments.test_payment_intents import World


class RiskFunctionRules:
    """The risk function's GET /rules: its thresholds, or down."""

    def __init__(self, policy: RiskPolicy) -> None:
        self.policy, self.down, self.reads = policy, False, 0

    def __call__(self) -> dict:
        self.reads += 1
        if self.down:
            raise ConnectionError("risk is down")
        return risk_rules_view(self.policy).model_dump(mode="json")


class Seconds:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class InProcessWorld(World):
    """World whose payments assess with risk's service on an in-memory risk store."""

    def __init__(self, policy: RiskPolicy) -> None:
        super().__init__()
        self.risk_store, self.rules, self.seconds = InMemoryRiskStore(), RiskFunctionRules(policy), Seconds()
        self.in_process = InProcessRisk(lambda p: RiskService(self.risk_store, p, self.clock), self.rules,
                                        self.seconds)
        self.handler.services.get().payments._risk = self.in_process  # this world's own service

    def confirm(self, amount: int):
        payment_id = self.create(amount).json()["id"]
        return payment_id, self.post(f"/payment_intents/{payment_id}/confirm", self.ada)


@pytest.fixture
def strict() -> InProcessWorld:
    # the risk function's thresholds: a customer's third payment in an hour is flagged (so declined: a
    # payment cannot wait for a review), where the product's default flags the tenth
    return InProcessWorld(RiskPolicy(hourly_transfers_flag=3, hourly_transfers_block=5))


def test_payments_are_judged_by_the_risk_functions_thresholds_and_counted_in_risks_store(strict):
    answers = [strict.confirm(1_000)[1] for _ in range(3)]

    assert [a.status for a in answers[:2]] == [200, 200], answers[0].body
    assert answers[2].status == 422 and answers[2].json()["code"] == "payment_declined"
    # each payment counted once in ada's hour, where the risk function counts her transfers too
    assert strict.risk_store.look_up(_probe(), hour_window(strict.clock.now)).window_before.transfers == 3
    assert strict.rules.reads == 1  # the thresholds are read once a minute, not per payment


def test_thresholds_are_read_again_after_a_minute_and_a_stale_set_serves_while_risk_is_down():
    strict = InProcessWorld(RiskPolicy())
    strict.confirm(1_000)
    strict.rules.down = True
    strict.seconds.now += policy_refresh_seconds + 1

    served = strict.confirm(1_000)[1]
    again = strict.confirm(1_000)[1]
    reads = strict.rules.reads
    strict.seconds.now += policy_stale_seconds_max
    small, large = strict.confirm(1_000)[1], strict.confirm(100_000)[1]

    # one failed read, not tried again by the next payment: neither waits for the risk function
    assert served.status == again.status == 200 and reads == 2
    # too old to trust: the assessment fails, and the degraded rule answers as for a risk function down
    assert small.status == 200 and large.status == 503 and large.json()["code"] == "risk_unavailable"
    degraded = [i for i in strict.intents._intents.values() if i.risk and i.risk.get("degraded")]
    assert len(degraded) == 1


def test_risks_store_down_opens_the_breaker_and_small_payments_pass_degraded():
    world = InProcessWorld(RiskPolicy())
    world.risk_store.fail_next = 10

    small, passed = world.confirm(1_000)
    _, refused = world.confirm(100_000)

    assert passed.status == 200 and world.intents.get(small).risk["degraded"] is True
    assert refused.status == 503 and refused.json()["code"] == "risk_unavailable"


def _probe() -> RiskRequest:
    return RiskRequest("probe", "cust-ada", "acc-ada", "merchant:m-books", 1, parse_currency("USD"), False)


def test_the_risk_function_publishes_its_thresholds_to_assessing_callers_only():
    risk = load_function_handler("risk")
    minter = TokenMinter.generate()
    risk.verifier.use(minter.verifier())
    policy = RiskPolicy(hourly_transfers_flag=4, new_payee_score=7)
    risk.services.use(risk.RiskServices(risk=RiskService(InMemoryRiskStore(), policy), probe=lambda: None))

    assessing = minter.mint("payments", ["risk:assess"], kind="client")
    published = call(risk.handle, "GET", "/rules", token=assessing)
    reader = call(risk.handle, "GET", "/rules", token=minter.mint("console", ["risk:read"], kind="client"))

    assert published.status == 200 and policy_from_rules(published.json()) == policy
    assert reader.status == 403
