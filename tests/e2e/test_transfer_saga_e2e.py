"""The transfer saga with every part as a process: gateway, queue connector, orchestrator, transfers, risk,
ledger, rail and auth, on the embedded emulators. What the in-process tests simulate runs for real here:
SQS wake-ups, the rail's queue hand-off and settlement timer, the signed notice through the gateway,
the reviews queue and an operator's decision, and the recall after a rail timeout."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from finfaas.platform.crashpoints import CRASH_ARM_DIR_ENV, arm
from finfaas.services.transfers.service import DECISION_REPORTED_CRASH_POINT
from finfaas.services.transfers.watcher import watch_tick_seconds as WATCH_TICK_SECONDS
from finfaas_dev.bench.recovery import history_times, kill_orchestrator, recovery_seconds
from finfaas_dev.bench.suite import FUNCTIONS_DIR
from finfaas_dev.bench.transfers import (
    Customer,
    Outcome,
    _request,
    breakdown_ms,
    client_token,
    open_customers,
    stack_text,
)
from finfaas_dev.net import wait_for
from finfaas_dev.testing.platform import REPOSITORY_ROOT
from support.gateway_harness import suite_gateway
from support.ledger_testing import finfaas_ledger_check

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# The test copy of the saga waits this long for the rail (300 in the real one): the sandbox settles after
# 1 s, and its notice crosses two queues and three processes: 4 s left too little room on 2 loaded cores.
RAIL_TIMEOUT_SECONDS = 10
SAGA_SECONDS_MAX = 60
FINAL = ("COMPLETED", "FAILED", "COMPENSATED")
# Status requests waiting at once on one transfers process, on HELD_TRANSFERS transfers held for review.
STATUS_WAITERS = 200
HELD_TRANSFERS = 4
STATUS_WAITER_SECONDS_MAX = 45  # a ?wait=30 request, and the gateway's 45 s for the transfers function
RECOVERY_SECONDS_MAX = 10  # a saga whose orchestrator process died takes its next step within this
KEY_FREE_SECONDS_MAX = 10  # the Idempotency-Key of a request whose process died is free within this
RETRIES_MAX = 20
# A saga takes well under a second here; with waiters holding every request thread it took ~10 s.
SAGA_AMONG_WAITERS_SECONDS_MAX = 4.0
# Scanning every table of the emulator for personal data: bounded, though a run holds a few thousand items.
SCAN_PAGES_MAX = 200
TABLES_MAX = 100
# The accounts function joins the saga's suite for the personal-data test (a customer's profile).
ACCOUNTS_STACK_ENTRY = f"""  accounts:
    lang: python3-http
    handler: {FUNCTIONS_DIR / "accounts"}
    image: bench/accounts
    environment:
      exec_timeout: "30s"
"""


def _crash_dir(folder: Path) -> Path:
    """Where a test arms a function's crash point (finfaas.platform.crashpoints)."""
    crash_dir = folder / "crash"
    crash_dir.mkdir(exist_ok=True)
    return crash_dir


def _short_rail_timeout(folder: Path) -> Path:
    definition = json.loads((REPOSITORY_ROOT / "infra/statemachines/transfer.asl.json").read_text())
    definition["States"]["HandOffToRail"]["TimeoutSeconds"] = RAIL_TIMEOUT_SECONDS
    (folder / "transfer.asl.json").write_text(json.dumps(definition))
    return folder


# When this module's suite started: the transfer sagas it waits for began after it.
SUITE_STARTED_MS: list[int] = []
RUNNING_LISTED_MAX = 500


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    """The suite's folder: its stack, and the gateway's and every function's log."""
    return tmp_path_factory.mktemp("saga-e2e")


