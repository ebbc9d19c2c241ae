"""Lists of transfers and the risk thresholds of a stage, through the gateway and every function of the
saga as a process, on the embedded emulators: a customer lists, pages and filters their transfers; an
operator sees the one a stage's lowered velocity threshold sent for review (of three sent at once, each
counted once), in the list and the counts, and reads the thresholds in effect; `finfaas transfers list`
shows both."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
from finfaas_dev import transfers as transfers_cli
from finfaas_dev.bench.transfers import (
    Customer,
    _request,
    client_token,
    open_customers,
    stack_text,
    write_suite_secrets,
)
from finfaas_dev.net import free_port, wait_for
from support.gateway_harness import http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GATEWAY_READY_SECONDS_MAX = 30
SAGA_SECONDS_MAX = 60
STOP_SECONDS_MAX = 20
FINAL = ("COMPLETED", "FAILED", "COMPENSATED")
# This stage sends a customer's 3rd transfer in an hour to an operator (the product's default: the 10th).
VELOCITY_FLAG = 3
RISK_STACK_ENVIRONMENT = f'      RISK_HOURLY_TRANSFERS_FLAG: "{VELOCITY_FLAG}"\n'
AMOUNTS = (100, 200, 300)


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    """The gateway with every function of the saga, the risk function on this stage's thresholds."""
    folder = tmp_path_factory.mktemp("lists-e2e")
    write_suite_secrets(Path(os.environ["FINFAAS_SECRETS_DIR"]))
    risk_entry = "    image: bench/risk\n    environment:\n"
    stack = stack_text()
    assert risk_entry in stack
    (folder / "stack.yml").write_text(stack.replace(risk_entry, risk_entry + RISK_STACK_ENVIRONMENT))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **embedded_aws.env(),
        "FINFAAS_GATEWAY_URL": base_url,
        "FINFAAS_JWKS_URL": f"{base_url}/function/auth/.well-known/jwks.json",
    }
    log = (folder / "gateway.log").open("wb")
    command = [sys.executable, "-m", "finfaas_dev.gateway", "--stack", str(folder / "stack.yml"),
               "--port", str(port), "--logs-dir", str(folder / "functions")]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: _answers(base_url + "/healthz"), GATEWAY_READY_SECONDS_MAX, "the gateway")
        yield base_url
    finally:
        process.terminate()
        process.wait(STOP_SECONDS_MAX)
        log.close()


def _answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=1).status == 200
    except OSError:
        return False


