"""`finfaas executions list|describe`: what an operator reads about executions."""

from __future__ import annotations

import argparse
import re

from finfaas.workflow.model import HistoryEvent
from finfaas_dev import executions as cli
from finfaas_dev.cli import COMMANDS, _command_module
from support.workflow_testing import ToyBank, World, registry


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def _ran_saga(to: str) -> World:
    world = World(registry(repository=True), ToyBank(refuse_credits_to={"closed"}))
    world.start("demo-transfer", "tr-1", {"from": "alice", "to": to, "amount_minor": 1250})
    world.run()
    return world


def test_the_command_is_registered():
    assert _command_module(["executions", "describe", "x"]) == "finfaas_dev.executions"
    assert ("executions",) in COMMANDS


def test_describe_prints_the_path_taken_with_the_compensation():
    world = _ran_saga("closed")
    lines: list[str] = []

    code = cli.run(_parse("describe", "demo-transfer:tr-1"), world.store, lines.append)

    text = "\n".join(lines)
    assert code == cli.EXIT_OK
    assert "status      FAILED" in text and "Transfer.CreditRefused" in text
    entered = [line.split(".", 1)[1].split("(")[0].strip() for line in lines if line[:3].strip().isdigit()]
    assert entered == ["Debit", "NeedsCoolingOff", "Credit", "Refund", "CreditRefused"]
    assert "caught States.Http.StatusCode.422 -> Refund" in text
    assert "key demo-transfer:tr-1#Debit#1" in text
    assert re.search(r"succeeded in \d+(\.\d+)? ms", text)
    assert re.search(r"failed in \d+(\.\d+)? ms: States\.Http\.StatusCode\.422", text)


def test_describe_shows_the_functions_own_time_when_the_gateway_reported_it():
    timing = {"call_ms": 23.4, "function_ms": 21.0}
    reported = HistoryEvent(4, "TaskSucceeded", 0, "Debit", {"attempt": 1, **timing})
    unreported = HistoryEvent(9, "TaskSucceeded", 0, "Credit", {"attempt": 1, "call_ms": 5.2})

    assert cli._event_text(reported) == "succeeded in 23.4 ms (function 21.0 ms)"
    assert cli._event_text(unreported) == "succeeded in 5.2 ms"


def test_list_shows_each_status():
    world = _ran_saga("bob")
    lines: list[str] = []

    cli.run(_parse("list"), world.store, lines.append)

    assert lines[0].split() == ["EXECUTION", "STATUS", "STATE", "STARTED", "STOPPED", "/", "NEXT"]
    assert any(line.startswith("demo-transfer:tr-1") and "SUCCEEDED" in line for line in lines)


def test_an_unknown_execution_exits_1(capsys):
    world = _ran_saga("bob")

    assert cli.run(_parse("describe", "demo-transfer:nope"), world.store, print) == cli.EXIT_NOT_FOUND
    assert "no execution" in capsys.readouterr().err


def _through_orchestrator(minter, world: World):
    """The CLI's POSTs answered by the orchestrator function itself, on the world's engine."""
    from finfaas.workflow.sweeper import Sweeper
    from finfaas_dev.testing.platform import call, load_function_handler

    handler = load_function_handler("orchestrator")
    handler.services.use(handler.OrchestratorServices(world.engine, Sweeper(world.store, world.waker)))
    handler.verifier.use(minter.verifier())
    token = minter.mint(sub="operator", scopes=["ops", "ops:act"], kind="client")
    posted: list[str] = []

    def post(path: str, body: dict):
        posted.append(path)
        reply = call(handler.handle, "POST", path.removeprefix("/function/orchestrator"), json_body=body,
                     token=token)
        return reply.status, reply.json()

    return post, posted


def test_stop_then_redrive_from_the_command_line(minter, capsys):
    # GIVEN a transfer waiting out its cooling-off period
    world = World(registry(repository=True), ToyBank())
    world.start("demo-transfer", "tr-9", {"from": "alice", "to": "bob", "amount_minor": 150_000})
    world.settle()
    post, posted = _through_orchestrator(minter, world)
    lines: list[str] = []

    stopped = cli.run(_parse("stop", "demo-transfer:tr-9", "--reason", "fraud check"), out=lines.append,
                      post=post)
    stopped_again = cli.run(_parse("stop", "demo-transfer:tr-9", "--reason", "again"), out=lines.append,
                            post=post)
    refused = capsys.readouterr().err
    redriven = cli.run(_parse("redrive", "demo-transfer:tr-9"), out=lines.append, post=post)
    world.run()

    assert (stopped, stopped_again, redriven) == (cli.EXIT_OK, cli.EXIT_NOT_FOUND, cli.EXIT_OK)
    assert posted[0] == "/function/orchestrator/_/ops/executions/demo-transfer:tr-9/stop"
    assert lines[0].startswith("demo-transfer:tr-9  ABORTED  Execution.Stopped")
    assert "409 execution_not_running" in refused
    assert lines[1].startswith("demo-transfer:tr-9  RUNNING  CoolingOff  redrives 1")
    assert world.status("demo-transfer:tr-9").value == "SUCCEEDED"
    described: list[str] = []
    cli.run(_parse("describe", "demo-transfer:tr-9"), world.store, described.append)
    assert "redriven    1 time(s)" in described
    assert any("ExecutionAborted: Execution.Stopped  fraud check" in line for line in described)


def test_redriving_an_unknown_execution_exits_1_with_the_problem(minter, capsys):
    post, _ = _through_orchestrator(minter, World(registry(repository=True), ToyBank()))

    code = cli.run(_parse("redrive", "demo-transfer:nope"), out=print, post=post)

    assert code == cli.EXIT_NOT_FOUND and "404 execution_not_found" in capsys.readouterr().err


def test_list_by_reference_shows_its_executions_whatever_their_status():
    world = World(registry(repository=True), ToyBank())
    world.engine.start("demo-transfer", "tr-1", {"from": "alice", "to": "bob", "amount_minor": 1}, "order-1")
    world.engine.start("demo-transfer", "tr-2", {"from": "alice", "to": "bob", "amount_minor": 1}, "order-2")
    world.run()
    lines: list[str] = []

    code = cli.run(_parse("list", "--reference", "order-1", "--started-after", "2000-01-01T00:00:00Z"),
                   world.store, lines.append)

    assert code == cli.EXIT_OK
    assert [line.split()[:2] for line in lines[1:]] == [["demo-transfer:tr-1", "SUCCEEDED"]]