@pytest.fixture(scope="module")
def suite(embedded_aws, suite_dir):
    """The gateway with every function of the saga, and its base URL."""
    SUITE_STARTED_MS.append(int(time.time() * 1000))
    env = {
        **embedded_aws.env(),
        "FINFAAS_STATEMACHINES_DIR": str(_short_rail_timeout(suite_dir)),
        "RAIL_SANDBOX_SETTLE_SECONDS": "1",
        CRASH_ARM_DIR_ENV: str(_crash_dir(suite_dir)),
    }
    with suite_gateway(suite_dir, stack_text() + ACCOUNTS_STACK_ENTRY, env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def customers(suite) -> list[Customer]:
    return open_customers(4, secrets.token_hex(3))


def _send(base_url: str, sender: Customer, body: dict) -> str:
    status, answer = _request(
        "POST",
        f"{base_url}/function/transfers/transfers",
        sender.token,
        {"debit_account_id": sender.account_id, "currency": "USD", **body},
        {"Idempotency-Key": secrets.token_hex(8)},
    )
    assert status == 202, answer
    return answer["transfer_id"]


def _view(base_url: str, customer: Customer, transfer_id: str, wait: int = 5) -> dict:
    status, view = _request(
        "GET", f"{base_url}/function/transfers/transfers/{transfer_id}?wait={wait}", customer.token
    )
    assert status == 200, view
    return view


def _final(base_url: str, customer: Customer, transfer_id: str) -> dict:
    return wait_for(
        lambda: (v := _view(base_url, customer, transfer_id)) and v["status"] in FINAL and v,
        SAGA_SECONDS_MAX,
        f"transfer {transfer_id} to end",
    )


def test_an_internal_transfer_completes_through_queues_and_functions(suite, customers):
    alice, bob = customers[0], customers[1]

    transfer_id = _send(suite, alice, {"credit_account_id": bob.account_id, "amount": 1_250})

    view = _final(suite, alice, transfer_id)
    assert view["status"] == "COMPLETED"
    assert [s["name"] for s in view["steps"]] == ["accept", "validate", "screen", "completed"]
    # risk's own rules decided, in the transfers process, and risk's table holds the decision the order shows
    screen = view["steps"][2]
    status, assessment = _request("GET", f"{suite}/function/risk/assessments/{transfer_id}",
                                  client_token("risk:read"))
    assert status == 200, assessment
    assert (assessment["decision"], screen["outcome"]) == ("approve", "approve")
    assert "risk_unavailable" not in screen["detail"]


def test_the_history_times_each_task_call_and_the_function_behind_the_gateway(suite, customers):
    sender, payee = customers[1], customers[0]
    sent_at = time.time()
    transfer_id = _send(suite, sender, {"credit_account_id": payee.account_id, "amount": 300})
    assert _final(suite, sender, transfer_id)["status"] == "COMPLETED"
    reader = client_token("orchestrator:read")

    path = f"/function/orchestrator/executions/transfer:{transfer_id}/history?limit=200"
    status, page = _request("GET", suite + path, reader)

    assert status == 200, page
    timed = [e["detail"] for e in page["data"] if e["type"] == "TaskSucceeded"]
    assert len(timed) == 4  # validate (with the risk screening), reserve, post, complete
    assert all(0 < detail["function_ms"] <= detail["call_ms"] for detail in timed)
    breakdown = breakdown_ms(suite, reader, [Outcome(transfer_id, "COMPLETED", 0.0, sent_at, 1)])
    assert breakdown["task_calls"] == pytest.approx(sum(d["call_ms"] for d in timed), abs=0.1)
    assert breakdown["task_calls_at_gateway"] == pytest.approx(sum(d["function_ms"] for d in timed), abs=0.1)


def test_the_rail_settles_through_its_queue_and_signed_notice(suite, customers):
    creditor = {"bank_code": "BANKGB22", "account_number": "12345678", "name": "Carol"}

    view = _final(suite, customers[0], _send(suite, customers[0], {"creditor": creditor, "amount": 700}))

    assert view["status"] == "COMPLETED"


def _every_item_of_every_table() -> str:
    """Every item of every table the emulator holds, as DynamoDB returns them (around the app's code)."""
    from finfaas_dev.awsclients import client as aws_client

    dynamodb = aws_client("dynamodb")
    names = dynamodb.list_tables(Limit=TABLES_MAX)["TableNames"]
    assert 0 < len(names) < TABLES_MAX
    texts = []
    for name in names:
        start: dict = {}
        for _ in range(SCAN_PAGES_MAX):
            page = dynamodb.scan(TableName=name, ConsistentRead=True, **start)
            texts.append(json.dumps(page["Items"]))
            if "LastEvaluatedKey" not in page:
                break
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
        else:
            pytest.fail(f"table {name} has more than {SCAN_PAGES_MAX} pages")
    return "\n".join(texts)


def _every_log(folder: Path) -> str:
    logs = sorted(folder.rglob("*.log"))
    assert any(log.name == "rail.log" for log in logs) and any(log.name == "accounts.log" for log in logs)
    return "\n".join(log.read_text(errors="replace") for log in logs)


def _profile_token(customer: Customer) -> str:
    """The customer's record in the customers table, and a token that may write their profile."""
    from finfaas.platform import config
    from finfaas.platform.keys import load_keyring
    from finfaas.services.customers.model import Credentials, CustomerRecord
    from finfaas.store.customers_store import CustomersStore
    from finfaas_dev.testing.platform import TokenMinter

    username = f"user-{customer.customer_id}"
    created = CustomersStore().create(CustomerRecord(customer.customer_id, username, int(time.time())),
                                      Credentials(username, customer.customer_id, "$argon2id$unused"))
    assert created
    settings = config.auth_settings()
    return TokenMinter(load_keyring(), settings.issuer, settings.audience).mint(
        customer.customer_id, ("accounts:read", "accounts:write"), kind="customer")


def transfer_sagas_running(store) -> bool:
    """Whether a transfer saga this module's suite started still runs: other suites of the session share
    the stage and may leave executions running (a transfer left waiting for a review), which are not this
    module's to wait for."""
    from finfaas.workflow.model import Status

    running = store.list(Status.RUNNING, RUNNING_LISTED_MAX, state_machine="transfer").executions
    return any(execution.started_at_ms >= SUITE_STARTED_MS[0] for execution in running)


def test_no_table_and_no_log_holds_a_payee_or_a_profile_in_the_clear(suite, suite_dir, embedded_aws):
    # GIVEN a customer with a profile, paying a payee at another bank (values found nowhere else)
    (sender,) = open_customers(1, secrets.token_hex(3))
    tag = secrets.token_hex(4)
    account_number = f"4{secrets.randbelow(10**10):010d}7"
    payee_name = f"Zephyrine Quillfeather{tag}"
    profile = {"name": f"Ottoline Brackenbury{tag}", "national_id": f"OB-{tag}", "phone": "+1 (202) 555-0199"}
    status, _ = _request("POST", f"{suite}/function/accounts/customers/me", _profile_token(sender), profile)
    assert status == 200

    # WHEN the transfer runs through the rail to the end
    creditor = {"bank_code": "BANKFR33", "account_number": account_number, "name": payee_name}
    transfer_id = _send(suite, sender, {"creditor": creditor, "amount": 650})
    view = _final(suite, sender, transfer_id)
    from finfaas.store.executions_store import ExecutionsStore

    wait_for(lambda: not transfer_sagas_running(ExecutionsStore()), SAGA_SECONDS_MAX,
             "every transfer saga to end")

    # THEN it paid, the customer sees the payee masked, and no table or log holds the clear values
    assert view["status"] == "COMPLETED"
    masked = {"bank_code": "BANKFR33", "account_number_masked": "****" + account_number[-4:]}
    assert view["creditor"] == masked
    clear = (account_number, f"Quillfeather{tag}", f"Brackenbury{tag}", f"OB-{tag}", f"OB{tag}".upper(),
             "555-0199", "12025550199")
    tables, logs = _every_item_of_every_table(), _every_log(suite_dir)
    assert transfer_id in tables and "BANKFR33" in tables  # the scan did see this transfer
    assert [value for value in clear if value.lower() in tables.lower()] == []
    assert [value for value in clear if value.lower() in logs.lower()] == []


def test_a_rail_that_never_answers_is_recalled_and_the_hold_voided(suite, customers):
    stuck = {"bank_code": "BANKGB22", "account_number": "99990003", "name": "Dave"}

    view = _final(suite, customers[2], _send(suite, customers[2], {"creditor": stuck, "amount": 900}))

    assert view["status"] == "COMPENSATED"
    assert view["failure"]["code"] == "not_settled"


def test_a_large_transfer_waits_for_an_operator_on_the_reviews_queue(suite, customers):
    sender, payee = customers[3], customers[1]
    ops = client_token("ops", "ops:act")
    _request(
        "PUT",
        f"{suite}/function/transfers/_/ops/customers/{sender.customer_id}/tier",
        ops,
        {"tier": "PREMIUM"},
    )
    transfer_id = _send(suite, sender, {"credit_account_id": payee.account_id, "amount": 1_500_000})

    waiting = wait_for(
        lambda: _view(suite, sender, transfer_id, wait=1)["decision_pending"] == "review",
        SAGA_SECONDS_MAX,
        "the review request",
    )
    status, _ = _request(
        "POST",
        f"{suite}/function/transfers/_/ops/transfers/{transfer_id}/decision",
        ops,
        {"decision": "approve", "note": "called the customer"},
        {"Idempotency-Key": secrets.token_hex(8)},
    )

    assert waiting and status == 200
    assert _final(suite, sender, transfer_id)["status"] == "COMPLETED"


def _held_for_review(base_url: str, sender: Customer, payee: Customer, ops: str) -> str:
    """A transfer that stays AWAITING_REVIEW until an operator decides."""
    _request(
        "PUT",
        f"{base_url}/function/transfers/_/ops/customers/{sender.customer_id}/tier",
        ops,
        {"tier": "PREMIUM"},
    )
    transfer_id = _send(base_url, sender, {"credit_account_id": payee.account_id, "amount": 1_500_000})
    wait_for(
        lambda: _view(base_url, sender, transfer_id, wait=1)["decision_pending"] == "review",
        SAGA_SECONDS_MAX,
        "the review request",
    )
    return transfer_id


async def _wait_all(urls: list[tuple[str, str]]) -> list[tuple[int, dict]]:
    """Every GET at once, each on its own connection: as many apps, each waiting on its transfer."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=STATUS_WAITER_SECONDS_MAX)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def one(url: str, token: str) -> tuple[int, dict]:
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as reply:
                return reply.status, await reply.json(content_type=None)

        return await asyncio.gather(*(one(url, token) for url, token in urls))


def _transfers_stats(base_url: str, ops: str) -> dict:
    status, stats = _request("GET", f"{base_url}/function/transfers/_/ops/stats", ops)
    assert status == 200, stats
    return stats


def _orders_reads(stats: dict) -> int:
    """GetItem and BatchGetItem calls the transfers process made on its orders table."""
    return sum(n for name, n in stats["dynamodb_calls"].items()
               if name.split(" ")[0] in ("GetItem", "BatchGetItem") and "transferorders" in name)


def _transfers_process_memory() -> str:
    """RSS and threads of this suite's transfers process, for the log (-s)."""
    marker = str(FUNCTIONS_DIR / "transfers").encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes():
                fields = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines())
                rss, threads = fields["VmRSS"].strip(), fields["Threads"].strip()
                return f"transfers process {proc.name}: {rss} resident, {threads} threads"
        except OSError:
            continue
    return "transfers process not found"


