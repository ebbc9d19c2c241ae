"""Risk assessed in a calling function's own process (payments, transfers): risk's use case
(services/risk/service.py) on risk's own table, with the thresholds the risk function publishes
(`GET /function/risk/rules`).

A payment's screening through the gateway cost a hop to the risk function and its request handling (token,
routing, JSON) besides risk's two DynamoDB calls: about a third of a payment's time. Run here, the same
code makes the same two calls on the same items, so a payment and a transfer of one customer are still
counted in one velocity bucket and judged by the same rules. The risk function stays the owner of what
decides: its thresholds are set on it alone (RISK_*) and read from it at most once a minute
(`policy_refresh_seconds`); its block lists and assessments live in its table, written only through its
service's code. When the thresholds cannot be read, the last ones read serve for `policy_stale_seconds_max`;
after that (or before any were read) an assessment fails, which the payments breaker counts and answers
with the degraded rule, as it does when the risk table cannot be reached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from finfaas.domain.risk_rules import Assessment, RiskPolicy, RiskRequest
from finfaas.services.risk.api import AssessmentBody
from finfaas.services.risk.model import AssessmentToRecord, Lookup
from finfaas.services.risk.service import RiskService

policy_refresh_seconds = 60.0
policy_stale_seconds_max = 900.0
policy_retry_seconds = 5.0  # after a failed read of the thresholds


class RiskPolicyUnavailable(RuntimeError):
    """The risk function's thresholds could not be read, and none recent enough are known."""


def policy_from_rules(rules: dict[str, Any]) -> RiskPolicy:
    """The RiskPolicy of the risk function's rules view (services/risk/api.py RiskRules)."""
    values = {threshold["name"]: threshold["value"]
              for rule in rules.get("rules", []) for threshold in rule.get("thresholds", [])}
    return RiskPolicy(**values)


class InProcessRisk:
    """`assess` answers as the risk function's POST /assessments would; `decide` and `record` are risk's use
    case for a caller that reads and writes risk's items with its own (the transfers function)."""

    def __init__(self, service_for: Callable[[RiskPolicy], RiskService], rules: Callable[[], dict[str, Any]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._service_for = service_for  # risk's service on its table, with the given thresholds
        self._rules = rules  # the risk function's GET /rules
        self._clock = clock
        self._lock = threading.Lock()
        self._service: RiskService | None = None
        self._read_at = 0.0
        self._refreshing = False
        self._retry_at = 0.0

    def assess(self, body: dict[str, Any]) -> dict[str, Any]:
        assessment = self._current().assess(AssessmentBody.model_validate(body).request())
        return {"assessment_id": assessment.assessment_id, "decision": assessment.decision.value,
                "score": assessment.score, "reasons": list(assessment.reasons)}

    def decide(self, request: RiskRequest, known: Lookup, window: str) -> Assessment | AssessmentToRecord:
        """RiskService.decide with the current thresholds (RiskPolicyUnavailable when none can be had)."""
        return self._current().decide(request, known, window)

    def record(self, pending: AssessmentToRecord) -> Assessment:
        """RiskService.record: a decided assessment written alone."""
        return self._current().record(pending)

    def _current(self) -> RiskService:
        """Risk's service with thresholds read within the last minute; one request at a time reads them
        again while the others go on with the ones they have (within policy_stale_seconds_max), and a
        failed read is not tried again for policy_retry_seconds, so a risk function down costs no
        payment a timeout of its own."""
        now = self._clock()
        with self._lock:
            known, age = self._service, now - self._read_at
            if known is not None and age < policy_refresh_seconds:
                return known
            usable = known is not None and age < policy_stale_seconds_max
            if usable and (self._refreshing or now < self._retry_at):
                assert known is not None
                return known
            if not usable and now < self._retry_at:
                raise RiskPolicyUnavailable("risk thresholds unavailable: read again shortly")
            self._refreshing = True
        try:
            policy = policy_from_rules(self._rules())
        except Exception as error:  # the risk function away, or an answer that is no policy
            with self._lock:
                self._refreshing, self._retry_at = False, now + policy_retry_seconds
            if known is not None and usable:
                return known
            raise RiskPolicyUnavailable(f"risk thresholds unavailable: {type(error).__name__}") from None
        service = self._service_for(policy)
        with self._lock:
            self._service, self._read_at, self._refreshing = service, now, False
        return service
