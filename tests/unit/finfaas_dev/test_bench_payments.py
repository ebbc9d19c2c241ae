"""`finfaas bench payments` keeps each customer under risk's hourly flag and stops at its bounds."""

from __future__ import annotations

import argparse
import threading
import time

import pytest
from finfaas_dev.bench import payments
from finfaas_dev.bench.payments import PAYMENTS_PER_CUSTOMER_MAX, Customers, _stats_delta, run_clients


def test_each_customer_is_handed_out_at_most_the_most_payments_risk_lets_pass():
    customers = Customers([("a", "ta"), ("b", "tb")])

    handed = [customers.next()[0] for _ in range(2 * PAYMENTS_PER_CUSTOMER_MAX)]

    assert handed == ["a"] * PAYMENTS_PER_CUSTOMER_MAX + ["b"] * PAYMENTS_PER_CUSTOMER_MAX
    with pytest.raises(RuntimeError, match="exhausted"):
        customers.next()


def test_two_clients_never_pay_from_one_customer_and_each_uses_its_own_up():
    customers = Customers([("a", "ta"), ("b", "tb"), ("c", "tc")])

    first = [customers.next(client)[0] for client in (0, 1)]
    rest = [customers.next(0)[0] for _ in range(PAYMENTS_PER_CUSTOMER_MAX)]

    assert first == ["a", "b"]
    assert rest == ["a"] * (PAYMENTS_PER_CUSTOMER_MAX - 1) + ["c"]
    assert customers.next(1)[0] == "b"


def test_a_phase_stops_at_its_count_and_counts_failures_apart():
    calls = []

    def work(client: int) -> None:
        calls.append(client)
        if len(calls) % 3 == 0:
            raise RuntimeError("confirm 422")

    phase = run_clients(clients=4, seconds=10.0, payments_max=20, work=work)

    assert 20 <= phase.done < 24 and phase.errors["confirm 422"] >= 1
    assert phase.seconds < 10.0


def test_the_profile_divides_each_functions_step_time_and_dynamodb_calls_by_the_payments_made():
    before = {"steps": {"request": {"calls": 2, "ms_total": 10.0}},
              "dynamodb_calls": {"GetItem finfaas-x-payments": 4}}
    after = {"steps": {"request": {"calls": 6, "ms_total": 50.0}, "audit": {"calls": 4, "ms_total": 8.0}},
             "dynamodb_calls": {"GetItem finfaas-x-payments": 12, "TransactWriteItems (transaction)": 4}}

    delta = _stats_delta(before, after, count=4)

    assert delta["steps"] == {"request": {"ms_per_payment": 10.0, "calls_per_payment": 1.0},
                              "audit": {"ms_per_payment": 2.0, "calls_per_payment": 1.0}}
    assert delta["dynamodb_calls"] == {"GetItem": 2.0, "TransactWriteItems": 1.0, "total": 3.0}


def test_a_call_stuck_past_the_deadline_does_not_stretch_the_rate_measured_before_it():
    stuck = threading.Event()

    def work(client: int) -> None:
        if client == 0 and not stuck.is_set():
            stuck.set()
            time.sleep(1.0)  # one call outlives the phase's 0.4 s
        else:
            time.sleep(0.01)

    phase = run_clients(clients=2, seconds=0.4, payments_max=1_000, work=work)

    assert phase.seconds >= 1.0 and phase.late >= 1
    assert phase.per_second > 50  # about 100/s from the other client, not done / 1 s


def test_the_hot_merchant_rounds_are_bounded_before_anything_starts():
    for rounds in (0, payments.HOT_ROUNDS_MAX + 1):
        args = argparse.Namespace(seconds=1.0, clients=1, merchants=1, payments_max=1, hot_rounds=rounds)
        assert payments.run(args) == 2
