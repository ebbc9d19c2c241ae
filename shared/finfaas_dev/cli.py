"""The `finfaas` command line: each command lives in its own module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

# command words -> module with add_arguments(parser) and run(args) -> int exit code
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("up",): ("finfaas_dev.up", "run the embedded suite: emulators, infra, gateway, functions"),
    ("tools", "install"): ("finfaas_dev.tools", "install Java, DynamoDB Local and the npm tools"),
    ("emulators",): ("finfaas_dev.emulators", "run only the embedded AWS emulators"),
    ("infra", "deploy"): ("finfaas_dev.infra", "deploy infra/template.yaml to the configured endpoints"),
    ("gateway",): ("finfaas_dev.gateway", "run only the local gateway (emulators must be up)"),
    ("bench", "coldstart"): ("finfaas_dev.bench.coldstart", "cold start and idle RSS per function"),
    ("bench", "gateway"): ("finfaas_dev.bench.gateway", "gateway throughput against direct calls"),
    ("bench", "ledger"): ("finfaas_dev.bench.ledger", "ledger transfers/s against raw transactions"),
    ("bench", "transfers"): ("finfaas_dev.bench.transfers", "transfer saga throughput and latency"),
    ("bench", "recovery"): ("finfaas_dev.bench.recovery", "orchestrator killed mid-saga: time to next step"),
    ("bench", "payments"): ("finfaas_dev.bench.payments", "captures/s against raw ledger work"),
    ("bench", "loans"): ("finfaas_dev.bench.loans", "loan quotes (pure), repayments/s, the nightly job"),
    ("bench", "map"): ("finfaas_dev.bench.map", "a paged Map of 20,000 items: items/s, writes, resume"),
    ("bench", "wealth"): ("finfaas_dev.bench.wealth", "the daily batch's income; --orders: orders/s"),
    ("ledger", "check"): ("finfaas_dev.ledger_check", "reconcile balances, entries and transfers"),
    ("loans", "check"): ("finfaas_dev.loans_check", "replay every loan and reconcile it with the ledger"),
    ("payments", "check"): ("finfaas_dev.payments_check", "reconcile merchant settlements with the ledger"),
    ("wealth", "check"): ("finfaas_dev.wealth", "wealth: income conserved per day, positions = ledger"),
    ("audit", "verify"): ("finfaas_dev.audit_verify", "verify the audit log's hash chain"),
    ("executions",): ("finfaas_dev.executions", "list or describe orchestrator executions"),
    ("transfers",): ("finfaas_dev.transfers", "list a customer's transfers, or the operators' view"),
    ("business-date",): ("finfaas_dev.business_date", "show or advance the business date (manual mode)"),
    ("build",): ("finfaas_dev.build", "from stack.yml: --knative --shrinkwrap --template --report"),
    ("secrets", "create"): ("finfaas_dev.cluster_secrets",
                            "every secret stack.yml names, and how to load them"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finfaas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, (module_name, help_text) in COMMANDS.items():
        if len(words) == 1:
            cmd = sub.add_parser(words[0], help=help_text)
        else:
            if words[0] not in groups:
                group = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(dest="subcommand", required=True)
            cmd = groups[words[0]].add_parser(words[1], help=help_text)
        cmd.set_defaults(_module=module_name)
    return parser


def _command_module(argv: list[str]) -> str | None:
    """The module of the command named by argv's leading words, found without parsing options,
    so that `finfaas CMD --help` can list the options the command's module adds."""
    words = []
    for arg in argv:
        if arg.startswith("-"):
            break
        words.append(arg)
    for length in (2, 1):
        entry = COMMANDS.get(tuple(words[:length]))
        if entry:
            return entry[0]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    module_name = _command_module(argv)
    module = None
    if module_name is not None:
        module = importlib.import_module(module_name)
        _attach(parser, module_name, module)
    args = parser.parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


def _attach(parser: argparse.ArgumentParser, module_name: str, module) -> None:
    for action in parser._subparsers._group_actions:  # noqa: SLF001 - argparse has no public walk
        for sub in action.choices.values():
            if sub.get_default("_module") == module_name:
                module.add_arguments(sub)
            elif sub._subparsers is not None:  # noqa: SLF001
                _attach(sub, module_name, module)


if __name__ == "__main__":
    sys.exit(main())
