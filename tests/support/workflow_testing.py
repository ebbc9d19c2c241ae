"""Test support for the engine: a fake clock, a toy bank that honours Idempotency-Key as the suite's
functions do, crash points injected through the engine's hook, and a connector loop that delivers
wake-ups (redelivering a message whose drive crashed, as SQS does after the visibility timeout)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finfaas.workflow.asl import DefinitionRegistry, definitions_dir, load_definition_file, parse_definition
from finfaas.workflow.engine import Engine, EngineLimits
from finfaas.workflow.model import Status
from finfaas.workflow.sweeper import Sweeper
from finfaas.workflow.tasks import TaskBusy, TaskCall, TaskFailed, TaskSubmitted, TaskSucceeded
from finfaas.workflow.wakeups import SWEEP
from finfaas_dev.fakes.workflow import InMemoryExecutionStore, InMemoryWaker
from finfaas_dev.testing.workflow import CrashAt, FakeClock, SimulatedCrash

VISIBILITY_SECONDS = 30  # infra/template.yaml's orchestrator queue
DELIVERIES_MAX = 500


@dataclass
class ToyBank:
    """demo-bank: debits, credits and refunds, each applied once per Idempotency-Key (replayed after)."""

    refuse_credits_to: set[str] = field(default_factory=set)
    unavailable_calls: int = 0  # the next N calls answer 503 without any effect
    answers: dict[str, TaskSucceeded | TaskFailed] = field(default_factory=dict)
    applied: Counter = field(default_factory=Counter)
    calls: list[TaskCall] = field(default_factory=list)
    balances: Counter = field(default_factory=Counter)

    def run(self, call: TaskCall) -> TaskSucceeded | TaskFailed:
        self.calls.append(call)
        if self.unavailable_calls > 0:
            self.unavailable_calls -= 1
            return TaskFailed("States.Http.StatusCode.503", '{"StatusCode":503}')
        if call.idempotency_key not in self.answers:
            self.answers[call.idempotency_key] = self._apply(call)
        return self.answers[call.idempotency_key]

    def _apply(self, call: TaskCall) -> TaskSucceeded | TaskFailed:
        route = call.parameters["ApiEndpoint"].rsplit("/", 1)[-1]
        body = call.parameters.get("RequestBody", {})
        if route == "credits" and body["account_id"] in self.refuse_credits_to:
            problem = {"code": "account_closed", "status": 422}
            return TaskFailed(
                "States.Http.StatusCode.422", json.dumps({"StatusCode": 422, "ResponseBody": problem})
            )
        self.applied[(route, body["reference"])] += 1
        if route == "debits":
            self.balances[body["account_id"]] -= body["amount_minor"]
            self.balances["in-flight"] += body["amount_minor"]
            return _ok({"debit_id": f"d-{body['reference']}"})
        if route == "credits":
            self.balances["in-flight"] -= body["amount_minor"]
            self.balances[body["account_id"]] += body["amount_minor"]
            return _ok({"credit_id": f"c-{body['reference']}"})
        assert route == "refunds"
        return _ok({"refunded": body["debit_id"]})

    def effects(self, reference: str) -> dict[str, int]:
        return {route: count for (route, ref), count in self.applied.items() if ref == reference}


def _ok(body: dict[str, Any]) -> TaskSucceeded:
    return TaskSucceeded({"StatusCode": 201, "StatusText": "Created", "Headers": {}, "ResponseBody": body})


class ScriptedTasks:
    """A task runner answering from a function of the call; records every call."""

    def __init__(
        self, answer: Callable[[TaskCall], TaskSucceeded | TaskFailed | TaskSubmitted | TaskBusy]
    ) -> None:
        self.answer = answer
        self.calls: list[TaskCall] = []

    def run(self, call: TaskCall) -> Any:
        self.calls.append(call)
        return self.answer(call)


def registry(*documents: tuple[str, dict], repository: bool = False) -> DefinitionRegistry:
    definitions = [parse_definition(name, document) for name, document in documents]
    if repository:
        definitions += [load_definition_file(p) for p in sorted(definitions_dir().glob("*.asl.json"))]
    return DefinitionRegistry(definitions)


class SameThreadSlot:
    """Runs an in-process drive at once, on the caller's thread, so a crash in it kills the caller too."""

    def __init__(self, drives: SameThreadDrives) -> None:
        self._drives = drives

    def run(self, drive: Callable[[], object]) -> bool:
        self._drives.run += 1
        drive()
        return True

    def release(self) -> None:
        self._drives.released += 1