def _send(base_url: str, sender: Customer, payee: Customer, amount: int) -> str:
    body = {"debit_account_id": sender.account_id, "credit_account_id": payee.account_id, "amount": amount,
            "currency": "USD"}
    status, answer = _request("POST", f"{base_url}/function/transfers/transfers", sender.token, body,
                              {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 202, answer
    return answer["transfer_id"]


def _settled(base_url: str, customer: Customer, transfer_id: str) -> dict:
    """The transfer once final, or once it waits for an operator."""
    def view() -> dict | None:
        status, found = _request("GET", f"{base_url}/function/transfers/transfers/{transfer_id}?wait=5",
                                 customer.token)
        assert status == 200, found
        return found if found["status"] in FINAL or found["decision_pending"] else None

    return wait_for(view, SAGA_SECONDS_MAX, f"transfer {transfer_id} to settle")


def _list(base_url: str, token: str, path: str = "/transfers", **query) -> dict:
    pairs = [(k, v) for k, values in query.items()
             for v in (values if isinstance(values, list) else [values])]
    status, page = _request("GET", f"{base_url}/function/transfers{path}?{urlencode(pairs)}", token)
    assert status == 200, page
    return page


def _refusal(url: str, token: str) -> dict:
    """A 422 problem+json, whole."""
    reply = http("GET", url, headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 422, reply.body
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    return json.loads(reply.body)


@pytest.fixture(scope="module")
def made(suite):
    """Three transfers of one customer to another, sent at once, in the order they were created; the one
    risk counts third goes to an operator on this stage."""
    sender, payee = open_customers(2, secrets.token_hex(3))
    # Risk started and its table read first: three screenings sharing its cold start can outlast the
    # transfers function's 3 s risk timeout, and a screening it gave up on goes on degraded.
    assert http("GET", f"{suite}/function/risk/_/ready", timeout=GATEWAY_READY_SECONDS_MAX).status == 200
    with ThreadPoolExecutor(len(AMOUNTS)) as pool:
        sent = list(pool.map(lambda amount: _send(suite, sender, payee, amount), AMOUNTS))
        views = list(pool.map(lambda transfer_id: _settled(suite, sender, transfer_id), sent))
    views.sort(key=lambda v: v["created_at"])
    assert len({v["created_at"] for v in views}) == len(AMOUNTS), views
    return sender, payee, [v["transfer_id"] for v in views], views


def _held(views: list[dict]) -> str:
    """The one transfer waiting for an operator."""
    (held,) = [v["transfer_id"] for v in views if v["status"] == "AWAITING_REVIEW"]
    return held


def _velocity_count(suite: str, transfer_id: str) -> int:
    """The count of the customer's hour risk judged the transfer on, from its recorded assessment."""
    status, assessment = _request("GET", f"{suite}/function/risk/assessments/{transfer_id}",
                                  client_token("risk:read"))
    assert status == 200, assessment
    detail = next(f["detail"] for f in assessment["findings"] if f["rule"] == "velocity_count")
    return int(detail.split()[0])


def test_transfers_sent_at_once_are_each_counted_and_the_third_goes_to_an_operator(suite, made):
    _, _, ids, views = made

    assert sorted(v["status"] for v in views) == ["AWAITING_REVIEW", "COMPLETED", "COMPLETED"], [
        (v["status"], v["screening"]) for v in views]
    held = _held(views)
    assert "velocity_count" in next(v for v in views if v["transfer_id"] == held)["screening"]["reasons"]
    counts = {transfer_id: _velocity_count(suite, transfer_id) for transfer_id in ids}
    assert sorted(counts.values()) == [1, 2, 3] and counts[held] == VELOCITY_FLAG
    status, rules = _request("GET", f"{suite}/function/risk/_/ops/risk/rules", client_token("ops", "ops:act"))
    assert status == 200, rules
    velocity = next(r for r in rules["rules"] if r["rule"] == "velocity_count")
    flag = next(t for t in velocity["thresholds"] if t["name"] == "hourly_transfers_flag")
    assert flag == {"name": "hourly_transfers_flag", "value": VELOCITY_FLAG, "default": 10,
                    "setting": "RISK_HOURLY_TRANSFERS_FLAG"}


def test_a_customer_lists_pages_and_filters_their_own_transfers(suite, made):
    sender, payee, ids, views = made
    newest_first = list(reversed(ids))

    first = _list(suite, sender.token, limit="2")
    second = _list(suite, sender.token, limit="2", starting_after=first["next_cursor"])

    assert [t["transfer_id"] for t in first["data"]] == newest_first[:2] and first["has_more"]
    assert [t["transfer_id"] for t in second["data"]] == newest_first[2:] and not second["has_more"]
    completed = _list(suite, sender.token, status="COMPLETED")
    assert [t["transfer_id"] for t in completed["data"]] == [i for i in newest_first if i != _held(views)]
    by_account = _list(suite, sender.token, account=sender.account_id)
    assert [t["transfer_id"] for t in by_account["data"]] == newest_first
    window = _list(suite, sender.token, created_after=views[0]["created_at"],
                   created_before=views[2]["created_at"])
    assert [t["transfer_id"] for t in window["data"]] == [ids[1]]
    assert _list(suite, payee.token)["data"] == []  # the payee made none of them
    bad_status = _refusal(f"{suite}/function/transfers/transfers?status=SETTLED", sender.token)
    assert [e["field"] for e in bad_status["errors"]] == ["status.0"]
    query = urlencode({"starting_after": first["next_cursor"]})
    assert _refusal(f"{suite}/function/transfers/transfers?{query}", payee.token)["code"] == "invalid_cursor"


def test_an_operator_lists_and_counts_what_waits_for_a_decision_until_it_is_decided(suite, made):
    sender, _, _, views = made
    ops = client_token("ops", "ops:act")
    held = _held(views)

    waiting = _list(suite, ops, "/_/ops/transfers", status="AWAITING_REVIEW", limit="100")
    summary = _list(suite, ops, "/_/ops/transfers/summary", in_flight_older_than_s="0")

    assert {(t["transfer_id"], t["owner_id"]) for t in waiting["data"]} >= {(held, sender.customer_id)}
    assert summary["counts"]["AWAITING_REVIEW"] >= 1 and summary["complete"] is True
    lines: list[str] = []
    args = argparse.Namespace(ops=True, token=ops, gateway=suite, status=["AWAITING_REVIEW"], account=None,
                              created_after=None, created_before=None, limit=100, all=True,
                              in_flight_older_than_s=60, json=False)
    assert transfers_cli.run(args, out=lines.append) == transfers_cli.EXIT_OK
    assert any(line.startswith(held) and sender.customer_id in line for line in lines)

    status, _ = _request("POST", f"{suite}/function/transfers/_/ops/transfers/{held}/decision", ops,
                         {"decision": "reject", "note": "test over"},
                         {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 200
    assert _settled(suite, sender, held)["status"] == "FAILED"
    after = _list(suite, ops, "/_/ops/transfers", status="AWAITING_REVIEW", limit="100")
    assert held not in {t["transfer_id"] for t in after["data"]}


def test_the_cli_lists_a_customers_transfers_through_the_gateway(suite, made):
    sender, _, ids, _ = made
    lines: list[str] = []
    args = argparse.Namespace(ops=False, token=sender.token, gateway=suite, status=None, account=None,
                              created_after=None, created_before=None, limit=2, all=True,
                              in_flight_older_than_s=60, json=False)

    assert transfers_cli.run(args, out=lines.append) == transfers_cli.EXIT_OK
    assert [line.split()[0] for line in lines[1:]] == list(reversed(ids))
