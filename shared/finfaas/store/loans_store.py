"""The loans table (HASH pk, RANGE sk): loan products and loans.

Items:
- `product` / `<product id>`: a loan product as JSON text (`doc`), its `version` and `status`. All
  products share one partition, so a list is one Query in id order (never a Scan): ops create a few
  dozen products, far below one partition's limits.
- `loan#<loan id>` / `-`: a loan as JSON text (`doc`), its `version`, `status` and `owner_id`.

An item is created with `attribute_not_exists` (its id is the guard) and changed by a put conditional
on the stored version, so two writers never overwrite each other's change. A loan's creation and each
of its changes write its outbox event in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.ledger import entry_key_prefix, micros
from finfaas.domain.loan_account import TransactionKind
from finfaas.domain.loan_underwriting import Decision, Finding, Outcome, Verdict
from finfaas.domain.loans import (
    Amortization,
    Bucket,
    Component,
    DayCount,
    Dues,
    Installment,
    InterestMethod,
    PrepaymentMode,
)
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.loans.errors import LoansStoreUnavailable
from finfaas.services.loans.model import (
    Loan,
    LoanEvent,
    LoanFigures,
    LoanProduct,
    LoanStatus,
    LoanTransaction,
    OverpaymentRule,
    ProductPage,
    ProductStatus,
)
from finfaas.store.binding import RETRY_ATTEMPTS_MAX, StoreMeta, bound
from finfaas.store.dynamo import any_condition_failed, conditional_write, consistent_get, create_with_event
from finfaas.store.models import OutboxRecord, format_time, parse_time
from finfaas.store.outbox_store import outbox_partition

LOANS_TABLE_LOGICAL_NAME = "loans"
OUTBOX_TABLE_LOGICAL_NAME = "outbox"
EVENT_SOURCE = "finfaas/loans"
OUTBOX_PRODUCER = "loans"
PRODUCTS_PARTITION = "product"
NO_RANGE = "-"


class _LoansItem(Model):
    """Every item of the table; which attributes are set depends on the item's kind."""

    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute()
    version = NumberAttribute()
    status = UnicodeAttribute()
    owner_id = UnicodeAttribute(null=True)  # loans only


class _OutboxItem(OutboxRecord):
    Meta = StoreMeta