def test_200_status_requests_wait_on_one_process_while_the_saga_runs_and_reads_stay_per_tick(suite):
    # GIVEN transfers held for review, the whole saga warm, and 200 clients asking at once to wait 30 s
    # for a final status, more than the template's request threads many times over
    ops = client_token("ops", "ops:act")
    people = open_customers(HELD_TRANSFERS + 1, secrets.token_hex(3))
    payee = people[-1]
    held = [(sender, _held_for_review(suite, sender, payee, ops)) for sender in people[:-1]]
    warm = _send(suite, payee, {"credit_account_id": people[0].account_id, "amount": 100})
    assert _final(suite, payee, warm)["status"] == "COMPLETED"
    urls = [
        (f"{suite}/function/transfers/transfers/{transfer_id}?wait=30", sender.token)
        for n in range(STATUS_WAITERS)
        for sender, transfer_id in [held[n % HELD_TRANSFERS]]
    ]
    print("before the waiters:", _transfers_process_memory())
    results: list = []
    clients = threading.Thread(target=lambda: results.extend(asyncio.run(_wait_all(urls))), daemon=True)
    clients.start()
    wait_for(lambda: _transfers_stats(suite, ops)["status_waiting"] == STATUS_WAITERS, SAGA_SECONDS_MAX,
             "every client to wait")
    before, waiting_since = _transfers_stats(suite, ops), time.monotonic()
    print(f"with {STATUS_WAITERS} waiters:", _transfers_process_memory())

    # WHEN another transfer runs its saga meanwhile (its steps call back into the transfers function)
    sent_at = time.time()
    transfer_id = _send(suite, payee, {"credit_account_id": people[0].account_id, "amount": 100})
    view = _final(suite, payee, transfer_id)
    # AND an operator approves the held transfers
    for _, held_id in held:
        status, answer = _request(
            "POST", f"{suite}/function/transfers/_/ops/transfers/{held_id}/decision", ops,
            {"decision": "approve", "note": "waiters test"}, {"Idempotency-Key": secrets.token_hex(8)},
        )
        assert status == 200, answer
    clients.join(STATUS_WAITER_SECONDS_MAX)
    after, waited_seconds = _transfers_stats(suite, ops), time.monotonic() - waiting_since

    # THEN the other saga ran to the end in seconds, not behind the waiters
    finished_at = datetime.fromisoformat(view["steps"][-1]["at"]).timestamp()
    assert view["status"] == "COMPLETED"
    assert finished_at - sent_at < SAGA_AMONG_WAITERS_SECONDS_MAX
    # AND every waiting client got its transfer's final status from its one request
    assert not clients.is_alive() and len(results) == STATUS_WAITERS
    assert {(status, body["status"]) for status, body in results} == {(200, "COMPLETED")}
    # AND while 200 waited, the process read the orders per tick, never per waiter: each batch asked for
    # at most the watched transfers (the held ones and the other saga, which this test waits on too),
    # and besides the batches only the sagas' own steps read orders
    batches = after["status_batch_reads"] - before["status_batch_reads"]
    batch_ids = after["status_orders_batch_read"] - before["status_orders_batch_read"]
    assert batches <= waited_seconds / WATCH_TICK_SECONDS + 2
    assert batch_ids <= batches * (HELD_TRANSFERS + 1)
    assert _orders_reads(after) - _orders_reads(before) - batches < STATUS_WAITERS / 4
    assert after["status_waiting"] == after["status_watched"] == 0


