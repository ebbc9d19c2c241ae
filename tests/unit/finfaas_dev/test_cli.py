"""The `finfaas` command line: every command resolves to a module that can run it."""

from __future__ import annotations

import importlib

import pytest
from finfaas_dev import cli


@pytest.mark.parametrize("words", sorted(cli.COMMANDS), ids=" ".join)
def test_every_command_module_adds_its_options_and_runs(words):
    module = importlib.import_module(cli.COMMANDS[words][0])
    assert callable(module.add_arguments) and callable(module.run)


@pytest.mark.parametrize("words", sorted(cli.COMMANDS), ids=" ".join)
def test_help_of_every_command_exits_cleanly(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: finfaas " + " ".join(words) in capsys.readouterr().out


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
