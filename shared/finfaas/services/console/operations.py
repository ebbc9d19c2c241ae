"""The console's dead-letter and health use cases: the relay's queue routes and each running function's
breakers and rate-limit refusals, called with the operator's own token."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from finfaas.platform.http import RESILIENCE_PATH
from finfaas.services.console.errors import FunctionDown, RoleRefused
from finfaas.services.console.model import Role, Session
from finfaas.services.console.ports import Suite
from finfaas.services.console.service import Problem, object_or_problem

RELAY = "relay"
# The console does not ask itself: a call through the gateway back into the page being served.
CONSOLE = "console"
queue_chars_max = 64
# The dead-letter api's bound, restated: importing that package would make the console's policy (derived
# from what its code imports) reach the queues.
message_id_chars_max = 100
# Each function's breakers cost one call: at most this many functions are asked per page.
functions_asked_max = 30


@dataclass
class HealthFigures:
    """What the health page adds to the gateway's list: queues, breakers and rate-limit refusals."""

    queues: list[dict[str, Any]] = field(default_factory=list)
    resilience: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    down: list[str] = field(default_factory=list)


class OperationsPages:
    """Dead letters (the relay's routes) and health figures, each from the function that holds them."""

    def __init__(self, suite: Suite) -> None:
        self._suite = suite

    def queues(self, session: Session) -> tuple[list[dict[str, Any]], Problem | None]:
        """Each queue's depth and its dead letters' depth and oldest age (FunctionDown if the relay is)."""
        body, problem = object_or_problem(self._suite, RELAY, "GET", "/_/ops/queues", session.token)
        return list((body or {}).get("data") or []), problem

    def letters(self, session: Session, queue: str) -> tuple[dict[str, Any] | None, Problem | None]:
        if not 0 < len(queue) <= queue_chars_max:
            return None, Problem(422, {"detail": "Name a queue."})
        path = f"/_/ops/queues/{quote(queue, safe='')}/dead-letters"
        body, problem = object_or_problem(self._suite, RELAY, "GET", path, session.token)
        if body is None:
            return None, problem
        for letter in body.get("data") or []:
            letter["sent_at"] = _utc(letter.get("sent_at_ms"))
        return body, None

    def redrive(self, session: Session, queue: str, message_id: str) -> tuple[dict[str, Any] | None,
                                                                               Problem | None]:
        """One letter by id, or all when message_id is empty; the relay checks ops:act again and audits."""
        if session.role is not Role.ACTOR:
            raise RoleRefused("Your role is read-only: redriving dead letters needs the ops:act scope. "
                              "Nothing was done.")
        if not 0 < len(queue) <= queue_chars_max or len(message_id) > message_id_chars_max:
            return None, Problem(422, {"detail": "Name a queue, and at most one message id."})
        body = {"message_id": message_id} if message_id else {}
        path = f"/_/ops/queues/{quote(queue, safe='')}/dead-letters/redrive"
        return object_or_problem(self._suite, RELAY, "POST", path, session.token, body)

    def health(self, session: Session, functions: list[dict[str, Any]]) -> HealthFigures:
        """Queues from the relay; breakers and refusals from each function with a replica running (asking
        a function scaled to zero would start it, and a fresh process has no breaker open)."""
        figures = HealthFigures()
        try:
            figures.queues, problem = self.queues(session)
            if problem is not None:
                figures.problems.append(problem)
        except FunctionDown as error:
            figures.down.append(error.function)
        running = [str(f["name"]) for f in functions if f.get("name") and f["name"] != CONSOLE
                   and (f.get("availableReplicas") or 0) > 0]
        for name in running[:functions_asked_max]:
            try:
                status, body = self._suite.call(name, "GET", RESILIENCE_PATH, session.token)
            except FunctionDown as error:
                figures.down.append(error.function)
                continue
            if status == 200 and isinstance(body, dict):
                refused = dict(body.get("rate_limit_rejections") or {})
                figures.resilience.append({"function": name, "breakers": list(body.get("breakers") or []),
                                           "rate_limit_rejections": refused,
                                           "rate_limited": bool(body.get("rate_limited"))})
            else:
                refusal = Problem(status, body).text()
                figures.problems.append(Problem(status, {"detail": f"{name}: {refusal}"}))
        return figures


def _utc(epoch_ms: Any) -> str:
    if not isinstance(epoch_ms, int) or epoch_ms <= 0:
        return "not told"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
