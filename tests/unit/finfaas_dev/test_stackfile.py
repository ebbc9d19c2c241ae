"""stack.yml parsing: what the local runtime reads, and the mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from finfaas_dev.stackfile import (
    IDLE_SECONDS_DEFAULT,
    StackError,
    load_stack,
    parse_duration_seconds,
    parse_stack,
)
from finfaas_dev.testing.platform import REPOSITORY_ROOT
from support.gateway_harness import FIXTURE_STACK

HEADER = "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\nfunctions:\n"


def _stack(tmp_path: Path, function_yaml: str):
    (tmp_path / "fn").mkdir(exist_ok=True)
    (tmp_path / "fn" / "handler.py").write_text("def handle(event, context):\n    return None\n")
    path = tmp_path / "stack.yml"
    path.write_text(HEADER + function_yaml)
    return parse_stack(path.read_text(), path)


def test_the_project_stack_file_loads():
    stack = load_stack(REPOSITORY_ROOT / "stack.yml")

    for spec in stack.functions.values():
        assert (spec.handler_dir / "handler.py").is_file()
        assert spec.lang == "python3-http"


def test_fixture_stack_reads_labels_annotations_environment_and_handler_folders():
    stack = load_stack(FIXTURE_STACK)

    echo = stack.functions["echo"]
    assert echo.handler_dir == FIXTURE_STACK.parent / "echo"
    assert echo.scales_to_zero
    assert echo.idle_seconds_before_stop == 300
    assert echo.environment["GREETING"] == "hello"
    assert echo.timeout_seconds("exec_timeout") == 10
    assert stack.functions["sink"].topics == ("fixture-events",)
    assert not stack.functions["sink"].scales_to_zero
    assert stack.functions["crasher"].idle_seconds_before_stop == IDLE_SECONDS_DEFAULT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5), ("30", 30), ("0", 0), ("2h", 7200)],
)
def test_durations_are_go_durations_or_whole_seconds(text, seconds):
    assert parse_duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5 minutes", "m5", "-1s", "1d", "", "5m garbage"])
def test_bad_durations_are_refused(text):
    with pytest.raises(StackError, match="invalid duration"):
        parse_duration_seconds(text)


def test_several_topics_are_comma_separated(tmp_path):
    stack = _stack(
        tmp_path,
        "  fn:\n    lang: python3-http\n    handler: ./fn\n"
        "    annotations:\n      topic: payments, refunds\n",
    )

    assert stack.functions["fn"].topics == ("payments", "refunds")


def test_environment_scalars_are_coerced_like_faas_cli_does(tmp_path):
    stack = _stack(
        tmp_path,
        "  fn:\n    lang: python3-http\n    handler: ./fn\n"
        "    environment:\n      RETRIES: 3\n      DEBUG: true\n",
    )

    assert stack.functions["fn"].environment == {"RETRIES": "3", "DEBUG": "true"}


@pytest.mark.parametrize(
    ("function_yaml", "message"),
    [
        ("  fn:\n    lang: python3-http\n    handler: ./fn\n    enviroment: {}\n", "unknown key"),
        (
            "  fn:\n    lang: python3-http\n    handler: ./fn\n    labels:\n"
            "      com.openfaas.scale.zero: true\n",
            "quoted string",
        ),
        (
            "  fn:\n    lang: python3-http\n    handler: ./fn\n    labels:\n"
            "      com.openfaas.scale.zero-duration: 5 minutes\n",
            "invalid duration",
        ),
        ("  fn:\n    lang: node18\n    handler: ./fn\n", "cannot run locally"),
        ("  fn:\n    lang: python3-http\n    handler: ./missing\n", "handler.py not found"),
        ("  Fn_1:\n    lang: python3-http\n    handler: ./fn\n", "lowercase"),
        ("  fn:\n    lang: python3-http\n", "'handler' is required"),
        ("  fn:\n    lang: python3-http\n    handler: ./fn\n    secrets: auth-keys\n", "list of names"),
        (
            "  fn:\n    lang: python3-http\n    handler: ./fn\n    environment:\n      exec_timeout: soon\n",
            "invalid duration",
        ),
    ],
)
def test_mistakes_are_refused_with_a_message_naming_the_function(tmp_path, function_yaml, message):
    with pytest.raises(StackError, match=message) as caught:
        _stack(tmp_path, function_yaml)

    assert "function" in str(caught.value)


def test_a_file_that_is_not_an_openfaas_stack_is_refused(tmp_path):
    path = tmp_path / "stack.yml"
    path.write_text("provider:\n  name: knative\nfunctions: {}\n")

    with pytest.raises(StackError, match="provider.name"):
        load_stack(path)


def test_a_missing_stack_file_says_which(tmp_path):
    with pytest.raises(StackError, match="cannot read stack file"):
        load_stack(tmp_path / "nope.yml")


def test_faas_cli_substitutions_take_their_defaults_and_one_without_a_default_is_named(tmp_path):
    # stack.yml names the stage, registry and tag as ${NAME:-default}, which faas-cli fills from its shell
    from finfaas_dev.stackfile import StackError, with_defaults

    stack = load_stack(REPOSITORY_ROOT / "stack.yml")
    assert stack.functions["ledger"].environment["FINFAAS_STAGE"] == "local"
    assert stack.functions["ledger"].image == "finfaas/ledger:0.1.0"
    with pytest.raises(StackError, match=r"\$\{STAGE\} needs a default"):
        with_defaults("environment:\n  FINFAAS_STAGE: ${STAGE}\n", tmp_path / "stack.yml")