def test_sagas_whose_orchestrator_process_is_killed_take_their_next_step_within_seconds(suite):
    # GIVEN sagas driven by the orchestrator process, in flight
    senders = open_customers(3, secrets.token_hex(3))
    pairs = [(senders[n % 3], senders[(n + 1) % 3]) for n in range(6)]
    ids = [_send(suite, s, {"credit_account_id": p.account_id, "amount": 100}) for s, p in pairs]

    # WHEN that process is killed (SIGKILL; the gateway starts another on the next call or tick)
    killed_at = time.time()
    assert kill_orchestrator(suite)

    # THEN every saga completes, and each the kill hit took its next step within seconds
    assert [_final(suite, sender, i)["status"] for (sender, _), i in zip(pairs, ids, strict=True)] == [
        "COMPLETED"
    ] * len(ids)
    reader = client_token("orchestrator:read")
    delays = [recovery_seconds(history_times(suite, reader, i), killed_at) for i in ids]
    hit = [d for d in delays if d is not None]
    assert hit, "the kill came after every saga had finished"
    assert max(hit) <= RECOVERY_SECONDS_MAX, delays


def _decide(base_url: str, transfer_id: str, decision: str, key: str) -> tuple[int, object, float]:
    sent = time.monotonic()
    status, answer = _request(
        "POST",
        f"{base_url}/function/transfers/_/ops/transfers/{transfer_id}/decision",
        client_token("ops", "ops:act"),
        {"decision": decision, "note": "checked"},
        {"Idempotency-Key": key},
    )
    return status, answer, sent


