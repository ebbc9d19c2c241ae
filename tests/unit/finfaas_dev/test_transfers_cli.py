"""`finfaas transfers list`: what a customer and an operator read, with the requests going to the transfers
function's own handler instead of the gateway."""

from __future__ import annotations

import argparse

from finfaas.services.transfers.model import TransferStatus
from finfaas_dev import transfers as cli
from finfaas_dev.cli import _command_module
from finfaas_dev.testing.platform import call
from unit.services.transfers.test_transfer_lists import ADA, BOB, World

FUNCTION_PREFIX = "/function/transfers"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def _fetch(world: World, token: str):
    def fetch(path: str, query: list[tuple[str, str]]):
        assert path.startswith(FUNCTION_PREFIX)
        grouped: dict[str, list[str]] = {}
        for name, value in query:
            grouped.setdefault(name, []).append(value)
        route = path.removeprefix(FUNCTION_PREFIX)
        reply = call(world.handler.handle, "GET", route, token=token, query=grouped)
        return reply.status, reply.json()
    return fetch


def test_the_command_is_registered():
    assert _command_module(["transfers", "list"]) == "finfaas_dev.transfers"


def test_a_customer_lists_their_transfers_newest_first_across_pages():
    world = World()
    for minutes in range(3):
        world.order(ADA, minutes, TransferStatus.COMPLETED)
    world.order(ADA, 9, TransferStatus.FAILED)
    world.order(BOB, 5, TransferStatus.COMPLETED)
    token = world.tokens.mint(ADA, ["transfers:read"])
    lines: list[str] = []

    code = cli.run(_parse("list", "--status", "COMPLETED", "--limit", "2", "--all"), _fetch(world, token),
                   lines.append)

    assert code == cli.EXIT_OK
    assert lines[0].split() == ["TRANSFER", "STATUS", "AMOUNT", "DEBIT", "PAYEE", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == ["tr_cust-ada_2", "tr_cust-ada_1", "tr_cust-ada_0"]
    assert lines[1].split()[1:4] == ["COMPLETED", "10.00", "USD"]


def test_an_operator_reads_the_counts_then_the_transfers_waiting_oldest_first():
    world = World()
    world.order(ADA, 7, TransferStatus.AWAITING_REVIEW)
    world.order(BOB, 3, TransferStatus.AWAITING_REVIEW)
    world.order(BOB, 4, TransferStatus.NEEDS_ATTENTION)
    world.order(ADA, 1, TransferStatus.PROCESSING)
    token = world.tokens.mint("ops-1", ["ops", "ops:act"], kind="client")
    lines: list[str] = []

    args = _parse("list", "--ops", "--in-flight-older-than-s", "60")
    code = cli.run(args, _fetch(world, token), lines.append)

    assert code == cli.EXIT_OK
    text = "\n".join(lines)
    assert "AWAITING_REVIEW 2" in lines[0] and "NEEDS_ATTENTION 1" in lines[0] and "PROCESSING 1" in lines[0]
    assert "in flight for longer than 60 s: 1" in lines[1]
    review = text.split("AWAITING_REVIEW (oldest first)")[1].split("NEEDS_ATTENTION (oldest first)")[0]
    assert [line.split()[:2] for line in review.strip().splitlines()[1:]] == [
        ["tr_cust-bob_3", BOB], ["tr_cust-ada_7", ADA]]


def test_a_refused_filter_exits_non_zero_naming_the_field(capsys):
    world = World()
    token = world.tokens.mint(ADA, ["transfers:read"])

    code = cli.run(_parse("list", "--created-after", "yesterday"), _fetch(world, token), lambda line: None)

    assert code == cli.EXIT_REFUSED
    assert "created_after" in capsys.readouterr().err
