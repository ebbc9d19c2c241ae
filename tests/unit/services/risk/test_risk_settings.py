"""Risk thresholds are settings of the deployment (RISK_<NAME>), checked at start, and shown to operators
by GET /_/ops/risk/rules with their defaults."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import pytest
import yaml
from finfaas.domain.risk_rules import RULE_THRESHOLDS, RiskPolicy, RiskRequest
from finfaas.platform.config import ConfigError
from finfaas.services.risk.model import policy_from_env, policy_setting
from finfaas.services.risk.service import RiskService
from finfaas_dev.fakes.risk import InMemoryRiskStore
from finfaas_dev.testing.platform import REPOSITORY_ROOT, TokenMinter, call, load_function_handler

NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
THRESHOLDS = [t.name for t in fields(RiskPolicy)]


def test_without_settings_the_policy_is_the_products_default():
    assert policy_from_env({}) == RiskPolicy()


def test_each_setting_moves_its_own_threshold():
    for name in THRESHOLDS:
        value = getattr(RiskPolicy(), name) + 1
        policy = policy_from_env({policy_setting(name): f" {value} "})
        assert getattr(policy, name) == value, name
        others = [other for other in THRESHOLDS if other != name]
        assert all(getattr(policy, other) == getattr(RiskPolicy(), other) for other in others)


def test_a_deployment_that_raises_the_velocity_thresholds_no_longer_flags_the_tenth_transfer():
    # GIVEN a stage whose customers make many transfers an hour
    policy = policy_from_env({"RISK_HOURLY_TRANSFERS_FLAG": "50", "RISK_HOURLY_TRANSFERS_BLOCK": "200"})
    service = RiskService(InMemoryRiskStore(), policy, lambda: NOW)

    # WHEN a customer makes 30 transfers in an hour to a payee already seen
    decisions = [service.assess(RiskRequest(f"tr_{n}", "cust-1", "acc-a", "acc-b", 100, "USD")).decision
                 for n in range(30)]

    # THEN none waits for a person (by default the 10th would, and the 30th would be declined)
    assert set(decisions[1:]) == {"approve"}
    default = RiskService(InMemoryRiskStore(), RiskPolicy(), lambda: NOW)
    by_default = [default.assess(RiskRequest(f"tr_{n}", "cust-1", "acc-a", "acc-b", 100, "USD")).decision
                  for n in range(30)]
    assert (by_default[9], by_default[29]) == ("review", "decline")


@pytest.mark.parametrize(("variable", "raw"), [
    ("RISK_HOURLY_TRANSFERS_FLAG", "ten"),
    ("RISK_HOURLY_TRANSFERS_FLAG", "1.5"),
    ("RISK_HOURLY_TRANSFERS_FLAG", "0"),
    ("RISK_AMOUNT_REVIEW_MAJOR", "-5"),
    ("RISK_AMOUNT_REVIEW_MAJOR", "1" * 30),
    ("RISK_NEW_PAYEE_SCORE", "1001"),
    ("RISK_REVIEW_SCORE_MIN", "0"),
    ("RISK_HOURLY_TRANSFERS_FLAG", "40"),  # above the block threshold (30)
])
def test_a_bad_setting_is_refused_naming_the_variable(variable, raw):
    with pytest.raises(ConfigError, match=variable):
        policy_from_env({variable: raw})


def test_the_risk_function_does_not_start_with_a_bad_setting(monkeypatch):
    monkeypatch.setenv("RISK_HOURLY_TRANSFERS_BLOCK", "many")

    with pytest.raises(ConfigError, match="RISK_HOURLY_TRANSFERS_BLOCK"):
        load_function_handler("risk")


def test_operators_read_every_rule_with_the_thresholds_in_effect_and_their_defaults():
    tokens = TokenMinter.generate()
    handler = load_function_handler("risk")
    handler.verifier.use(tokens.verifier())
    policy = RiskPolicy(hourly_transfers_flag=25, hourly_transfers_block=60)
    service = RiskService(InMemoryRiskStore(), policy)
    handler.services.use(handler.RiskServices(risk=service, probe=lambda: None))

    operator = tokens.mint("ops-1", ["ops", "ops:act"], "client")
    assessor = tokens.mint("svc", ["risk:assess"], "client")
    reply = call(handler.handle, "GET", "/_/ops/risk/rules", token=operator)
    refused = call(handler.handle, "GET", "/_/ops/risk/rules", token=assessor)

    assert reply.status == 200, reply.body
    rules = {rule["rule"]: rule for rule in reply.json()["rules"]}
    assert list(rules) == list(RULE_THRESHOLDS)
    velocity = {t["name"]: t for t in rules["velocity_count"]["thresholds"]}
    assert velocity["hourly_transfers_flag"] == {"name": "hourly_transfers_flag", "value": 25, "default": 10,
                                                 "setting": "RISK_HOURLY_TRANSFERS_FLAG"}
    assert velocity["hourly_transfers_block"]["value"] == 60
    shown = {t["name"] for rule in rules.values() for t in rule["thresholds"]}
    assert shown == set(THRESHOLDS)
    assert refused.status == 403


def test_stack_yml_sets_every_threshold_at_its_default_and_the_docs_list_them():
    stack = yaml.safe_load((REPOSITORY_ROOT / "stack.yml").read_text())
    environment = stack["functions"]["risk"]["environment"]
    docs = (REPOSITORY_ROOT / "docs" / "deploy.md").read_text()
    for name in THRESHOLDS:
        variable = policy_setting(name)
        assert environment.get(variable) == str(getattr(RiskPolicy(), name)), variable
        assert f"`{variable}`" in docs, variable
