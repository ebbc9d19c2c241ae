"""The console's use cases: sign-in, executions, the review queue; each a call to another function's API."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from finfaas.services.console.errors import RoleRefused, SignInRefused
from finfaas.services.console.model import Role, Session, role_of
from finfaas.services.console.ports import Suite
from finfaas.services.console.session import SessionCodec

ORCHESTRATOR, TRANSFERS, AUTH = "orchestrator", "transfers", "auth"
AWAITING_REVIEW = "AWAITING_REVIEW"
executions_page_size = 25
history_events_max = 500  # one page of the orchestrator's history; the rest is a link away
review_page_size = 50
reason_chars_max = 500
operator_id_chars_max = 128
secret_chars_max = 512
LIST_FILTERS = ("status", "state_machine", "reference", "started_after", "started_before", "starting_after")


@dataclass
class Problem:
    """A refusal another function answered with, to show as it said it."""

    status: int
    body: Any

    def text(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or self.body.get("code"))
        return str(self.body)


@dataclass
class ExecutionPage:
    execution: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    definition: dict[str, Any] | None = None


class ConsoleService:
    """Every call made with the signed-in operator's own token: the functions check its scopes again."""

    def __init__(self, suite: Suite, codec: SessionCodec, definitions_dir: Path,
                 clock: Callable[[], float]) -> None:
        self._suite = suite
        self._codec = codec
        self._definitions_dir = definitions_dir
        self._clock = clock

    # --- sign-in ------------------------------------------------------------------------------------

    def sign_in(self, operator: str, secret: str) -> Session:
        """An operator account is an auth client holding the ops scope (and ops:act to act)."""
        if not 0 < len(operator) <= operator_id_chars_max or not 0 < len(secret) <= secret_chars_max:
            raise SignInRefused("Enter your operator id and secret.")
        status, answer = self._suite.token(operator, secret)
        if status != 200 or not isinstance(answer, dict) or "access_token" not in answer:
            raise SignInRefused("The auth function did not accept this operator id and secret.")
        role = role_of(str(answer.get("scope", "")).split())
        if role is None:
            raise SignInRefused("This account carries no ops scope: it is not an operator account.")
        expires_at = int(self._clock()) + int(answer.get("expires_in", 0))
        return self._codec.new_session(operator, role, str(answer["access_token"]), expires_at)

    # --- executions ---------------------------------------------------------------------------------

    def executions(
        self, session: Session, filters: dict[str, str]
    ) -> tuple[dict[str, Any] | None, Problem | None]:
        query = {name: value for name, value in filters.items() if name in LIST_FILTERS and value}
        query["limit"] = str(executions_page_size)
        status, body = self._suite.call(ORCHESTRATOR, "GET", f"/executions?{urlencode(query)}", session.token)
        return (body, None) if status == 200 else (None, Problem(status, body))

    def execution(self, session: Session, execution_id: str) -> ExecutionPage | Problem:
        path = f"/executions/{quote(execution_id, safe='')}"
        status, body = self._suite.call(ORCHESTRATOR, "GET", path, session.token)
        if status != 200:
            return Problem(status, body)
        page = ExecutionPage(body, definition=self._definition(str(body.get("state_machine", ""))))
        status, history = self._suite.call(ORCHESTRATOR, "GET", f"{path}/history?limit={history_events_max}",
                                           session.token)
        if status == 200 and isinstance(history, dict):
            page.events = list(history.get("data") or [])
        return page

    def stop(self, session: Session, execution_id: str, reason: str) -> Problem | None:
        self._acting(session)
        if not 0 < len(reason.strip()) <= reason_chars_max:
            return Problem(422, {"detail": f"A reason of 1 to {reason_chars_max} characters is required."})
        path = f"/_/ops/executions/{quote(execution_id, safe='')}/stop"
        status, body = self._suite.call(ORCHESTRATOR, "POST", path, session.token, {"reason": reason.strip()})
        return None if status == 200 else Problem(status, body)

    def redrive(self, session: Session, execution_id: str) -> Problem | None:
        self._acting(session)
        path = f"/_/ops/executions/{quote(execution_id, safe='')}/redrive"
        status, body = self._suite.call(ORCHESTRATOR, "POST", path, session.token)
        return None if status == 200 else Problem(status, body)

    def _definition(self, state_machine: str) -> dict[str, Any] | None:
        """The definition the image carries (infra/statemachines): the console reads no table."""
        if not state_machine.replace("-", "").replace("_", "").isalnum():
            return None
        path = self._definitions_dir / f"{state_machine}.asl.json"
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    # --- the review queue ---------------------------------------------------------------------------

    def review_queue(self, session: Session) -> tuple[list[dict[str, Any]], Problem | None]:
        query = urlencode({"status": AWAITING_REVIEW, "limit": review_page_size})
        status, body = self._suite.call(TRANSFERS, "GET", f"/_/ops/transfers?{query}", session.token)
        if status != 200 or not isinstance(body, dict):
            return [], Problem(status, body)
        return list(body.get("data") or []), None

    def decide(self, session: Session, transfer_id: str, decision: str, reason: str) -> Problem | None:
        """Approve or reject a transfer under review, with the operator's reason (audited with them)."""
        self._acting(session)
        if decision not in ("approve", "reject"):
            return Problem(422, {"detail": "The decision is approve or reject."})
        if not 0 < len(reason.strip()) <= reason_chars_max:
            return Problem(422, {"detail": f"A reason of 1 to {reason_chars_max} characters is required."})
        # A fresh key per decision: the transfers function refuses a second, different decision itself.
        headers = {"Idempotency-Key": secrets.token_hex(16)}
        path = f"/_/ops/transfers/{quote(transfer_id, safe='')}/decision"
        status, body = self._suite.call(TRANSFERS, "POST", path, session.token,
                                        {"decision": decision, "note": reason.strip()}, headers)
        return None if status == 200 else Problem(status, body)

    @staticmethod
    def _acting(session: Session) -> None:
        if session.role is not Role.ACTOR:
            raise RoleRefused("Your role is read-only: acting (approve, reject, stop, redrive) needs the "
                              "ops:act scope. Nothing was done.")
