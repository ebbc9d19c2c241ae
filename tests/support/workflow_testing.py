"""Test support for the engine: a fake clock, a toy bank that honours Idempotency-Key as the suite's
functions do, crash points injected through the engine's hook, and a connector loop that delivers
wake-ups (redelivering a message whose drive crashed, as SQS does after the visibility timeout)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from finfaas.workflow.asl import DefinitionRegistry, definitions_dir, load_definition_file, parse_definition
from finfaas.workflow.engine import Engine, EngineLimits
from finfaas.workflow.iterations import IterationLimits
from finfaas.workflow.model import Status
from finfaas.workflow.sweeper import Sweeper
from finfaas.workflow.tasks import TaskBusy, TaskCall, TaskFailed, TaskSubmitted, TaskSucceeded
from finfaas.workflow.wakeups import SWEEP
from finfaas_dev.fakes.workflow import InMemoryExecutionStore, InMemoryWaker
from finfaas_dev.testing.workflow import CrashAt, FakeClock, SimulatedCrash

VISIBILITY_SECONDS = 30  # infra/template.yaml: every queue, the orchestrator's included
DELIVERIES_MAX = 500
HISTORY_EVENTS_MAX = 10_000
# The engine's crash hook points: a clean run passes each kind, before and after its effect.
CRASH_POINT_KINDS = frozenset({
    "start:before_save",
    "start:after_save",
    "checkpoint:before_save",
    "checkpoint:after_save",
    "task:before_call",
    "task:after_call",
    "wake:before_send",
    "wake:after_send",
})


class StaticTokens:
    """A service's token source that always has the same token (it never expires in a test)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        return None


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


CrashCase = tuple[str, int, str]  # (scenario, index of the hook point to die at, that point)


def crash_cases(scenarios: Iterable[str], clean_run_points: Callable[[str], list[str]]) -> list[CrashCase]:
    """Every hook point a clean run of each scenario passes, as one case each."""
    return [(scenario, index, point) for scenario in scenarios
            for index, point in enumerate(clean_run_points(scenario))]


def crash_case_ids(cases: list[CrashCase]) -> list[str]:
    return [f"{scenario}-{index:02d}-{point}" for scenario, index, point in cases]


def engine_process(
    number: int,
    definitions: DefinitionRegistry,
    store: Any,
    tasks: Any,
    waker: Any,
    *,
    clock: FakeClock,
    limits: EngineLimits,
    crash: CrashAt,
    inline: SameThreadDrives | None = None,
    renewal_crash: CrashAt | None = None,
    iteration_limits: IterationLimits = IterationLimits(),
) -> Engine:
    """The engine of orchestrator process `number`: its own owner and task secrets, the deployment's
    store, queue, clock and crash hook, and no randomness (jitter fixed at half)."""
    secrets = iter(f"secret{number}-{n}" for n in range(10**6))
    return Engine(
        definitions,
        store,
        tasks,
        waker,
        clock=clock,
        sleep=clock.sleep,
        limits=limits,
        owner=f"process-{number}",
        new_secret=lambda: next(secrets),
        unit_random=lambda: 0.5,
        crash_hook=crash,
        inline=inline,
        renewal_crash_hook=renewal_crash or CrashAt(),
        iteration_limits=iteration_limits,
    )


def deliver_wakeup(queued: Any, engine: Engine, sweeper: Sweeper, waker: InMemoryWaker, clock: FakeClock,
                   restart: Callable[[], None]) -> None:
    """The connector's delivery of one wake-up; when the process dies in it, `restart` starts a fresh one
    and the message, never deleted, is visible again after the visibility timeout, as SQS does."""
    wakeup = queued.wakeup
    try:
        if wakeup.kind == SWEEP:
            sweeper.tick()
        else:
            engine.drive(wakeup.execution_id, wakeup.reason, wakeup.due_at_ms)
    except SimulatedCrash:
        restart()
        waker.queued.append(type(queued)(clock.ms() + VISIBILITY_SECONDS * 1000, queued.sequence, wakeup))


def wait_for_work(next_visible_at_ms: int | None, store: Any, sweeper: Sweeper, clock: FakeClock) -> bool:
    """Time passes until the next message is visible; False when nothing is queued or running."""
    if next_visible_at_ms is None:
        if not store.any_running():
            return False
        # Nothing queued yet work remains: what the sweeper's tick chain is for.
        clock.sleep(sweeper.interval_seconds)
        sweeper.sweep()
        return True
    clock.now = max(clock.now, next_visible_at_ms / 1000)
    return True


def entered_states(store: Any, execution_id: str) -> list[str]:
    """The states an execution entered, in order."""
    return [e.state for e in store.history(execution_id, 0, HISTORY_EVENTS_MAX) if e.type == "StateEntered"]


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
        iteration_limits: IterationLimits = IterationLimits(),
    ) -> None:
        self.clock = FakeClock()
        self.iteration_limits = iteration_limits
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
        return engine_process(self.processes, self.definitions, self.store, self.tasks, self.waker,
                              clock=self.clock, limits=self.limits, crash=self.crash, inline=self.inline,
                              renewal_crash=self.renewal_crash, iteration_limits=self.iteration_limits)

    def _restart(self) -> None:
        self.engine = self._new_process()

    def start(self, state_machine: str, name: str, input_value: Any) -> Any:
        """A client starting an execution, retrying (same name and input) when the request dies."""
        for _ in range(3):
            try:
                return self.engine.start(state_machine, name, input_value)
            except SimulatedCrash:
                self._restart()
        raise AssertionError("start kept crashing")

    def run(self, deliveries_max: int = DELIVERIES_MAX) -> None:
        """Deliver wake-ups as the connector does until nothing is running or queued."""
        for _ in range(deliveries_max):
            queued = self.waker.pop_visible()
            if queued is None:
                if not wait_for_work(self.waker.next_visible_at_ms(), self.store, self.sweeper, self.clock):
                    return
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
        deliver_wakeup(queued, self.engine, self.sweeper, self.waker, self.clock, self._restart)

    def status(self, execution_id: str) -> Status:
        return self.store.get(execution_id).status

    def path(self, execution_id: str) -> list[str]:
        """The states entered, in order."""
        return entered_states(self.store, execution_id)
