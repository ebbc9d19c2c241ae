"""A loan disbursed to a bank account through the rail (infra/statemachines/loan-disbursement.asl.json's
bank branch): the principal held from the funding account, paid out by the rail sandbox, posted with the
loan active on its signed settlement, voided with the loan disbursement_failed on a rejection or an unpaid
recall. The orchestrator is killed at every point of the run, every message and step request comes twice:
the customer is paid once, or not at all with the funding account whole."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest
from finfaas.platform.idempotency import REPLAYED_HEADER
from finfaas.services.loans.errors import LoanNotApproved
from finfaas_dev.testing.platform import TokenMinter
from support.loan_payouts import (
    PRINCIPAL_MINOR,
    SCENARIOS,
    SETTLES,
    Balances,
    LoanPayouts,
    assert_payout_outcome,
)
from support.loans_world import LoansWorld
from support.saga_world import CrashAt, SagaWorld
from support.workflow_testing import HISTORY_EVENTS_MAX, crash_case_ids, crash_cases

MINTER = TokenMinter.generate()
EVENT_SCHEMAS = Path(__file__).resolve().parents[4] / "events" / "schemas"


def _run(scenario: str, crash: CrashAt | None = None, **options) -> tuple[LoanPayouts, str, Balances]:
    payouts = LoanPayouts(SagaWorld(crash=crash, minter=MINTER, **options))
    before = Balances.of(payouts.world)
    return payouts, payouts.run_scenario(scenario), before


def _crash_points(scenario: str) -> list[str]:
    payouts, _, _ = _run(scenario)
    return payouts.world.crash.points


# The settled path enters the hold, the rail's wait and the post; the stuck one the recall and the void (a
# rejection's path is a shorter run of the same states, left to the duplicate-delivery tests below).
CASES = crash_cases(("bank-settled", "bank-stuck-recalled"), _crash_points)


def test_a_loan_paid_to_a_bank_account_is_active_once_the_rail_settles_and_the_number_shows_nowhere():
    payouts, loan_id, before = _run("bank-settled")

    body = payouts.read(loan_id).json()
    assert (body["status"], body["disburse_to"], body["disbursed_on"]) == ("active", "bank_account",
                                                                           "2024-01-01")
    assert body["bank_account"] == {"bank_code": "BANKUS33", "account_number_masked": "****5678"}
    assert sum(i["principal_minor"] for i in body["schedule"]) == PRINCIPAL_MINOR
    assert payouts.world.balance(payouts.world.prefix + "acc-a") == 1_000_000  # the wallet is not paid
    assert_payout_outcome(payouts, loan_id, "bank-settled", before)
    assert payouts.check(loan_id) == [] and payouts.world.ledger_check().clean
    assert_events_match_their_schemas(payouts)
    # The number is sealed: not in the view, the events, the saga's history or the stored loan.
    history = payouts.world.store.history(f"loan-disbursement:{loan_id}", 0, HISTORY_EVENTS_MAX)
    shown = [json.dumps(body), *(json.dumps(dict(e.data)) for _, _, e in payouts.loans.events),
             *(json.dumps(asdict(e), default=str) for e in history), repr(payouts.loan(loan_id))]
    assert not [text for text in shown if SETTLES in text]


def assert_events_match_their_schemas(payouts: LoanPayouts) -> None:
    """Each event's data as written passes its published schema (events/schemas)."""
    import jsonschema

    for _, _, event in payouts.loans.events:
        schema = json.loads((EVENT_SCHEMAS / f"{event.type}.json").read_text())
        data_schema = {**schema["properties"]["data"], "$defs": schema["$defs"]}
        jsonschema.Draft202012Validator(data_schema).validate(json.loads(json.dumps(dict(event.data))))


@pytest.mark.parametrize("scenario", ["bank-rejected", "bank-stuck-recalled", "bank-notice-lost-recalled"])
def test_the_rails_answer_decides_paid_once_or_the_funding_account_whole(scenario: str):
    payouts, loan_id, before = _run(scenario)

    assert_payout_outcome(payouts, loan_id, scenario, before)
    assert payouts.check(loan_id) == [] and payouts.world.ledger_check().clean
    assert_events_match_their_schemas(payouts)
    if not SCENARIOS[scenario].paid:
        body = payouts.read(loan_id).json()
        assert (body["outstanding_minor"], body["schedule"]) == (0, [])
        assert body["disbursement_failure"] in ("Rail.Rejected", "Rail.NotSettled")


