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
