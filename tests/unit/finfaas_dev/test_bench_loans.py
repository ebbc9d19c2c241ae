"""`finfaas bench loans` measures pure code in process and prints its figures as JSON on its last line."""

from __future__ import annotations

import json

from finfaas_dev import cli


def test_the_pure_loan_figures_are_on_the_last_line(capsys):
    assert cli.main(["bench", "loans", "--runs", "1", "--loans", "0", "--repayment-clients", "0"]) == 0

    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert figures["term_months"] == 360 and figures["runs"] == 1
    assert min(figures["quote_us"], figures["replay_us"], figures["close_of_business_us"]) > 0


def test_quote_only_measures_only_the_quote(capsys):
    assert cli.main(["bench", "loans", "--runs", "2", "--quote-only", "--loans", "0"]) == 0

    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert set(figures) == {"term_months", "runs", "quote_us"}


def test_runs_are_bounded(capsys):
    assert cli.main(["bench", "loans", "--runs", "0"]) == 2
    assert "--runs" in capsys.readouterr().err
    assert cli.main(["bench", "loans", "--repayment-clients", "33"]) == 2
    assert "--repayment-clients" in capsys.readouterr().err
