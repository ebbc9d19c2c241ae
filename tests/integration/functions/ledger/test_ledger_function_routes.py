"""The ledger function's routes through handle() on DynamoDB Local: what internal callers rely on."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from finfaas.platform.schedule import SCHEDULE_HEADER, sign_tick
from finfaas_dev.testing.platform import call
from support.ledger_function_testing import CURRENCY, FUNDING_ACCOUNT

HOLD_TIMEOUT_SECONDS = 1
EXPIRY_WAIT_SECONDS = 1.3


def leg(ids, name: str, debit: str, credit: str, amount, **extra) -> dict:
    return {"transfer_id": ids(name), "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "currency": CURRENCY, **extra}


def test_a_transfer_is_created_read_back_and_moves_balances(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")

    created = ledger_function.post("/transfers", leg(ids, "t1", alice, bob, "2.50", metadata="invoice 7"),
                                   key=ids("k1"))
    read = ledger_function.get(f"/transfers/{ids('t1')}")

    assert created.status == 201
    assert created.json() == read.json()
    assert read.json()["amount_minor"] == 250 and read.json()["kind"] == "POSTED"
    assert read.json()["metadata"] == "invoice 7" and read.json()["exponent"] == 2
    balance = ledger_function.get(f"/accounts/{alice}/balance").json()
    assert (balance["posted_minor"], balance["available_minor"]) == (750, 750)


def test_a_hold_is_posted_in_part_and_the_rest_released(ledger_function, open_account, ids):
    alice, shop = open_account("alice", funded_minor=1_000), open_account("shop")

    hold = ledger_function.post("/pending", leg(ids, "h1", alice, shop, 400), key=ids("k1"))
    held = ledger_function.get(f"/accounts/{alice}/balance").json()
    partial = {"transfer_id": ids("p1"), "amount": 150, "currency": CURRENCY}
    post = ledger_function.post(f"/pending/{ids('h1')}/post", partial, key=ids("k2"))

    assert hold.status == 201 and hold.json()["state"] == "PENDING"
    assert (held["posted_minor"], held["pending_debits_minor"], held["available_minor"]) == (1_000, 400, 600)
    assert post.status == 201 and post.json()["amount_minor"] == 150 and post.json()["kind"] == "POST"
    assert ledger_function.get(f"/transfers/{ids('h1')}").json()["state"] == "POSTED"
    assert (ledger_function.balance(alice), ledger_function.balance(shop)) == (850, 150)


def test_an_accounts_open_holds_list_a_hold_older_than_a_statement_page_until_it_is_resolved(
        ledger_function, open_account, ids):
    alice, shop, bob = open_account("alice", funded_minor=1_000), open_account("shop"), open_account("bob")
    for name, amount in (("h1", 100), ("h2", 50), ("h3", 25)):
        ledger_function.post("/pending", leg(ids, name, alice, shop, amount, timeout_seconds=3600),
                             key=ids(f"k{name}"))
    for n in range(3):
        ledger_function.post("/transfers", leg(ids, f"t{n}", alice, bob, 1), key=ids(f"kt{n}"))
    ledger_function.post(f"/pending/{ids('h2')}/void", {"transfer_id": ids("v2")}, key=ids("kv"))

    statement = ledger_function.store.statement(alice, 2, None)
    first = ledger_function.get(f"/accounts/{alice}/holds", query={"state": "PENDING", "limit": "1"})
    cursor = first.json()["next_cursor"]
    second = ledger_function.get(f"/accounts/{alice}/holds", query={"limit": "1", "starting_after": cursor})
    forged = ledger_function.get(f"/accounts/{bob}/holds", query={"starting_after": cursor})

    assert ids("h1") not in {line.entry.transfer_id for line in statement.lines}
    assert first.status == 200 and first.json()["has_more"] is True
    assert [(h["transfer_id"], h["state"]) for h in first.json()["data"]] == [(ids("h1"), "PENDING")]
    assert first.json()["data"][0]["expires_at"] is not None
    assert [h["transfer_id"] for h in second.json()["data"]] == [ids("h3")]  # h2 was voided
    assert forged.status == 422 and [e["field"] for e in forged.json()["errors"]] == ["starting_after"]


def test_a_hold_can_be_voided_once(ledger_function, open_account, ids):
    alice, shop = open_account("alice", funded_minor=1_000), open_account("shop")
    ledger_function.post("/pending", leg(ids, "h1", alice, shop, 400), key=ids("k1"))

    void = ledger_function.post(f"/pending/{ids('h1')}/void", {"transfer_id": ids("v1")}, key=ids("k2"))
    post_after = ledger_function.post(f"/pending/{ids('h1')}/post", {"transfer_id": ids("p1")}, key=ids("k3"))

    assert void.status == 201 and void.json()["kind"] == "VOID"
    assert post_after.status == 409 and post_after.json()["code"] == "pending_already_voided"
    assert ledger_function.get(f"/accounts/{alice}/balance").json()["available_minor"] == 1_000


def test_a_hold_past_its_timeout_is_expired_by_the_ops_sweep(ledger_function, open_account, ids):
    alice, shop = open_account("alice", funded_minor=1_000), open_account("shop")
    ledger_function.post("/pending", leg(ids, "h1", alice, shop, 400, timeout_seconds=HOLD_TIMEOUT_SECONDS),
                         key=ids("k1"))
    time.sleep(EXPIRY_WAIT_SECONDS)

    swept = ledger_function.post("/_/ops/expire-holds", {})
    late_post = ledger_function.post(f"/pending/{ids('h1')}/post", {"transfer_id": ids("p1")}, key=ids("k2"))

    assert swept.status == 200
    assert ids("h1") in {t["pending_id"] for t in swept.json()["transfers"]}
    assert ledger_function.get(f"/transfers/{ids('h1')}").json()["state"] == "EXPIRED"
    assert late_post.status == 409 and late_post.json()["code"] == "pending_expired"
    assert ledger_function.get(f"/accounts/{alice}/balance").json()["available_minor"] == 1_000


def test_a_transfer_is_reversed_once(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    ledger_function.post("/transfers", leg(ids, "t1", alice, bob, 300), key=ids("k1"))

    reversal = ledger_function.post(f"/transfers/{ids('t1')}/reverse", {"transfer_id": ids("r1")},
                                    key=ids("k2"))
    twice = ledger_function.post(f"/transfers/{ids('t1')}/reverse", {"transfer_id": ids("r2")}, key=ids("k3"))

    assert reversal.status == 201 and reversal.json()["reversal_of"] == ids("t1")
    assert twice.status == 409 and twice.json()["code"] == "already_reversed"
    assert (ledger_function.balance(alice), ledger_function.balance(bob)) == (1_000, 0)


def test_linked_legs_commit_all_or_nothing(ledger_function, open_account, ids):
    alice, shop, fees = open_account("alice", funded_minor=1_000), open_account("shop"), open_account("fees")

    too_much = ledger_function.post("/transfers/linked", {"transfers": [
        leg(ids, "sale", alice, shop, 900), leg(ids, "fee", alice, fees, 200)]}, key=ids("k1"))
    paid = ledger_function.post("/transfers/linked", {"transfers": [
        leg(ids, "sale2", alice, shop, 700), leg(ids, "fee2", alice, fees, 30)]}, key=ids("k2"))

    assert too_much.status == 409 and too_much.json()["code"] == "insufficient_funds"
    assert paid.status == 201 and [t["batch_size"] for t in paid.json()["transfers"]] == [2, 2]
    assert [ledger_function.balance(a) for a in (alice, shop, fees)] == [270, 700, 30]


def test_a_linked_batch_lists_its_every_leg_in_order_by_its_first_leg(ledger_function, open_account, ids):
    alice, shop, fees, tax = (open_account("alice", funded_minor=1_000), open_account("shop"),
                              open_account("fees"), open_account("tax"))
    legs = [leg(ids, "sale", alice, shop, 700), leg(ids, "fee", alice, fees, 30),
            leg(ids, "vat", alice, tax, 5)]
    ledger_function.post("/transfers/linked", {"transfers": legs}, key=ids("k1"))

    batch = ledger_function.get("/transfers", query={"batch_id": ids("sale")})
    by_a_later_leg = ledger_function.get("/transfers", query={"batch_id": ids("fee")})

    assert batch.status == 200
    listed = [(t["transfer_id"], t["credit_account_id"], t["amount_minor"])
              for t in batch.json()["transfers"]]
    assert listed == [(ids("sale"), shop, 700), (ids("fee"), fees, 30), (ids("vat"), tax, 5)]
    assert by_a_later_leg.status == 404 and by_a_later_leg.json()["code"] == "transfer_not_found"


@pytest.mark.parametrize("amount, currency, field, code", [
    (12.5, CURRENCY, "amount", "validation_failed"),
    (100.0, CURRENCY, "amount", "validation_failed"),
    (True, CURRENCY, "amount", "validation_failed"),
    (-5, CURRENCY, "amount", "invalid_amount"),
    (0, CURRENCY, "amount", "invalid_amount"),
    ("1.234", CURRENCY, "amount", "too_many_decimals"),
    ("1e3", CURRENCY, "amount", "invalid_amount"),
    (10**24, CURRENCY, "amount", "amount_too_large"),
    (100, "XYZ", "currency", "unknown_currency"),
    (100, "usd", "currency", "unknown_currency"),
])
def test_bad_amounts_and_currencies_are_422_naming_the_field(ledger_function, open_account, ids,
                                                           amount, currency, field, code):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")

    reply = ledger_function.post("/transfers", {**leg(ids, "t1", alice, bob, amount), "currency": currency},
                                 key=ids("k1"))

    assert reply.status == 422
    assert reply.json()["code"] == code
    assert field in [error["field"] for error in reply.json()["errors"]]
    assert ledger_function.get(f"/transfers/{ids('t1')}").status == 404
    assert ledger_function.balance(bob) == 0


def test_a_transfer_id_reused_with_other_fields_is_409(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    ledger_function.post("/transfers", leg(ids, "t1", alice, bob, 100), key=ids("k1"))

    reused = ledger_function.post("/transfers", leg(ids, "t1", alice, bob, 101), key=ids("k2"))
    repeated = ledger_function.post("/transfers", leg(ids, "t1", alice, bob, 100), key=ids("k3"))

    assert reused.status == 409 and reused.json()["code"] == "exists_with_different_amount"
    assert repeated.status == 201 and repeated.json()["transfer_id"] == ids("t1")  # same transfer again
    assert ledger_function.balance(bob) == 100


def test_unknown_accounts_and_transfers_are_404(ledger_function, open_account, ids):
    alice = open_account("alice", funded_minor=1_000)

    to_nowhere = ledger_function.post("/transfers", leg(ids, "t1", alice, ids("ghost"), 5), key=ids("k1"))

    assert to_nowhere.status == 404 and to_nowhere.json()["code"] == "account_not_found"
    assert ledger_function.get(f"/transfers/{ids('ghost')}").json()["code"] == "transfer_not_found"
    assert ledger_function.get(f"/accounts/{ids('ghost')}/balance").status == 404


def test_a_different_currency_is_422(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")

    reply = ledger_function.post("/transfers", {**leg(ids, "t1", alice, bob, 5), "currency": "EUR"},
                                 key=ids("k1"))

    assert reply.status == 422 and reply.json()["code"] == "currency_mismatch"


def test_funding_accounts_exist_after_the_ops_bootstrap(ledger_function):
    balance = ledger_function.get(f"/accounts/{FUNDING_ACCOUNT}/balance")

    assert balance.status == 200 and balance.json()["kind"] == "FUNDING"


def _minute_of_its_own() -> float:
    """A scheduled instant no other test ticks at (claims are per job and minute, in a shared table)."""
    return 60.0 * (int(time.time() // 60) + 1_000_000 + uuid.uuid4().int % 1_000_000)


def test_two_unsigned_ticks_at_once_expire_a_due_hold_once(ledger_function, open_account, ids):
    # GIVEN a hold past its timeout, and the ledger's scheduled route claiming its minute in DynamoDB
    minute = _minute_of_its_own()
    ledger_function.module.schedule_proof.use(clock=lambda: minute)
    alice, shop = open_account("alice", funded_minor=1_000), open_account("shop")
    ledger_function.post("/pending", leg(ids, "h1", alice, shop, 400, timeout_seconds=HOLD_TIMEOUT_SECONDS),
                         key=ids("k1"))
    time.sleep(EXPIRY_WAIT_SECONDS)

    # WHEN two stock schedulers' unsigned ticks (a cron-connector POST, a PingSource event) arrive at once
    start = threading.Barrier(2)

    def tick(headers: dict[str, str]) -> Any:
        start.wait(timeout=10)
        return call(ledger_function.module.handle, "POST", "/", headers=headers)

    with ThreadPoolExecutor(max_workers=2) as pool:
        replies = list(pool.map(tick, [{}, {"ce-type": "dev.knative.sources.ping", "ce-id": "p-1"}]))

    # THEN one ran the expiry and the other was told the minute already ran; the hold expired once
    assert [r.status for r in replies] == [200, 200]
    ran = [r.json() for r in replies if "transfers" in r.json()]
    skipped = [r.json() for r in replies if "transfers" not in r.json()]
    assert len(ran) == 1 and ids("h1") in {t["pending_id"] for t in ran[0]["transfers"]}
    assert skipped == [{"ran": False, "reason": "already_ran_this_period", "period_start": int(minute)}]
    assert ledger_function.get(f"/transfers/{ids('h1')}").json()["state"] == "EXPIRED"
    assert ledger_function.get(f"/accounts/{alice}/balance").json()["available_minor"] == 1_000
    # and the next minute's tick runs again
    ledger_function.module.schedule_proof.use(clock=lambda: minute + 60)
    assert "transfers" in call(ledger_function.module.handle, "POST", "/").json()


def test_a_signed_tick_runs_the_expiry_and_a_forged_one_is_401(ledger_function, open_account, ids):
    # GIVEN a hold past its timeout, the schedule key, and this minute's claim already taken
    key, minute = b"k" * 32, _minute_of_its_own()
    ledger_function.module.schedule_proof.use([key], clock=lambda: minute)
    call(ledger_function.module.handle, "POST", "/")
    alice, shop = open_account("alice", funded_minor=1_000), open_account("shop")
    ledger_function.post("/pending", leg(ids, "h1", alice, shop, 400, timeout_seconds=HOLD_TIMEOUT_SECONDS),
                         key=ids("k1"))
    time.sleep(EXPIRY_WAIT_SECONDS)

    # WHEN a forged tick arrives, then an operator's signed one
    forged = call(ledger_function.module.handle, "POST", "/", headers={SCHEDULE_HEADER: "t=1,v1=forged"})
    assert ledger_function.get(f"/transfers/{ids('h1')}").json()["state"] == "PENDING"
    signed = call(ledger_function.module.handle, "POST", "/",
                  headers={SCHEDULE_HEADER: sign_tick(key, "ledger", minute)})

    # THEN the forged one is refused and the signed one runs, whatever the minute's claim says
    assert forged.status == 401 and forged.json()["code"] == "schedule_proof_invalid"
    assert signed.status == 200
    assert ids("h1") in {t["pending_id"] for t in signed.json()["transfers"]}
    assert ledger_function.get(f"/accounts/{alice}/balance").json()["available_minor"] == 1_000
def test_a_service_opens_a_merchant_account_once_and_finds_it_again(ledger_function, ids):
    body = {"account_id": ids("m1-recv-0"), "owner_id": ids("m1"), "currency": CURRENCY}

    opened = ledger_function.post("/accounts", body)
    again = ledger_function.post("/accounts", body)
    other_owner = ledger_function.post("/accounts", {**body, "owner_id": ids("m2")})

    assert opened.status == 201 and opened.json()["kind"] == "MERCHANT"
    assert again.status == 201 and again.json() == opened.json()
    assert other_owner.status == 409 and other_owner.json()["code"] == "account_exists_with_different_fields"
    assert ledger_function.balance(body["account_id"]) == 0
