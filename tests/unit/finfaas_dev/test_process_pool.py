"""What a function process is given: its stack environment, the runtime's endpoints, nothing else."""

from __future__ import annotations

from pathlib import Path

from finfaas_dev.process_pool import FunctionPool, function_environment
from finfaas_dev.stackfile import FunctionSpec


def _spec(**overrides) -> FunctionSpec:
    fields = {"name": "payments", "lang": "python3-http", "handler_dir": Path("/nowhere"), "image": "x"}
    return FunctionSpec(**{**fields, **overrides})


def test_stack_environment_is_passed_and_the_runtime_stage_and_endpoints_win():
    spec = _spec(environment={"FINFAAS_STAGE": "local", "exec_timeout": "15s"})
    parent = {
        "PATH": "/usr/bin",
        "FINFAAS_STAGE": "t1234",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "GITHUB_TOKEN": "ghp_secret",
        "HOME": "/root",
    }

    env = function_environment(spec, parent)

    assert env["FINFAAS_STAGE"] == "t1234"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["exec_timeout"] == "15s"
    assert env["PATH"] == "/usr/bin"
    assert env["HOSTNAME"] == "payments"
    assert "GITHUB_TOKEN" not in env  # the developer's shell does not leak into functions


def test_a_local_process_imports_finfaas_as_the_gateway_does_not_from_the_image_path():
    spec = _spec(environment={"PYTHONPATH": "/home/app/function/shared"})

    assert function_environment(spec, {"PYTHONPATH": "/work/shared"})["PYTHONPATH"] == "/work/shared"
    assert "PYTHONPATH" not in function_environment(spec, {})


def test_idle_override_applies_only_to_functions_that_scale_to_zero():
    specs = {
        "lazy": _spec(
            name="lazy", labels={"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "5m"}
        ),
        "warm": _spec(name="warm"),
    }

    default = FunctionPool(specs, {})
    overridden = FunctionPool(specs, {}, idle_seconds_override=2.0)

    assert default.get("lazy").idle_seconds_before_stop == 300
    assert overridden.get("lazy").idle_seconds_before_stop == 2.0
    assert overridden.get("warm").idle_seconds_before_stop is None