class SameThreadDrives:
    """The engine's in-process drives without threads: deterministic under the fake clock."""

    def __init__(self, room: bool = True) -> None:
        self.room = room
        self.run = 0
        self.released = 0

    def reserve(self) -> SameThreadSlot | None:
        return SameThreadSlot(self) if self.room else None


class World:
    """An orchestrator deployment in memory: store, queue, clock, sweeper, and process restarts."""

    def __init__(
        self,
        definitions: DefinitionRegistry,
        tasks: Any,
        *,
        crash: CrashAt | None = None,
        limits: EngineLimits = EngineLimits(),
        duplicate_deliveries: bool = False,
        inline: bool = False,
        renewal_crash: CrashAt | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.renewal_crash = renewal_crash or CrashAt()
        self.store = InMemoryExecutionStore()
        self.waker = InMemoryWaker(self.clock.ms)
        self.definitions = definitions
        self.tasks = tasks
        self.limits = limits
        self.crash = crash or CrashAt()
        self.duplicate_deliveries = duplicate_deliveries
        self.inline = SameThreadDrives() if inline else None
        self.sweeper = Sweeper(self.store, self.waker, clock=self.clock)
        self.processes = 0
        self.engine = self._new_process()

    def _new_process(self) -> Engine:
        self.processes += 1
        secrets = iter(f"secret{self.processes}-{n}" for n in range(10**6))
        return Engine(
            self.definitions,
            self.store,
            self.tasks,
            self.waker,
            clock=self.clock,
            sleep=self.clock.sleep,
            limits=self.limits,
            owner=f"process-{self.processes}",
            new_secret=lambda: next(secrets),
            unit_random=lambda: 0.5,
            crash_hook=self.crash,
            inline=self.inline,
            renewal_crash_hook=self.renewal_crash,
        )

    def start(self, state_machine: str, name: str, input_value: Any) -> Any:
        """A client starting an execution, retrying (same name and input) when the request dies."""
        for _ in range(3):
            try:
                return self.engine.start(state_machine, name, input_value)
            except SimulatedCrash:
                self.engine = self._new_process()
        raise AssertionError("start kept crashing")

    def run(self, deliveries_max: int = DELIVERIES_MAX) -> None:
        """Deliver wake-ups as the connector does until nothing is running or queued."""
        for _ in range(deliveries_max):
            queued = self.waker.pop_visible()
            if queued is None:
                next_at = self.waker.next_visible_at_ms()
                if next_at is None:
                    if not self.store.any_running():
                        return
                    # Nothing queued yet work remains: what the sweeper's tick chain is for.
                    self.clock.sleep(self.sweeper.interval_seconds)
                    self.sweeper.sweep()
                    continue
                self.clock.now = max(self.clock.now, next_at / 1000)
                continue
            self._deliver(queued)
            if self.duplicate_deliveries:
                self._deliver(queued)
        raise AssertionError(f"still running after {deliveries_max} deliveries")

    def settle(self, deliveries_max: int = DELIVERIES_MAX) -> None:
        """Deliver what is visible now, without letting time pass."""
        for _ in range(deliveries_max):
            queued = self.waker.pop_visible()
            if queued is None:
                return
            self._deliver(queued)
        raise AssertionError(f"still delivering after {deliveries_max} deliveries")

    def _deliver(self, queued: Any) -> None:
        wakeup = queued.wakeup
        try:
            if wakeup.kind == SWEEP:
                self.sweeper.tick()
            else:
                self.engine.drive(wakeup.execution_id, wakeup.reason, wakeup.due_at_ms)
        except SimulatedCrash:
            # Not deleted: SQS shows it again after the visibility timeout, to a fresh process.
            self.engine = self._new_process()
            self.waker.queued.append(
                type(queued)(self.clock.ms() + VISIBILITY_SECONDS * 1000, queued.sequence, wakeup)
            )

    def status(self, execution_id: str) -> Status:
        return self.store.get(execution_id).status

    def path(self, execution_id: str) -> list[str]:
        """The states entered, in order."""
        return [e.state for e in self.store.history(execution_id, 0, 10_000) if e.type == "StateEntered"]