def product_to_json(product: LoanProduct) -> str:
    document = {
        "product_id": product.product_id,
        "name": product.name,
        "currency": product.currency,
        # Amounts and rates as text: JSON numbers are floats to many readers.
        "principal_minor_min": str(product.principal_minor_min),
        "principal_minor_max": str(product.principal_minor_max),
        "term_months_min": product.term_months_min,
        "term_months_max": product.term_months_max,
        "annual_rate": str(product.annual_rate),
        "amortization": product.amortization.value,
        "interest_method": product.interest_method.value,
        "day_count": product.day_count.value,
        "principal_grace_months": product.principal_grace_months,
        "interest_grace_months": product.interest_grace_months,
        "installment_fee_minor": str(product.installment_fee_minor),
        "daily_penalty_rate": str(product.daily_penalty_rate),
        "prepayment_penalty_rate": str(product.prepayment_penalty_rate),
        "allocation_order": [c.value for c in product.allocation_order],
        "overpayment": product.overpayment.value,
        "buckets": [{"name": b.name, "first_day": b.first_day, "last_day": b.last_day}
                    for b in product.buckets],
        "bureau_waiver_principal_minor_max": str(product.bureau_waiver_principal_minor_max),
        "status": product.status.value,
        "version": product.version,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def product_from_json(text: str) -> LoanProduct:
    raw: dict[str, Any] = jsonio.loads(text)
    return LoanProduct(
        product_id=raw["product_id"],
        name=raw["name"],
        currency=raw["currency"],
        principal_minor_min=int(raw["principal_minor_min"]),
        principal_minor_max=int(raw["principal_minor_max"]),
        term_months_min=int(raw["term_months_min"]),
        term_months_max=int(raw["term_months_max"]),
        annual_rate=Decimal(raw["annual_rate"]),
        amortization=Amortization(raw["amortization"]),
        interest_method=InterestMethod(raw["interest_method"]),
        day_count=DayCount(raw["day_count"]),
        principal_grace_months=int(raw["principal_grace_months"]),
        interest_grace_months=int(raw["interest_grace_months"]),
        installment_fee_minor=int(raw["installment_fee_minor"]),
        daily_penalty_rate=Decimal(raw["daily_penalty_rate"]),
        prepayment_penalty_rate=Decimal(raw["prepayment_penalty_rate"]),
        allocation_order=tuple(Component(c) for c in raw["allocation_order"]),
        overpayment=OverpaymentRule(raw["overpayment"]),
        buckets=tuple(Bucket(b["name"], int(b["first_day"]),
                             None if b["last_day"] is None else int(b["last_day"])) for b in raw["buckets"]),
        bureau_waiver_principal_minor_max=int(raw.get("bureau_waiver_principal_minor_max", "0")),
        status=ProductStatus(raw["status"]),
        version=int(raw["version"]),
    )


def _decision_document(decision: Decision) -> dict[str, Any]:
    return {"outcome": decision.outcome.value, "bureau_unavailable": decision.bureau_unavailable,
            "findings": [{"rule": f.rule, "verdict": f.verdict.value, "detail": f.detail}
                         for f in decision.findings]}


def _decision(raw: dict[str, Any]) -> Decision:
    return Decision(Outcome(raw["outcome"]),
                    tuple(Finding(f["rule"], Verdict(f["verdict"]), f["detail"]) for f in raw["findings"]),
                    bool(raw["bureau_unavailable"]))


def loan_to_json(loan: Loan) -> str:
    document = {
        "loan_id": loan.loan_id,
        "owner_id": loan.owner_id,
        "product_id": loan.product_id,
        "account_id": loan.account_id,
        "currency": loan.currency,
        "principal_minor": str(loan.principal_minor),
        "term_months": loan.term_months,
        "monthly_income_minor": str(loan.monthly_income_minor),
        "monthly_debt_minor": str(loan.monthly_debt_minor),
        "status": loan.status.value,
        "decision": _decision_document(loan.decision),
        "created_at": format_time(loan.created_at),
        "decided_by": loan.decided_by,
        "review_note": loan.review_note,
        "review_token": loan.review_token,
        "updated_at": format_time(loan.updated_at) if loan.updated_at else None,
        "version": loan.version,
        "disbursed_on": loan.disbursed_on.isoformat() if loan.disbursed_on else None,
        # One row per installment (number, period start and end, due date, principal, interest, fee,
        # balance): a 600-month schedule stays far below DynamoDB's 400 KB item limit.
        "installments": [_installment_row(i) for i in loan.installments],
        # Per installment, what was paid of it (penalty, fee, interest, principal); empty: nothing yet.
        "paid": [_dues_row(d) for d in loan.paid],
        "transactions": [_transaction_document(t) for t in loan.transactions],
        "disbursed_installments": [_installment_row(i) for i in loan.disbursed_installments],
        "figures": None if loan.figures is None else _figures_document(loan.figures),
        "auto_debit": loan.auto_debit,
        # Sealed under the loan id (the envelope, the masked form and keyed digests): never the number.
        "bank_account": None if loan.bank_account is None else loan.bank_account.to_json(),
        "disbursement_failure": loan.disbursement_failure,
        "payout_attention": loan.payout_attention,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _installment_row(i: Installment) -> list[Any]:
    return [i.number, i.period_start.isoformat(), i.period_end.isoformat(), i.due_on.isoformat(),
            str(i.principal_minor), str(i.interest_minor), str(i.fee_minor), str(i.balance_minor)]


def _dues_row(d: Dues) -> list[str]:
    return [str(d.penalty_minor), str(d.fee_minor), str(d.interest_minor), str(d.principal_minor)]


def _dues(row: list[Any]) -> Dues:
    return Dues(*(int(part) for part in row))


def _transaction_document(t: LoanTransaction) -> dict[str, Any]:
    return {"id": t.transaction_id, "kind": t.kind.value, "value_date": t.value_date.isoformat(),
            "amount_minor": str(t.amount_minor), "mode": t.mode.value if t.mode else None,
            "reverses": t.reverses}


def _transaction(raw: dict[str, Any]) -> LoanTransaction:
    return LoanTransaction(raw["id"], TransactionKind(raw["kind"]), date.fromisoformat(raw["value_date"]),
                           int(raw["amount_minor"]), PrepaymentMode(raw["mode"]) if raw.get("mode") else None,
                           raw.get("reverses"))


def _figures_document(f: LoanFigures) -> dict[str, Any]:
    return {"closed_through": f.closed_through.isoformat(), "dues": [_dues_row(d) for d in f.dues],
            "written_off": _dues_row(f.written_off), "days_past_due": f.days_past_due, "bucket": f.bucket}


def _figures(raw: dict[str, Any] | None) -> LoanFigures | None:
    if raw is None:
        return None
    return LoanFigures(date.fromisoformat(raw["closed_through"]), tuple(_dues(row) for row in raw["dues"]),
                       _dues(raw["written_off"]), int(raw["days_past_due"]), raw.get("bucket"))


def _installment(row: list[Any]) -> Installment:
    number, start, end, due, principal, interest, fee, balance = row
    return Installment(int(number), date.fromisoformat(start), date.fromisoformat(end),
                       date.fromisoformat(due), int(principal), int(interest), int(fee), int(balance))


def loan_from_json(text: str) -> Loan:
    raw: dict[str, Any] = jsonio.loads(text)
    return Loan(
        loan_id=raw["loan_id"],
        owner_id=raw["owner_id"],
        product_id=raw["product_id"],
        account_id=raw["account_id"],
        currency=raw["currency"],
        principal_minor=int(raw["principal_minor"]),
        term_months=int(raw["term_months"]),
        monthly_income_minor=int(raw["monthly_income_minor"]),
        monthly_debt_minor=int(raw["monthly_debt_minor"]),
        status=LoanStatus(raw["status"]),
        decision=_decision(raw["decision"]),
        created_at=parse_time(raw["created_at"]),
        decided_by=raw.get("decided_by"),
        review_note=raw.get("review_note", ""),
        review_token=raw.get("review_token"),
        updated_at=parse_time(raw["updated_at"]) if raw.get("updated_at") else None,
        version=int(raw["version"]),
        disbursed_on=date.fromisoformat(raw["disbursed_on"]) if raw.get("disbursed_on") else None,
        installments=tuple(_installment(row) for row in raw.get("installments", ())),
        paid=tuple(_dues(row) for row in raw.get("paid", ())),
        transactions=tuple(_transaction(t) for t in raw.get("transactions", ())),
        disbursed_installments=tuple(_installment(row) for row in raw.get("disbursed_installments", ())),
        figures=_figures(raw.get("figures")),
        auto_debit=bool(raw.get("auto_debit", False)),
        bank_account=SealedCreditor.from_json(raw["bank_account"]) if raw.get("bank_account") else None,
        disbursement_failure=raw.get("disbursement_failure", ""),
        payout_attention=raw.get("payout_attention", ""),
    )


LOAN_PK_PREFIX = "loan#"
# Items one Scan call reads (loans and close records): a full 1 MB page of loan documents took longer
# than the read timeout on a loaded DynamoDB Local with 8 segments scanning at once.
SCAN_PAGE_ITEMS = 200


def _loan_key(loan_id: str) -> tuple[str, str]:
    return f"{LOAN_PK_PREFIX}{loan_id}", NO_RANGE


class LoansStore:
    """Loan products and loans on DynamoDB (pynamodb): a LoanProductRepository and a LoanRepository.
    Thread-safe; share one per process."""

    def __init__(self, table_name: str | None = None, outbox_table_name: str | None = None,
                 region: str | None = None) -> None:
        self.table_name = table_name or resource_name(LOANS_TABLE_LOGICAL_NAME)
        region = region or settings().region
        self._item: Any = bound(_LoansItem, self.table_name, region)
        self._outbox: Any = bound(_OutboxItem, outbox_table_name or resource_name(OUTBOX_TABLE_LOGICAL_NAME),
                                  region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)

    def _product_item(self, product: LoanProduct) -> Any:
        return self._item(PRODUCTS_PARTITION, product.product_id, doc=product_to_json(product),
                          version=product.version, status=product.status.value)

    def create(self, product: LoanProduct) -> LoanProduct:
        item = self._product_item(product)
        written = conditional_write(lambda: item.save(condition=self._item.pk.does_not_exist()))
        if written.taken:
            return product
        if any_condition_failed(written.error):
            existing = self.get(product.product_id)
            if existing is not None:
                return existing
        raise LoansStoreUnavailable(f"create loan product {product.product_id}: {written.code}") \
            from written.error

    def get(self, product_id: str) -> LoanProduct | None:
        item = consistent_get(self._item, (PRODUCTS_PARTITION, product_id),
                              lambda error: LoansStoreUnavailable(f"read loan product {product_id}: {error}"))
        return None if item is None else product_from_json(item.doc)

    def save(self, product: LoanProduct) -> bool:
        item = self._product_item(product)
        written = conditional_write(lambda: item.save(condition=self._item.version == product.version - 1))
        return written.or_raise(lambda failed: LoansStoreUnavailable(
            f"save loan product {product.product_id}: {failed.code}"))

    def page(self, limit: int, after: str | None) -> ProductPage:
        model = self._item
        start = None if after is None else {"pk": {"S": PRODUCTS_PARTITION}, "sk": {"S": after}}
        try:
            found = model.query(PRODUCTS_PARTITION, limit=limit, last_evaluated_key=start,
                                consistent_read=True)
            products = tuple(product_from_json(item.doc) for item in found)
            last = found.last_evaluated_key
        except PynamoDBException as error:
            raise LoansStoreUnavailable(f"list loan products: {error}") from error
        # DynamoDB may answer a full page with a key and nothing after it: the next page is then empty.
        return ProductPage(products, None if last is None else last["sk"]["S"])

    # -- loans ----------------------------------------------------------------------------------------

    def create_loan(self, loan: Loan, event: LoanEvent) -> Loan:
        return create_with_event(
            self._connection, self._loan_item(loan), self._item.pk.does_not_exist(),
            self._event_item(loan, event), loan, lambda: self.get_loan(loan.loan_id),
            lambda written: LoansStoreUnavailable(f"create loan {loan.loan_id}: {written.code}"))

    def get_loan(self, loan_id: str) -> Loan | None:
        item = consistent_get(self._item, _loan_key(loan_id),
                              lambda error: LoansStoreUnavailable(f"read loan {loan_id}: {error}"))
        return None if item is None else loan_from_json(item.doc)

    def scan_loans(self, segment: int | None = None, segments: int | None = None) -> Iterator[Loan]:
        """Every loan, in no order, read consistently (a reconciliation's full pass, not a request path);
        with segment and segments, one of that many parallel Scan segments."""
        try:
            # A loan's partition also holds the nightly job's close record: only the loan item itself.
            loans_only = self._item.pk.startswith(LOAN_PK_PREFIX) & (self._item.sk == NO_RANGE)
            for item in self._item.scan(filter_condition=loans_only, consistent_read=True, segment=segment,
                                        total_segments=segments, page_size=SCAN_PAGE_ITEMS):
                yield loan_from_json(item.doc)
        except PynamoDBException as error:
            raise LoansStoreUnavailable(f"scan loans: {error}") from error

    def save_loan(self, loan: Loan, event: LoanEvent | None) -> bool:
        item = self._loan_item(loan)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(item, condition=self._item.version == loan.version - 1)
                if event is not None:
                    transaction.save(self._event_item(loan, event))

        written = conditional_write(transact)
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        raise LoansStoreUnavailable(f"save loan {loan.loan_id}: {written.code}") from written.error

    def loan_put(self, loan: Loan) -> tuple[Any, Any]:
        return self._loan_item(loan), self._item.version == loan.version - 1

    def event_put(self, loan: Loan, event: LoanEvent) -> tuple[Any, Any]:
        return self._event_item(loan, event), None

    def loan_from_raw(self, raw_item: dict[str, Any]) -> Loan:
        return loan_from_json(self._item.from_raw_data(raw_item).doc)

    def _loan_item(self, loan: Loan) -> Any:
        return self._item(*_loan_key(loan.loan_id), doc=loan_to_json(loan), version=loan.version,
                          status=loan.status.value, owner_id=loan.owner_id)

    def _event_item(self, loan: Loan, event: LoanEvent) -> Any:
        """The outbox record; its id names the loan's version, so each change has one event, written
        again under the same key by any retry."""
        now = loan.updated_at or loan.created_at
        event_id = f"{event.type}:{loan.loan_id}:{loan.version}"
        return self._outbox(
            outbox_partition(OUTBOX_PRODUCER, loan.loan_id), f"{entry_key_prefix(micros(now))}#{event_id}",
            event_id=event_id, type=event.type, source=EVENT_SOURCE, subject=loan.loan_id,
            time=format_time(now), data=json.dumps(dict(event.data), separators=(",", ":"), sort_keys=True))