def test_a_decision_whose_reply_died_with_its_process_is_answered_by_its_retry_within_seconds(
    suite, suite_dir
):
    # GIVEN a transfer held for review, and the transfers process set to die once the saga has the decision
    sender, payee = open_customers(2, secrets.token_hex(3))
    held = _held_for_review(suite, sender, payee, client_token("ops", "ops:act"))
    arm(_crash_dir(suite_dir), DECISION_REPORTED_CRASH_POINT)

    # WHEN the operator's decision is sent, its process dies before answering, and the operator retries
    status, _, died_at = _decide(suite, held, "approve", "decision-1")
    assert status >= 500
    for _ in range(RETRIES_MAX):
        status, answer, _ = _decide(suite, held, "approve", "decision-1")
        if status != 409:
            break
        assert "idempotency_key_in_use" in answer  # the dead claim, until its short lease lapses
        time.sleep(1)
    answered_after = time.monotonic() - died_at

    # THEN the retry answers 200 with the decision recorded, within seconds of the crash
    assert status == 200, answer
    assert answered_after <= KEY_FREE_SECONDS_MAX
    assert [s["outcome"] for s in answer["steps"] if s["name"] == "decision"] == ["approve"]
    # AND a new key with the same decision gets the same answer; another decision is refused, naming it
    status, again, _ = _decide(suite, held, "approve", "decision-2")
    assert status == 200 and again["steps"][: len(answer["steps"])] == answer["steps"]
    status, other, _ = _decide(suite, held, "reject", "decision-3")
    assert status == 409 and "decision_already_recorded" in other
    assert _final(suite, sender, held)["status"] == "COMPLETED"