def test_the_clean_runs_pass_every_kind_of_crash_point():
    points = {point for _, _, point in CASES}

    assert {"task:before_call", "task:after_call", "checkpoint:before_save", "wake:after_send"} <= points


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_pays_once_or_not_at_all(scenario: str, index: int, point: str):
    crash = CrashAt(index)

    payouts, loan_id, before = _run(scenario, crash)

    assert crash.crashed_at == point
    assert payouts.world.processes >= 2  # the orchestrator really died and a fresh process finished
    assert_payout_outcome(payouts, loan_id, scenario, before)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_message_delivered_twice_changes_nothing(scenario: str):
    payouts, loan_id, before = _run(scenario, duplicate_deliveries=True)

    assert_payout_outcome(payouts, loan_id, scenario, before)


@pytest.mark.parametrize("scenario", ["bank-settled", "bank-rejected"])
def test_every_request_sent_twice_the_rails_callback_included_applies_once(scenario: str):
    payouts = LoanPayouts(SagaWorld(minter=MINTER))
    before = Balances.of(payouts.world)

    def twice(forward, method, url, headers, data):
        forward(method, url, headers, data)
        return forward(method, url, headers, data)

    payouts.world.gateway.interceptor = twice
    loan_id = payouts.run_scenario(scenario)

    assert payouts.world.gateway.calls.count(("rail", "POST", "/notices")) >= 2  # the callback came again
    assert_payout_outcome(payouts, loan_id, scenario, before)


def test_a_late_answer_of_the_other_kind_is_refused_and_moves_nothing():
    settled, settled_id, settled_before = _run("bank-settled")
    failed, failed_id, failed_before = _run("bank-rejected")

    with pytest.raises(LoanNotApproved):
        settled.disbursements.fail_payout(settled_id, "Rail.Rejected")  # paid out: never voided back
    with pytest.raises(LoanNotApproved):
        failed.disbursements.settle_payout(failed_id)  # released: never posted
    again = settled.disbursements.settle_payout(settled_id)

    assert again.version == settled.loan(settled_id).version  # nothing new written
    assert_payout_outcome(settled, settled_id, "bank-settled", settled_before)
    assert_payout_outcome(failed, failed_id, "bank-rejected", failed_before)


def test_a_signed_notice_for_a_payout_nobody_made_changes_nothing():
    from finfaas.services.rail.api import Notice
    from finfaas.services.webhooks.model import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

    payouts, loan_id, before = _run("bank-rejected")
    world = payouts.world
    body = Notice(payment_id="loan_000000000000000000000000", status="SETTLED").model_dump_json().encode()
    timestamp = int(world.clock.utc().timestamp())
    headers = {ID_HEADER: "notice-unknown", TIMESTAMP_HEADER: str(timestamp),
               SIGNATURE_HEADER: sign(world.rail_notice_key, "notice-unknown", timestamp, body),
               "Content-Type": "application/json"}

    reply = world.gateway.request("POST", "http://gateway.test/function/rail/notices", headers, body)

    assert reply.status_code == 200 and reply.json()["outcome"] == "unknown_payment", reply.content
    assert_payout_outcome(payouts, loan_id, "bank-rejected", before)


def test_a_repeated_application_for_another_bank_account_is_refused():
    payouts = LoanPayouts(SagaWorld(minter=MINTER))
    first = payouts.apply(payouts.application(SETTLES), key="k-1")
    same = payouts.apply(payouts.application(SETTLES), key="k-1")
    other = payouts.apply(payouts.application("87654321"), key="k-1")

    assert first.status_code == 201 and same.status_code == 201
    assert same.headers.get(REPLAYED_HEADER) == "true"
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert Counter(e.type for _, _, e in payouts.loans.events) == Counter({"loan.approved": 1})


@pytest.mark.parametrize(("changes", "field"), [
    ({"disburse_to": "bank_account"}, "bank_account"),
    ({"bank_account": {"bank_code": "BANKUS33", "account_number": "12345678", "name": "Ada"}},
     "bank_account"),
    ({"disburse_to": "bank_account",
      "bank_account": {"bank_code": "bank us", "account_number": "12345678", "name": "Ada"}},
     "bank_account.bank_code"),
    ({"disburse_to": "bank_account",
      "bank_account": {"bank_code": "BANKUS33", "account_number": "12", "name": "Ada"}},
     "bank_account.account_number"),
    ({"disburse_to": "bank_account",
      "bank_account": {"bank_code": "BANKUS33", "account_number": "12345678", "name": ""}},
     "bank_account.name"),
    ({"disburse_to": "moon"}, "disburse_to"),
])
def test_a_bad_destination_is_a_422_naming_the_field_and_nothing_is_written(changes, field):
    world = LoansWorld()
    from finfaas_dev.testing.platform import call
    from support.loans_world import APPLICATION

    reply = call(world.handler.handle, "POST", "/loans", token=world.customer,
                 headers={"Idempotency-Key": "bad-1"}, json_body={**APPLICATION, **changes})

    assert reply.status == 422, reply.body
    assert field in [e["field"] for e in reply.json()["errors"]]
    assert world.loans.events == [] and world.orchestrator.started == []


