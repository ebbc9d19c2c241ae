"""A loan account as a fold of dated transactions (domain/loan_account.py).

Amounts are minor units: 10000 is 100.00. The loan of most examples is Fineract's 100.00 at 12 % over six
months (30/360, equal installments, disbursed 1 January 2024): 17.25 x 5 and 17.28, interest 1.00, 0.84,
0.67, 0.51, 0.34, 0.17 (test_loans.py reproduces it from EMICalculation.feature C3154).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from finfaas.domain.loan_account import (
    AccountRules,
    Applied,
    AutoDebitDue,
    BucketChanged,
    LoanAccount,
    LoanClosed,
    LoanStatus,
    LoanTransaction,
    OverpaymentRule,
    TransactionKind,
    amount_due,
    apply,
    close_days_max,
    close_of_business,
    disburse,
    replay,
)
from finfaas.domain.loans import (
    Amortization,
    Component,
    DayCount,
    Dues,
    InterestMethod,
    InvalidRepayment,
    LoanRuleError,
    LoanTerms,
    PrepaymentMode,
    build_schedule,
    payoff_quote,
)
from hypothesis import given, settings
from hypothesis import strategies as st

JAN_2024 = date(2024, 1, 1)
TERMS = LoanTerms(10000, Decimal("0.12"), 6, JAN_2024)
SCHEDULE = build_schedule(TERMS)
PENALTY = Decimal("0.001")  # 0.1 % of overdue principal a day


def opened(**rules) -> LoanAccount:
    return disburse(TERMS, SCHEDULE, "disbursement", AccountRules(**rules))


def pay(transaction_id: str, on: date, amount: int, kind=TransactionKind.REPAYMENT, mode=None):
    return LoanTransaction(transaction_id, kind, on, amount, mode=mode)


def reverse(transaction_id: str, on: date, reverses: str) -> LoanTransaction:
    return LoanTransaction(transaction_id, TransactionKind.REVERSAL, on, reverses=reverses)


def closed_to(account: LoanAccount, on: date) -> LoanAccount:
    return close_of_business(account, on)[0]


def pay_on(account: LoanAccount, transaction: LoanTransaction) -> LoanAccount:
    """Apply as the service does: the business dates before a payment are closed first, and a
    write-off's or reversal's own date too."""
    closed = closed_to(account, last_closed_before(transaction.kind, transaction.value_date))
    return apply(closed, transaction)


def last_closed_before(kind: TransactionKind, on: date) -> date:
    return on if kind in (TransactionKind.WRITE_OFF, TransactionKind.REVERSAL) else on - timedelta(days=1)


def rows(schedule):
    return [(i.principal_minor, i.interest_minor, i.total_minor, i.balance_minor)
            for i in schedule.installments]


# --- disbursement and repayments -----------------------------------------------------------------


def test_a_disbursed_loan_owes_its_schedule_and_is_active():
    account = opened()

    assert account.status is LoanStatus.ACTIVE
    assert account.outstanding_minor == 10353
    assert account.principal_outstanding_minor == account.disbursed_minor == 10000
    assert account.closed_through == JAN_2024 and account.bucket is None


def test_a_repayment_pays_the_oldest_overdue_installment_first_in_the_products_order():
    # Nothing paid by 2 March: #1 (17.25) and #2 (17.25) are due. 20.00 with principal before interest:
    # #1's 16.25 principal and 1.00 interest, then #2's principal 2.75.
    account = opened(allocation_order=(Component.PRINCIPAL, Component.INTEREST, Component.FEE,
                                       Component.PENALTY))

    account = pay_on(account, pay("p1", date(2024, 3, 2), 2000))

    assert account.history[-1].parts == ((1, Component.PRINCIPAL, 1625), (1, Component.INTEREST, 100),
                                         (2, Component.PRINCIPAL, 275))
    assert account.paid[0] == Dues(0, 0, 100, 1625) and account.dues[0] == Dues()
    assert account.dues[1] == Dues(0, 0, 84, 1641 - 275)


def test_a_repayment_above_what_is_due_is_refused_when_the_product_refuses_overpayments():
    account = opened(overpayment=OverpaymentRule.REFUSE)

    with pytest.raises(InvalidRepayment) as refused:
        pay_on(account, pay("p1", date(2024, 2, 1), 1726))

    assert refused.value.field == "amount"


def test_an_overpayment_prepays_for_a_smaller_installment_when_the_product_says_so():
    # #1 and #2 paid on their dates, the second with 30.00 more: 67.34 - 30.00 = 37.34 over 4 months
    # at 1 % is 9.57 a month (test_loans.py works the same prepayment through prepay_partially).
    account = opened(overpayment=OverpaymentRule.PREPAY, overpayment_mode=PrepaymentMode.SMALLER_INSTALLMENT)
    account = pay_on(account, pay("p1", date(2024, 2, 1), 1725))

    account = pay_on(account, pay("p2", date(2024, 3, 1), 1725 + 3000))

    assert account.history[-1].prepaid_principal_minor == 3000
    assert [i.total_minor for i in account.schedule.installments[2:]] == [957, 957, 957, 956]
    assert account.principal_outstanding_minor == 3734
    assert account.schedule.principal_minor + account.prepaid_principal_minor == 10000


def test_a_partial_prepayment_for_a_shorter_term_recomputes_the_schedule():
    account = opened()
    account = pay_on(account, pay("p1", date(2024, 2, 1), 1725))

    account = pay_on(account, pay("pp", date(2024, 3, 1), 1725 + 3000, TransactionKind.PREPAYMENT,
                                  PrepaymentMode.SHORTER_TERM))

    assert rows(account.schedule)[2:] == [(1688, 37, 1725, 2046), (1705, 20, 1725, 341), (341, 3, 344, 0)]
    assert len(account.dues) == len(account.paid) == 5


def test_a_flat_loan_prepays_an_overpayment_for_a_smaller_installment_but_refuses_a_shorter_term_asked():
    terms = replace(TERMS, interest_method=InterestMethod.FLAT)
    rules = AccountRules(overpayment=OverpaymentRule.PREPAY, overpayment_mode=PrepaymentMode.SHORTER_TERM)
    account = pay_on(disburse(terms, build_schedule(terms), "disbursement", rules),
                     pay("p1", date(2024, 2, 1), 1767))

    prepaid = pay_on(account, pay("p2", date(2024, 3, 1), 1767 + 1000))
    with pytest.raises(InvalidRepayment) as refused:
        pay_on(account, pay("p2", date(2024, 3, 1), 1767 + 1000, TransactionKind.PREPAYMENT,
                            PrepaymentMode.SHORTER_TERM))

    assert len(prepaid.schedule.installments) == 6 and prepaid.prepaid_principal_minor == 1000
    assert refused.value.field == "mode"


def test_closing_a_business_date_is_also_a_transaction_apply_takes():
    account = opened(daily_penalty_rate=PENALTY)

    closed = apply(account, LoanTransaction("nightly", TransactionKind.PENALTY_ACCRUAL, date(2024, 2, 5)))

    assert closed == closed_to(account, date(2024, 2, 5))
    assert closed.transactions()[-1].value_date == date(2024, 2, 5)


# --- payoff ------------------------------------------------------------------------------------------


def test_a_payoff_pays_the_quote_waives_later_interest_and_closes_the_loan():
    # On 16 Feb with #1 paid: 83.75 principal + #2's interest 0.84 x 15/30 = 0.42 + 2 % of 83.75 = 1.68.
    account = opened(prepayment_penalty_rate=Decimal("0.02"))
    account = pay_on(account, pay("p1", date(2024, 2, 1), 1725))

    account = pay_on(account, pay("off", date(2024, 2, 16), 8585, TransactionKind.PREPAYMENT))

    assert account.status is LoanStatus.CLOSED and account.closed_on == date(2024, 2, 16)
    assert account.outstanding_minor == 0
    assert account.history[-1].prepayment_penalty_minor == 168
    assert account.waived == Dues(0, 0, 84 - 42 + 67 + 51 + 34 + 17, 0)
    # The next nightly run says so, once.
    account, changes = close_of_business(account, date(2024, 2, 16))
    assert LoanClosed(date(2024, 2, 16)) in changes
    assert close_of_business(account, date(2024, 2, 17))[1] == ()


def test_a_payoff_of_another_amount_than_the_quote_is_refused():
    account = opened()
    quote = payoff_quote(TERMS, account.schedule, account.dues, date(2024, 1, 20))

    for amount in (quote.total_minor - 1, quote.total_minor + 1):
        with pytest.raises(InvalidRepayment) as refused:
            pay_on(account, pay("off", date(2024, 1, 20), amount, TransactionKind.PREPAYMENT))
        assert refused.value.field == "amount"


def test_a_closed_loan_refuses_repayments_naming_the_loan():
    account = opened()
    account = pay_on(account, pay("off", date(2024, 1, 1), 10000, TransactionKind.PREPAYMENT))
    assert account.status is LoanStatus.CLOSED

    with pytest.raises(InvalidRepayment) as refused:
        pay_on(account, pay("late", date(2024, 1, 2), 100))
    assert refused.value.field == "loan"


# --- the nightly step --------------------------------------------------------------------------------


def test_the_nightly_step_accrues_penalties_moves_buckets_and_asks_for_the_auto_debit():
    # #1 (16.25 principal) is due 1 Feb and unpaid: 16.25 x 0.1 % = 1.625 -> 0.02 a day from 2 Feb.
    account = opened(daily_penalty_rate=PENALTY)

    account, on_due_date = close_of_business(account, date(2024, 2, 1))
    assert on_due_date == (AutoDebitDue(date(2024, 2, 1), 1725),)
    assert account.dues[0].penalty_minor == 0

    account, changes = close_of_business(account, date(2024, 2, 12))

    assert changes == (BucketChanged(date(2024, 2, 2), None, "1-10", 1),
                       BucketChanged(date(2024, 2, 12), "1-10", "11-30", 11),
                       AutoDebitDue(date(2024, 2, 12), 1725 + 10 * 2))
    assert account.dues[0].penalty_minor == 11 * 2 == account.penalty_charged_minor
    assert (account.days_past_due, account.bucket, account.closed_through) == (11, "11-30", date(2024, 2, 12))


def test_running_the_nightly_step_twice_for_a_date_changes_nothing():
    account = closed_to(opened(daily_penalty_rate=PENALTY), date(2024, 2, 20))

    again, changes = close_of_business(account, date(2024, 2, 20))
    earlier, earlier_changes = close_of_business(account, date(2024, 2, 10))

    assert again == account == earlier
    assert changes == earlier_changes == ()


def test_the_auto_debit_dated_the_business_date_pays_exactly_what_was_asked():
    # The debit is dated the business date and is folded before that day's penalty, so the amount the
    # nightly step asked for settles the overdue installment whole, even once the day is closed.
    account, changes = close_of_business(closed_to(opened(daily_penalty_rate=PENALTY), date(2024, 2, 9)),
                                         date(2024, 2, 10))
    [debit] = [c for c in changes if isinstance(c, AutoDebitDue)]

    account = apply(account, pay("auto-2024-02-10", debit.on, debit.amount_minor))

    assert account.dues[0] == Dues() and account.credit_minor == 0
    assert account.penalty_charged_minor == 8 * 2  # 2 to 9 February; none for the 10th
    # Reprocessing closed the 10th again, after the debit: the loan left its bucket that day.
    assert (account.bucket, account.days_past_due, account.closed_through) == (None, 0, date(2024, 2, 10))


def test_a_payment_after_days_not_yet_closed_is_refused_until_they_are():
    with pytest.raises(InvalidRepayment) as refused:
        apply(opened(), pay("p1", date(2024, 2, 2), 1725))
    assert refused.value.field == "value_date"


def test_the_nightly_step_closes_at_most_a_year_at_once():
    with pytest.raises(InvalidRepayment) as refused:
        close_of_business(opened(), JAN_2024 + timedelta(days=close_days_max + 1))
    assert refused.value.field == "business_date"


# --- write-off -------------------------------------------------------------------------------------


def test_a_write_off_takes_what_is_owed_off_the_books_and_stops_accruals():
    # On 10 Feb #1 is overdue (8 days of 0.02 penalty); principal 100.00 written off with #1's interest
    # and penalty; the interest of the periods still to run is waived, never earned.
    account = closed_to(opened(daily_penalty_rate=PENALTY), date(2024, 2, 10))
    owed_before = account.outstanding_minor

    account = apply(account, LoanTransaction("wo", TransactionKind.WRITE_OFF, date(2024, 2, 10)))

    assert account.status is LoanStatus.WRITTEN_OFF
    assert account.written_off == Dues(18, 0, 100, 10000)
    assert account.written_off.total_minor + account.waived.total_minor == owed_before
    assert closed_to(account, date(2024, 4, 1)).penalty_charged_minor == 18
    with pytest.raises(InvalidRepayment) as refused:
        apply(account, pay("p1", date(2024, 2, 11), 100))
    assert refused.value.field == "loan"


# --- reversal and reprocessing -----------------------------------------------------------------------


def test_a_reversed_repayment_leaves_the_loan_as_if_it_had_never_been_made():
    # #1 paid on 3 Feb (17.25 and a day's penalty), reversed on 20 March (it bounced): the penalty runs
    # from 2 Feb as if unpaid, and the 3.00 paid on 5 March goes to #1 instead of #2.
    rules = {"daily_penalty_rate": PENALTY}
    paid = pay_on(opened(**rules), pay("p1", date(2024, 2, 3), 1727))
    paid = pay_on(paid, pay("p2", date(2024, 3, 5), 300))
    paid = closed_to(paid, date(2024, 3, 20))
    assert paid.dues[0] == Dues() and paid.bucket == "11-30"

    reversed_ = apply(paid, reverse("r1", date(2024, 3, 20), "p1"))
    never = closed_to(pay_on(opened(**rules), pay("p2", date(2024, 3, 5), 300)), date(2024, 3, 20))

    assert reversed_.position() == never.position()
    assert reversed_.reversed_ids == {"p1"}
    assert (reversed_.bucket, reversed_.days_past_due) == ("31-60", 48)


def test_a_backdated_repayment_reprocesses_and_a_later_payment_it_makes_too_large_is_held_as_credit():
    # Live: 17.33 on 6 Feb pays #1 and its 4 days of penalty (0.02 a day). A 10.00 payment dated 3 Feb
    # arrives late: reprocessed, it pays 2 Feb's penalty, the interest and 8.98 of principal, so 3-5 Feb
    # charge 0.01 a day on 7.27; the later payment then owes less, and what it cannot use is held.
    account = closed_to(opened(daily_penalty_rate=PENALTY), date(2024, 2, 5))
    account = closed_to(apply(account, pay("p6", date(2024, 2, 6), 1725 + 4 * 2)), date(2024, 2, 10))

    account = apply(account, pay("p3", date(2024, 2, 3), 1000))

    assert [a.transaction.transaction_id for a in account.history] == ["disbursement", "p3", "p6"]
    assert account.dues[0] == Dues()
    assert account.credit_minor == 1733 + 1000 - 1725 - 2 - 3 * 1
    assert account.history[-1].credit_minor == account.credit_minor
    assert account.position() == replay(TERMS, SCHEDULE, reversed(account.transactions()),
                                        account.rules).position()


@pytest.mark.parametrize(("target", "field"), [("nope", "reverses"), ("disbursement", "reverses")])
def test_a_reversal_names_an_earlier_payment(target, field):
    account = pay_on(opened(), pay("p1", date(2024, 2, 5), 500))
    with pytest.raises(InvalidRepayment) as refused:
        pay_on(account, reverse("r1", date(2024, 2, 5), target))
    assert refused.value.field == field


def test_a_payment_is_reversed_once_and_not_before_it_was_made():
    account = pay_on(opened(), pay("p1", date(2024, 2, 5), 500))
    with pytest.raises(InvalidRepayment):
        pay_on(account, reverse("r0", date(2024, 2, 4), "p1"))
    account = pay_on(account, reverse("r1", date(2024, 2, 5), "p1"))
    with pytest.raises(InvalidRepayment) as refused:
        pay_on(account, reverse("r2", date(2024, 2, 5), "p1"))
    assert refused.value.field == "reverses"


def test_the_same_transaction_applies_once_and_its_id_cannot_be_reused():
    account = pay_on(opened(), pay("p1", date(2024, 2, 5), 500))

    assert apply(account, pay("p1", date(2024, 2, 5), 500)) is account
    with pytest.raises(InvalidRepayment) as refused:
        apply(account, pay("p1", date(2024, 2, 5), 501))
    assert refused.value.field == "transaction_id"


@pytest.mark.parametrize(("fields", "field"), [
    ({"kind": TransactionKind.REPAYMENT, "amount_minor": 0}, "amount"),
    ({"kind": TransactionKind.REPAYMENT, "amount_minor": -5}, "amount"),
    ({"kind": TransactionKind.REPAYMENT, "amount_minor": 12.5}, "amount"),
    ({"kind": TransactionKind.WRITE_OFF, "amount_minor": 5}, "amount"),
    ({"kind": TransactionKind.REPAYMENT, "amount_minor": 5, "mode": PrepaymentMode.SHORTER_TERM}, "mode"),
    ({"kind": TransactionKind.REVERSAL}, "reverses"),
    ({"kind": TransactionKind.REPAYMENT, "amount_minor": 5, "transaction_id": ""}, "transaction_id"),
])
def test_a_malformed_transaction_is_refused_naming_the_field(fields, field):
    values = {"transaction_id": "t", "value_date": JAN_2024} | fields
    with pytest.raises(InvalidRepayment) as refused:
        LoanTransaction(**values)
    assert refused.value.field == field


def test_replay_folds_a_transaction_given_twice_once():
    payment = pay("p1", date(2024, 2, 5), 500)
    account = pay_on(opened(), payment)

    assert replay(TERMS, SCHEDULE, [*account.transactions(), payment, replace(payment)]) == account


def test_replay_needs_one_disbursement_of_the_terms_first():
    with pytest.raises(InvalidRepayment):
        replay(TERMS, SCHEDULE, [pay("p1", date(2024, 1, 5), 500)])
    with pytest.raises(InvalidRepayment):
        replay(TERMS, SCHEDULE, [LoanTransaction("d", TransactionKind.DISBURSEMENT, JAN_2024, 9999)])


# --- properties ------------------------------------------------------------------------------------


@st.composite
def loans(draw):
    term = draw(st.integers(2, 9))
    terms = LoanTerms(
        principal_minor=draw(st.integers(1000, 10**7)),
        annual_rate=Decimal(draw(st.integers(0, 3600))) / 10000,
        term_months=term,
        disbursed_on=draw(st.dates(date(2023, 10, 1), date(2024, 3, 31))),
        amortization=draw(st.sampled_from(Amortization)),
        interest_method=draw(st.sampled_from(InterestMethod)),
        day_count=draw(st.sampled_from(DayCount)),
        installment_fee_minor=draw(st.sampled_from([0, 0, 150])),
    )
    rules = AccountRules(
        allocation_order=tuple(draw(st.permutations(list(Component)))),
        overpayment=draw(st.sampled_from(OverpaymentRule)),
        overpayment_mode=draw(st.sampled_from(PrepaymentMode)),
        daily_penalty_rate=draw(st.sampled_from([Decimal(0), Decimal("0.0005"), Decimal("0.003")])),
        prepayment_penalty_rate=draw(st.sampled_from([Decimal(0), Decimal("0.02")])),
    )
    horizon = (term + 2) * 31
    events = []
    for n in range(draw(st.integers(1, 8))):
        on = terms.disbursed_on + timedelta(days=draw(st.integers(0, horizon)))
        kind = draw(st.sampled_from(["repay", "repay", "repay", "prepay", "payoff", "reverse", "write_off"]))
        events.append((n, kind, on, draw(st.integers(1, terms.principal_minor // 2))))
    arrival = draw(st.permutations(range(len(events))))
    return terms, rules, events, arrival, terms.disbursed_on + timedelta(days=horizon)


def transaction_of(account: LoanAccount, event) -> LoanTransaction:
    n, kind, on, amount = event
    if kind == "repay":
        return pay(f"t{n}", on, amount)
    if kind == "prepay":
        return pay(f"t{n}", on, max(1, amount // 5), TransactionKind.PREPAYMENT, PrepaymentMode.SHORTER_TERM)
    if kind == "payoff":
        quote = payoff_quote(account.terms, account.schedule, account.dues, on,
                             account.rules.prepayment_penalty_rate)
        return pay(f"t{n}", on, quote.total_minor, TransactionKind.PREPAYMENT)
    if kind == "reverse":
        payments = [a.transaction for a in account.history
                    if a.transaction.kind in (TransactionKind.REPAYMENT, TransactionKind.PREPAYMENT)]
        target = payments[amount % len(payments)] if payments else None
        return reverse(f"t{n}", max(on, target.value_date) if target else on, target.transaction_id
                       if target else "none")
    return LoanTransaction(f"t{n}", TransactionKind.WRITE_OFF, on)


def lived(terms, rules, events, arrival, end) -> LoanAccount:
    """The account as a service would build it: transactions in arrival order, the business dates before
    each closed first, refused ones dropped, then every date to the end closed."""
    account = disburse(terms, build_schedule(terms), "disbursement", rules)
    for index in arrival:
        try:
            n, kind, on, amount = events[index]
            closed = closed_to(account, on - timedelta(days=1))
            account = pay_on(account, transaction_of(closed, events[index]))
        except LoanRuleError:
            continue
    return closed_to(account, end)


def check_exact(account: LoanAccount) -> None:
    schedule = account.schedule
    assert sum(i.principal_minor for i in schedule.installments) == schedule.principal_minor
    assert schedule.principal_minor + account.prepaid_principal_minor == account.disbursed_minor
    assert schedule.interest_minor == sum(i.interest_minor for i in schedule.installments)
    assert schedule.installments[-1].balance_minor == 0
    assert account.outstanding_minor >= 0 and all(d.of(c) >= 0 for d in account.dues for c in Component)
    paid = sum(p.principal_minor for p in account.paid)
    gone = paid + account.prepaid_principal_minor + account.written_off.principal_minor
    assert account.disbursed_minor == gone + account.principal_outstanding_minor
    order = {c: i for i, c in enumerate(account.rules.allocation_order)}
    for applied in account.history:
        if applied.transaction.transaction_id in account.reversed_ids:
            assert applied == Applied(applied.transaction), "a reversed payment is left out whole"
        elif applied.transaction.kind in (TransactionKind.REPAYMENT, TransactionKind.PREPAYMENT):
            spent = (applied.allocated_minor + applied.prepaid_principal_minor
                     + applied.prepayment_penalty_minor + applied.credit_minor)
            assert spent == applied.transaction.amount_minor
            keys = [(number, order[component]) for number, component, _ in applied.parts]
            assert keys == sorted(keys), "oldest installment first, each in the configured order"
    if account.status is LoanStatus.ACTIVE:
        assert account.outstanding_minor > 0


@settings(max_examples=60, deadline=None)
@given(loans())
def test_any_arrival_order_gives_the_account_that_date_order_gives(loan):
    terms, rules, events, arrival, end = loan

    account = lived(terms, rules, events, arrival, end)
    log = list(account.transactions())
    random.Random(len(log)).shuffle(log)

    check_exact(account)
    assert replay(terms, build_schedule(terms), log, rules) == account


@settings(max_examples=60, deadline=None)
@given(loans(), st.data())
def test_a_reversal_ends_exactly_as_if_the_payment_had_never_happened(loan, data):
    terms, rules, events, arrival, end = loan
    account = lived(terms, rules, events, arrival, end)
    payments = [a.transaction for a in account.history if a.transaction.kind
                in (TransactionKind.REPAYMENT, TransactionKind.PREPAYMENT)
                and a.transaction.transaction_id not in account.reversed_ids]
    if not payments:
        return
    target = data.draw(st.sampled_from(payments))

    reversed_ = apply(account, reverse("bounced", end, target.transaction_id))
    without = [t for t in account.transactions() if t.transaction_id != target.transaction_id]

    check_exact(reversed_)
    assert reversed_.position() == replay(terms, build_schedule(terms), without, rules).position()


@settings(max_examples=40, deadline=None)
@given(loans())
def test_the_nightly_step_is_idempotent_by_date(loan):
    terms, rules, events, arrival, end = loan
    account = lived(terms, rules, events, arrival, end)

    assert close_of_business(account, end) == (account, ())
    later, _ = close_of_business(account, end + timedelta(days=3))
    assert close_of_business(later, end + timedelta(days=3)) == (later, ())
    assert amount_due(later, end + timedelta(days=3)) <= later.outstanding_minor


def test_replay_does_not_depend_on_the_order_it_is_given():
    account = pay_on(pay_on(opened(daily_penalty_rate=PENALTY), pay("a", date(2024, 2, 9), 900)),
                     pay("b", date(2024, 3, 9), 2000))
    account = closed_to(account, date(2024, 4, 1))
    log = list(account.transactions())

    assert replay(TERMS, SCHEDULE, log[::-1], account.rules) == account
    assert replace(account, history=()) == account.position()