def test_an_operator_stops_a_saga_awaiting_review_and_the_transfer_fails_with_nothing_held(suite, customers):
    # GIVEN a transfer waiting for an operator's review
    sender, payee = customers[3], customers[1]
    ops = client_token("ops", "ops:act")
    transfer_id = _held_for_review(suite, sender, payee, ops)
    execution = f"{suite}/function/orchestrator/_/ops/executions/transfer:{transfer_id}"

    # WHEN an operator stops its saga through the gateway
    stopped, view = _request("POST", f"{execution}/stop", ops, {"reason": "customer withdrew the order"})

    # THEN the review's Catch fails the transfer, and its execution is found by the transfer id
    assert stopped == 200 and view["stop_reason"] == "customer withdrew the order", view
    assert _final(suite, sender, transfer_id)["status"] == "FAILED"
    status, listed = _request("GET", f"{suite}/function/orchestrator/executions?reference={transfer_id}",
                              client_token("orchestrator:read"))
    assert status == 200 and [e["status"] for e in listed["data"]] == ["FAILED"], listed
    again, conflict = _request("POST", f"{execution}/stop", ops, {"reason": "again"})
    assert again == 409 and "execution_not_running" in conflict


def test_the_ledger_checks_clean_and_no_execution_is_left_running(suite, customers, embedded_aws):
    from finfaas.store.executions_store import ExecutionsStore

    wait_for(lambda: not transfer_sagas_running(ExecutionsStore()), SAGA_SECONDS_MAX,
             "every transfer saga to end")
    result = finfaas_ledger_check(embedded_aws.env())

    assert result.returncode == 0, result.stdout + result.stderr