def test_a_loan_on_its_way_to_the_bank_takes_auto_debit_and_its_customers_acceptance_starts_nothing():
    payouts = LoanPayouts(SagaWorld(minter=MINTER))
    loan_id = payouts.apply(payouts.application(SETTLES)).json()["loan_id"]
    assert payouts.accept(loan_id).status_code == 202
    payouts.disbursements.disburse(loan_id)  # the saga's first step: held, disbursing
    starts = payouts.world.gateway.calls.count(("orchestrator", "POST", "/executions"))

    again = payouts.accept(loan_id)
    auto = payouts.world.gateway.call("POST", "loans", f"/loans/{loan_id}/auto-debit", {"enabled": True},
                                      payouts.customer)

    assert again.status_code == 200 and again.json()["status"] == "disbursing"
    assert starts == 1 and payouts.world.gateway.calls.count(("orchestrator", "POST", "/executions")) == 1
    assert auto.status_code == 200 and auto.json()["auto_debit"] is True


def _flagged() -> tuple[LoanPayouts, str, Balances]:
    """A payout stuck at the rail whose recall fails: the saga cannot tell, and marks it for an operator."""
    payouts = LoanPayouts(SagaWorld(minter=MINTER))
    before = Balances.of(payouts.world)
    payouts.world.gateway.faults[("rail", "/recall")] = [(500, {"code": "internal"})]
    return payouts, payouts.run_scenario("bank-stuck-recalled"), before


def _decide(payouts: LoanPayouts, loan_id: str, decision: str, scopes=("ops", "ops:act")):
    return payouts.world.gateway.call("POST", "loans", f"/_/ops/loans/{loan_id}/disbursement",
                                      {"decision": decision, "note": "asked the rail"},
                                      payouts.world.token("ops-2", scopes))


def test_a_payout_the_rail_cannot_answer_for_stays_held_and_marked_for_an_operator():
    payouts, loan_id, before = _flagged()

    loan = payouts.loan(loan_id)
    assert (loan.status.value, loan.payout_attention) == ("disbursing", "States.Http.StatusCode.500")
    assert payouts.world.execution_status(f"loan-disbursement:{loan_id}").value == "FAILED"
    held = Balances(before.funding, before.clearing, before.held + PRINCIPAL_MINOR)
    assert Balances.of(payouts.world) == held
    assert payouts.check(loan_id) == []  # in transit, counted once
    assert payouts.events(loan_id) == Counter({"loan.approved": 1, "loan.disbursement_started": 1})


@pytest.mark.parametrize(("decision", "scenario"), [("post", "bank-settled"), ("void", "bank-rejected")])
def test_an_operators_decision_posts_or_voids_a_marked_payout_once(decision: str, scenario: str):
    payouts, loan_id, before = _flagged()

    refused = _decide(payouts, loan_id, decision, scopes=("ops",))
    decided = _decide(payouts, loan_id, decision)
    again = _decide(payouts, loan_id, decision)
    other = _decide(payouts, loan_id, "void" if decision == "post" else "post")

    assert refused.status_code == 403
    assert decided.status_code == 200 and again.status_code == 200, decided.content
    assert decided.json()["status"] == SCENARIOS[scenario].status
    assert decided.json()["payout_attention"] is None
    assert other.status_code == 409
    loan = payouts.loan(loan_id)
    assert Balances.of(payouts.world) == Balances(
        before.funding - (PRINCIPAL_MINOR if decision == "post" else 0),
        before.clearing + (PRINCIPAL_MINOR if decision == "post" else 0), before.held)
    final = "loan.disbursed" if decision == "post" else "loan.disbursement_failed"
    assert payouts.events(loan_id) == Counter({"loan.approved": 1, "loan.disbursement_started": 1, final: 1})
    assert loan.status.value == SCENARIOS[scenario].status and payouts.check(loan_id) == []


def test_an_operator_cannot_decide_a_payout_its_saga_still_waits_for():
    payouts = LoanPayouts(SagaWorld(minter=MINTER))
    loan_id = payouts.apply(payouts.application(SETTLES)).json()["loan_id"]
    payouts.disbursements.disburse(loan_id)  # held, the rail not answered yet

    reply = _decide(payouts, loan_id, "void")

    assert reply.status_code == 409 and reply.json()["code"] == "loan_payout_not_flagged"
    assert payouts.loan(loan_id).status.value == "disbursing"


def test_a_marked_payout_stays_held_past_any_expiry_and_the_operator_can_still_post_it():
    # GIVEN a payout whose outcome the rail could not give, marked for an operator, and weeks passing with
    # the ledger's expiry sweep running (the rail may have paid: nothing may release the money but a decision)
    from finfaas.services.ledger.service import LedgerService

    payouts, loan_id, before = _flagged()
    payouts.world.clock.sleep(60 * 24 * 3600)

    expired = LedgerService(payouts.world.ledger, clock=payouts.world.clock.utc).expire_due_holds()

    # THEN the hold is still there, and the operator's post pays the customer once
    assert expired == []
    held = Balances(before.funding, before.clearing, before.held + PRINCIPAL_MINOR)
    assert Balances.of(payouts.world) == held
    decided = _decide(payouts, loan_id, "post")
    assert decided.status_code == 200, decided.content
    assert Balances.of(payouts.world) == Balances(
        before.funding - PRINCIPAL_MINOR, before.clearing + PRINCIPAL_MINOR, before.held)
    assert payouts.check(loan_id) == []


def test_a_hold_written_to_expire_and_expired_ends_the_loan_unpaid_on_the_operators_void(monkeypatch):
    # GIVEN a payout held with the 7-day expiry holds were once written with, marked, and expired since
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.loans import service as loans_service

    monkeypatch.setattr(loans_service, "disbursement_hold_seconds", 7 * 24 * 3600)
    payouts, loan_id, before = _flagged()
    payouts.world.clock.sleep(8 * 24 * 3600)
    assert len(LedgerService(payouts.world.ledger, clock=payouts.world.clock.utc).expire_due_holds()) == 1

    # WHEN the operator voids it (the rail confirmed it never paid)
    decided = _decide(payouts, loan_id, "void")

    # THEN the loan ends unpaid, owing nothing, and the funding account is whole once
    assert decided.status_code == 200, decided.content
    assert decided.json()["status"] == SCENARIOS["bank-rejected"].status
    assert Balances.of(payouts.world) == before
    assert payouts.check(loan_id) == []


def test_a_hold_whose_disbursement_answer_was_lost_is_marked_and_an_operator_voids_it():
    # GIVEN a bank payout's Disburse step that held the principal, then answered 500 (its answer lost)
    payouts = LoanPayouts(SagaWorld(minter=MINTER))
    before = Balances.of(payouts.world)
    loan_id = payouts.apply(payouts.application(SETTLES)).json()["loan_id"]
    assert payouts.accept(loan_id).status_code == 202
    payouts.disbursements.disburse(loan_id)  # what the step committed before its answer was lost
    payouts.world.gateway.faults[("loans", "/saga/disburse")] = [(500, {"code": "internal_error"})] * 3

    payouts.world.run()

    # THEN the saga ends without asking the rail, the loan is marked for an operator with the money held,
    # and the operator's void gives the funding account its principal back once
    assert payouts.world.execution_status(f"loan-disbursement:{loan_id}").value == "FAILED"
    loan = payouts.loan(loan_id)
    assert loan.status.value == "disbursing" and loan.payout_attention
    held = Balances(before.funding, before.clearing, before.held + PRINCIPAL_MINOR)
    assert Balances.of(payouts.world) == held
    assert _decide(payouts, loan_id, "void").status_code == 200
    assert payouts.loan(loan_id).status.value == "disbursement_failed"
    assert Balances.of(payouts.world) == before


def test_a_disbursement_refused_before_any_hold_leaves_the_loan_approved_and_nothing_held():
    payouts = LoanPayouts(SagaWorld(minter=MINTER))
    before = Balances.of(payouts.world)
    loan_id = payouts.apply(payouts.application(SETTLES)).json()["loan_id"]
    payouts.world.gateway.faults[("loans", "/saga/disburse")] = [(500, {"code": "internal_error"})] * 3
    assert payouts.accept(loan_id).status_code == 202

    payouts.world.run()

    loan = payouts.loan(loan_id)
    assert loan.status.value == "approved" and not loan.payout_attention
    assert Balances.of(payouts.world) == before
