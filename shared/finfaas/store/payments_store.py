"""The payments table (HASH pk, RANGE sk): merchants and payment intents (with their refunds and disputes).

Items:
- `merchant#<merchant id>` / `-`: the merchant as JSON text (`doc`), its `version` and `status`;
- merchants also carry `listed` (`merchant`) and `merchant_id` for the sparse, keys-only merchants index
  the daily settlement run pages through; `settlement-run#<business date>` / `-` is that run's progress;
- `settlement#<merchant id>` / `<business date>`: a merchant's settlement of that date (JSON `doc`,
  `version`, `status`), the partition read newest first for the latest;
- `settlement-next#<merchant id>` / `<business date>` (or `first`): written with the settlement that follows
  that date (JSON `doc` naming it), so only one settlement ever follows each;
- `intent#<payment id>` / `-`: the payment intent, the same way, with `merchant_id`, `owner_id` and
  `created_key` (creation time and id) for the two sparse indexes lists read: by-merchant, by-owner;
  while it is capturable, also `expiry_shard` and `expiry_due_key` (`<when the expiry job next acts>#<id>`)
  for the sparse, keys-only by-expiry index the job queries (never a Scan).

by-expiry spreads its entries over `expiry_index_shards` partitions (`crc32(payment id) mod N`): every
confirmation, warning and end of a capturable intent writes the index, and one partition would cap that
at about 1,000 writes/s; the job reads the N partitions' oldest due keys and merges them.

An item is created with `attribute_not_exists` (its id is the guard) and changed by a put conditional
on the stored version, so two writers never overwrite each other's change. An intent change that moves
money is not written here: `intent_put` hands the item and its condition to the ledger's transaction.
"""

from __future__ import annotations

import json
import zlib
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.ledger import entry_key_prefix, micros
from finfaas.domain.payments import FeeSchedule, Rounding, reserve_period_days_default
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.payments.errors import PaymentsStoreUnavailable, SettlementOutOfOrder
from finfaas.services.payments.model import (
    CancellationReason,
    CaptureMethod,
    Dispute,
    DisputeStatus,
    IntentEvent,
    IntentFilter,
    IntentPage,
    IntentStatus,
    LedgerStep,
    Merchant,
    MerchantStatus,
    PaymentIntent,
    Refund,
    RefundReason,
    RefundStatus,
    RunProgress,
    Settlement,
    SettlementAccount,
    SettlementLeg,
    SettlementStatus,
)
from finfaas.store.binding import RETRY_ATTEMPTS_MAX, StoreMeta, bound
from finfaas.store.dynamo import any_condition_failed, conditional_write, create_with_event
from finfaas.store.models import OutboxRecord, format_time, parse_time
from finfaas.store.outbox_store import outbox_partition

PAYMENTS_TABLE_LOGICAL_NAME = "payments"
OUTBOX_TABLE_LOGICAL_NAME = "outbox"
EVENT_SOURCE = "finfaas/payments"
OUTBOX_PRODUCER = "payments"
NO_RANGE = "-"
# Bounds of every created_key (`<UTC time>#<id>`, the time starting with its year's digits); DynamoDB
# refuses an empty string as a key condition's value.
CREATED_KEY_LOWEST, CREATED_KEY_HIGHEST = "0", "~"
EXPIRY_INDEX = "by-expiry"
SETTLEMENT_PREFIX = "settlement#"
SETTLEMENT_RUN_PREFIX = "settlement-run#"
SETTLEMENT_NEXT_PREFIX = "settlement-next#"
FIRST_SETTLEMENT = "first"
MERCHANTS_INDEX = "merchants"
MERCHANT_LISTED = "merchant"  # the one partition of the merchants index
expiry_index_shards = 8


class _PaymentsItem(Model):
    """Every item of the table; which attributes are set depends on the item's kind."""

    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute()
    version = NumberAttribute()
    status = UnicodeAttribute()
    # Intents only (sparse indexes):
    merchant_id = UnicodeAttribute(null=True)
    owner_id = UnicodeAttribute(null=True)
    created_key = UnicodeAttribute(null=True)
    # Capturable intents only (the by-expiry index):
    expiry_shard = UnicodeAttribute(null=True)
    expiry_due_key = UnicodeAttribute(null=True)
    # Merchants only (the merchants index):
    listed = UnicodeAttribute(null=True)


class _OutboxItem(OutboxRecord):
    Meta = StoreMeta


class _ByMerchant(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-merchant"
        projection = AllProjection()

    merchant_id = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class _ByOwner(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-owner"
        projection = AllProjection()

    owner_id = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class _ByExpiry(GlobalSecondaryIndex):
    class Meta:
        index_name = EXPIRY_INDEX
        projection = KeysOnlyProjection()  # the job reads each intent itself, consistently, before acting

    expiry_shard = UnicodeAttribute(hash_key=True)
    expiry_due_key = UnicodeAttribute(range_key=True)


class _Merchants(GlobalSecondaryIndex):
    class Meta:
        index_name = MERCHANTS_INDEX
        projection = KeysOnlyProjection()

    listed = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute(range_key=True)


@lru_cache(maxsize=8)
def _model(table_name: str, region: str) -> Any:
    # pynamodb ties an index to the model class that declares it: the bound model declares its own.
    indexes = {name: type(base.__name__, (base,), {"Meta": type("Meta", (base.Meta,), {})})()
               for name, base in (("by_merchant", _ByMerchant), ("by_owner", _ByOwner),
                                  ("by_expiry", _ByExpiry), ("merchants", _Merchants))}
    meta = type("Meta", (StoreMeta,), {"table_name": table_name, "region": region})
    return type("PaymentsItem", (_PaymentsItem,), {"Meta": meta, **indexes, "__module__": __name__})


def created_key(intent: PaymentIntent) -> str:
    """Sorts by creation time, then id: `<UTC time>#<payment id>`."""
    return f"{format_time(intent.created_at)}#{intent.payment_id}"


def expiry_shard(payment_id: str) -> str:
    """The by-expiry partition of an intent."""
    return str(zlib.crc32(payment_id.encode()) % expiry_index_shards)


def expiry_due_key(intent: PaymentIntent) -> str | None:
    """`<when the expiry job next acts>#<payment id>` while the intent is capturable; else None."""
    due = intent.expiry_due_at()
    return None if due is None else f"{format_time(due)}#{intent.payment_id}"


def merchant_key(merchant_id: str) -> tuple[str, str]:
    return f"merchant#{merchant_id}", NO_RANGE


def _intent_key(payment_id: str) -> tuple[str, str]:
    return f"intent#{payment_id}", NO_RANGE


def _run_key(business_date: date) -> tuple[str, str]:
    return f"{SETTLEMENT_RUN_PREFIX}{business_date.isoformat()}", NO_RANGE


def _settlement_key(merchant_id: str, business_date: date) -> tuple[str, str]:
    return f"{SETTLEMENT_PREFIX}{merchant_id}", business_date.isoformat()


def settlement_to_json(settlement: Settlement) -> str:
    document = {
        "merchant_id": settlement.merchant_id, "business_date": settlement.business_date.isoformat(),
        "currency": settlement.currency, "status": settlement.status.value,
        "cut_at": format_time(settlement.cut_at), "cuts": [list(cut) for cut in settlement.cuts],
        "captures_minor": str(settlement.captures_minor), "refunds_minor": str(settlement.refunds_minor),
        "fees_minor": str(settlement.fees_minor), "fees_carried_minor": str(settlement.fees_carried_minor),
        "dispute_losses_minor": str(settlement.dispute_losses_minor),
        "reserve_minor": str(settlement.reserve_minor), "payout_minor": str(settlement.payout_minor),
        "entries": settlement.entries,
        "legs": [{"transfer_id": leg.transfer_id, "debit_account_id": leg.debit_account_id,
                  "credit_account_id": leg.credit_account_id, "amount_minor": str(leg.amount_minor),
                  "purpose": leg.purpose} for leg in settlement.legs],
        "created_at": format_time(settlement.created_at), "paid_at": _time_or_none(settlement.paid_at),
        "version": settlement.version,
    }
    if settlement.payout_status:  # the rail's answer; earlier settlements keep their shape
        document.update(payout_status=settlement.payout_status,
                        payout_reversal_id=settlement.payout_reversal_id)
    if settlement.reserve_released_through is not None:  # a release was counted; older ones keep their shape
        document.update(reserve_released_minor=str(settlement.reserve_released_minor),
                        reserve_due_minor=str(settlement.reserve_due_minor),
                        reserve_released_after=_date_or_none(settlement.reserve_released_after),
                        reserve_released_through=settlement.reserve_released_through.isoformat())
    if settlement.payout_resolved_by:  # ended by an operator
        document.update(payout_resolved_by=settlement.payout_resolved_by,
                        payout_resolution_reason=settlement.payout_resolution_reason)
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def settlement_from_json(text: str) -> Settlement:
    raw: dict[str, Any] = jsonio.loads(text)
    return Settlement(
        merchant_id=raw["merchant_id"], business_date=date.fromisoformat(raw["business_date"]),
        currency=raw["currency"], status=SettlementStatus(raw["status"]), cut_at=parse_time(raw["cut_at"]),
        cuts=tuple((shard, key) for shard, key in raw["cuts"]),
        captures_minor=int(raw["captures_minor"]), refunds_minor=int(raw["refunds_minor"]),
        fees_minor=int(raw["fees_minor"]), fees_carried_minor=int(raw["fees_carried_minor"]),
        dispute_losses_minor=int(raw["dispute_losses_minor"]), reserve_minor=int(raw["reserve_minor"]),
        payout_minor=int(raw["payout_minor"]), entries=int(raw["entries"]),
        legs=tuple(SettlementLeg(leg["transfer_id"], leg["debit_account_id"], leg["credit_account_id"],
                                 int(leg["amount_minor"]), leg["purpose"]) for leg in raw["legs"]),
        created_at=parse_time(raw["created_at"]),
        paid_at=parse_time(raw["paid_at"]) if raw.get("paid_at") else None, version=int(raw["version"]),
        payout_status=raw.get("payout_status", ""), payout_reversal_id=raw.get("payout_reversal_id"),
        payout_resolved_by=raw.get("payout_resolved_by", ""),
        payout_resolution_reason=raw.get("payout_resolution_reason", ""),
        reserve_released_minor=int(raw.get("reserve_released_minor", "0")),
        reserve_due_minor=int(raw.get("reserve_due_minor", "0")),
        reserve_released_after=_parse_date(raw.get("reserve_released_after")),
        reserve_released_through=_parse_date(raw.get("reserve_released_through")))


def _date_or_none(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _parse_date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def merchant_to_json(merchant: Merchant) -> str:
    document = {
        "merchant_id": merchant.merchant_id,
        "name": merchant.name,
        "currency": merchant.currency,
        "settlement": {"bank_code": merchant.settlement.bank_code,
                       "account_number": merchant.settlement.account_number,
                       "name": merchant.settlement.name},
        "fees": {"bps": merchant.fees.bps, "fixed_minor": str(merchant.fees.fixed_minor),
                 "rounding": merchant.fees.rounding.value},
        "reserve_bps": merchant.reserve_bps,
        "reserve_period_days": merchant.reserve_period_days,
        "capture_window_seconds": merchant.capture_window_seconds,
        "receivable_shards": merchant.receivable_shards,
        "status": merchant.status.value,
        "created_at": format_time(merchant.created_at),
        "updated_at": format_time(merchant.updated_at) if merchant.updated_at else None,
        "version": merchant.version,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def merchant_from_json(text: str) -> Merchant:
    raw: dict[str, Any] = jsonio.loads(text)
    settlement, fees = raw["settlement"], raw["fees"]
    return Merchant(
        merchant_id=raw["merchant_id"],
        name=raw["name"],
        currency=raw["currency"],
        settlement=SettlementAccount(settlement["bank_code"], settlement["account_number"],
                                     settlement["name"]),
        fees=FeeSchedule(int(fees["bps"]), int(fees["fixed_minor"]), Rounding(fees["rounding"])),
        reserve_bps=int(raw["reserve_bps"]),
        reserve_period_days=int(raw.get("reserve_period_days", reserve_period_days_default)),
        capture_window_seconds=int(raw["capture_window_seconds"]),
        receivable_shards=int(raw["receivable_shards"]),
        status=MerchantStatus(raw["status"]),
        created_at=parse_time(raw["created_at"]),
        updated_at=parse_time(raw["updated_at"]) if raw.get("updated_at") else None,
        version=int(raw["version"]),
    )


def _time_or_none(moment: Any) -> str | None:
    return format_time(moment) if moment is not None else None


def intent_to_json(intent: PaymentIntent) -> str:
    document = {
        "payment_id": intent.payment_id,
        "owner_id": intent.owner_id,
        "customer_account_id": intent.customer_account_id,
        "merchant_id": intent.merchant_id,
        "receivable_account_id": intent.receivable_account_id,
        # Amounts as text: JSON numbers are floats to many readers.
        "amount_minor": str(intent.amount_minor),
        "currency": intent.currency,
        "capture_method": intent.capture_method.value,
        "application_fee_minor": str(intent.application_fee_minor),
        "created_at": format_time(intent.created_at),
        "status": intent.status.value,
        "metadata": dict(intent.metadata),
        "statement_descriptor": intent.statement_descriptor,
        "confirm": intent.confirm,
        "amount_capturable_minor": str(intent.amount_capturable_minor),
        "amount_received_minor": str(intent.amount_received_minor),
        "amount_refunded_minor": str(intent.amount_refunded_minor),
        "captures": intent.captures,
        "hold_id": intent.hold_id,
        "capture_before": _time_or_none(intent.capture_before),
        "cancellation_reason": intent.cancellation_reason.value if intent.cancellation_reason else None,
        "risk": dict(intent.risk) if intent.risk is not None else None,
        "ledger": [{"kind": s.kind, "transfer_id": s.transfer_id, "amount_minor": str(s.amount_minor)}
                   for s in intent.ledger],
        "refunds": [_refund_document(r) for r in intent.refunds],
        "fee_refunded_minor": str(intent.fee_refunded_minor),
        "disputes": [_dispute_document(d) for d in intent.disputes],
        "expiry_warned_at": _time_or_none(intent.expiry_warned_at),
        "last_payment_error": intent.last_payment_error,
        "updated_at": _time_or_none(intent.updated_at),
        "version": intent.version,
        "write_id": intent.write_id,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _refund_document(refund: Refund) -> dict[str, Any]:
    document: dict[str, Any] = {
        "refund_number": refund.refund_number, "amount_minor": str(refund.amount_minor),
        "fee_refunded_minor": str(refund.fee_refunded_minor), "reason": refund.reason.value,
        "transfer_id": refund.transfer_id, "created_at": format_time(refund.created_at)}
    if refund.bank_account is not None:  # a rail refund; a wallet refund keeps the older, shorter shape
        document.update(status=refund.status.value, bank_account=refund.bank_account.to_json(),
                        reversal_id=refund.reversal_id, failure=refund.failure)
    if refund.resolved_by:  # ended by an operator
        document.update(resolved_by=refund.resolved_by, resolution_reason=refund.resolution_reason)
    return document


def _refund_from(raw: dict[str, Any]) -> Refund:
    bank = raw.get("bank_account")
    return Refund(raw["refund_number"], int(raw["amount_minor"]), int(raw["fee_refunded_minor"]),
                  RefundReason(raw["reason"]), raw["transfer_id"], parse_time(raw["created_at"]),
                  status=RefundStatus(raw.get("status", RefundStatus.SUCCEEDED.value)),
                  bank_account=SealedCreditor.from_json(bank) if bank else None,
                  reversal_id=raw.get("reversal_id"), failure=raw.get("failure", ""),
                  resolved_by=raw.get("resolved_by", ""), resolution_reason=raw.get("resolution_reason", ""))


def _dispute_document(dispute: Dispute) -> dict[str, Any]:
    return {"dispute_id": dispute.dispute_id, "amount_minor": str(dispute.amount_minor),
            "fee_minor": str(dispute.fee_minor), "reason": dispute.reason, "status": dispute.status.value,
            "source_account_id": dispute.source_account_id, "transfer_ids": list(dispute.transfer_ids),
            "created_at": format_time(dispute.created_at), "evidence": dispute.evidence,
            "accepted": dispute.accepted, "reinstated_transfer_id": dispute.reinstated_transfer_id,
            "updated_at": _time_or_none(dispute.updated_at)}


def _dispute_from(raw: dict[str, Any]) -> Dispute:
    return Dispute(raw["dispute_id"], int(raw["amount_minor"]), int(raw["fee_minor"]), raw["reason"],
                   DisputeStatus(raw["status"]), raw["source_account_id"], tuple(raw["transfer_ids"]),
                   parse_time(raw["created_at"]), raw.get("evidence", ""), bool(raw.get("accepted")),
                   raw.get("reinstated_transfer_id"),
                   parse_time(raw["updated_at"]) if raw.get("updated_at") else None)


def intent_from_json(text: str) -> PaymentIntent:
    raw: dict[str, Any] = jsonio.loads(text)
    reason = raw.get("cancellation_reason")
    return PaymentIntent(
        payment_id=raw["payment_id"],
        owner_id=raw["owner_id"],
        customer_account_id=raw["customer_account_id"],
        merchant_id=raw["merchant_id"],
        receivable_account_id=raw["receivable_account_id"],
        amount_minor=int(raw["amount_minor"]),
        currency=raw["currency"],
        capture_method=CaptureMethod(raw["capture_method"]),
        application_fee_minor=int(raw["application_fee_minor"]),
        created_at=parse_time(raw["created_at"]),
        status=IntentStatus(raw["status"]),
        metadata=dict(raw.get("metadata") or {}),
        statement_descriptor=raw.get("statement_descriptor", ""),
        confirm=bool(raw.get("confirm", False)),
        amount_capturable_minor=int(raw["amount_capturable_minor"]),
        amount_received_minor=int(raw["amount_received_minor"]),
        amount_refunded_minor=int(raw["amount_refunded_minor"]),
        captures=int(raw["captures"]),
        hold_id=raw.get("hold_id"),
        capture_before=parse_time(raw["capture_before"]) if raw.get("capture_before") else None,
        cancellation_reason=CancellationReason(reason) if reason else None,
        risk=raw.get("risk"),
        ledger=tuple(LedgerStep(s["kind"], s["transfer_id"], int(s["amount_minor"])) for s in raw["ledger"]),
        refunds=tuple(_refund_from(r) for r in raw.get("refunds", ())),
        fee_refunded_minor=int(raw.get("fee_refunded_minor", "0")),
        disputes=tuple(_dispute_from(d) for d in raw.get("disputes", ())),
        expiry_warned_at=parse_time(raw["expiry_warned_at"]) if raw.get("expiry_warned_at") else None,
        last_payment_error=raw.get("last_payment_error"),
        updated_at=parse_time(raw["updated_at"]) if raw.get("updated_at") else None,
        version=int(raw["version"]),
        write_id=raw.get("write_id", ""),
    )


class PaymentsStore:
    """Merchants and payment intents on DynamoDB (pynamodb). Thread-safe; share one per process."""

    def __init__(self, table_name: str | None = None, outbox_table_name: str | None = None,
                 region: str | None = None) -> None:
        self.table_name = table_name or resource_name(PAYMENTS_TABLE_LOGICAL_NAME)
        region = region or settings().region
        self._item = _model(self.table_name, region)
        outbox_table_name = outbox_table_name or resource_name(OUTBOX_TABLE_LOGICAL_NAME)
        self._outbox = bound(_OutboxItem, outbox_table_name, region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)

    def register_hook(self, event_name: str, handler: Any) -> None:
        """Registers a botocore event handler on the DynamoDB client this store reads and writes with."""
        self._item._get_connection().connection.client.meta.events.register(event_name, handler)

    def unregister_hook(self, event_name: str, handler: Any) -> None:
        self._item._get_connection().connection.client.meta.events.unregister(event_name, handler)

    # -- merchants --------------------------------------------------------------------------------

    def create(self, merchant: Merchant) -> Merchant:
        item = self._merchant_item(merchant)
        written = conditional_write(lambda: item.save(condition=self._item.pk.does_not_exist()))
        if written.taken:
            return merchant
        if any_condition_failed(written.error):
            existing = self.get(merchant.merchant_id)
            if existing is not None:
                return existing
        cause = written.error
        raise PaymentsStoreUnavailable(f"create merchant {merchant.merchant_id}: {written.code}") from cause

    def get(self, merchant_id: str) -> Merchant | None:
        try:
            item = self._item.get(*merchant_key(merchant_id), consistent_read=True)
        except self._item.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"read merchant {merchant_id}: {error}") from error
        return merchant_from_json(item.doc)

    def save(self, merchant: Merchant) -> bool:
        item = self._merchant_item(merchant)
        written = conditional_write(lambda: item.save(condition=self._item.version == merchant.version - 1))
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        cause = written.error
        raise PaymentsStoreUnavailable(f"save merchant {merchant.merchant_id}: {written.code}") from cause

    def merchant_ids(self, after: str | None, limit: int) -> list[str]:
        """Up to limit merchant ids above `after`, in order: one Query of the sparse merchants index."""
        model = self._item
        condition = model.merchant_id > after if after else None
        try:
            results = model.merchants.query(MERCHANT_LISTED, condition, limit=limit, page_size=limit)
            return [item.merchant_id for item in results]
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"list merchants: {error}") from error

    # -- payment intents --------------------------------------------------------------------------

    def create_intent(self, intent: PaymentIntent, event: IntentEvent) -> PaymentIntent:
        return create_with_event(
            self._connection, self._intent_item(intent), self._item.pk.does_not_exist(),
            self._event_item(intent, event), intent, lambda: self.get_intent(intent.payment_id),
            lambda written: PaymentsStoreUnavailable(f"create intent {intent.payment_id}: {written.code}"))

    def get_intent(self, payment_id: str) -> PaymentIntent | None:
        try:
            item = self._item.get(*_intent_key(payment_id), consistent_read=True)
        except self._item.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"read intent {payment_id}: {error}") from error
        return intent_from_json(item.doc)

    def save_intent(self, intent: PaymentIntent, event: IntentEvent) -> bool:
        item, condition = self.intent_put(intent)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(item, condition=condition)
                transaction.save(self._event_item(intent, event))

        written = conditional_write(transact)
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        cause = written.error
        raise PaymentsStoreUnavailable(f"save intent {intent.payment_id}: {written.code}") from cause

    def event_put(self, intent: PaymentIntent, event: IntentEvent) -> tuple[Any, Any]:
        return self._event_item(intent, event), None

    def intent_put(self, intent: PaymentIntent) -> tuple[Any, Any]:
        """The put over version intent.version - 1; a first version (created and confirmed by one request)
        only where no intent is stored yet, as create_intent writes it."""
        if intent.version == 1:
            return self._intent_item(intent), self._item.pk.does_not_exist()
        return self._intent_item(intent), self._item.version == intent.version - 1

    def page_intents(self, wanted: IntentFilter, limit: int, start: dict[str, str] | None) -> IntentPage:
        """Newest first, from the merchant's or the owner's index; the status filter applies after the
        page's Limit, so a page may hold fewer than `limit` and still have more after it."""
        model = self._item
        if wanted.merchant_id is not None:
            index, key, owner = model.by_merchant, wanted.merchant_id, wanted.owner_id
        else:
            assert wanted.owner_id is not None, "a list names a merchant or an owner"
            index, key, owner = model.by_owner, wanted.owner_id, None
        # Keys are `<time>#<id>`: `<t>` sorts below every key made at t, so created_lt stays exclusive.
        lower = format_time(wanted.created_gte) if wanted.created_gte else CREATED_KEY_LOWEST
        upper = format_time(wanted.created_lt) if wanted.created_lt else CREATED_KEY_HIGHEST
        condition = model.created_key.between(lower, upper)
        filters = []
        if wanted.status is not None:
            filters.append(model.status == wanted.status.value)
        if owner is not None:
            filters.append(model.owner_id == owner)
        filter_condition = None
        for part in filters:
            filter_condition = part if filter_condition is None else filter_condition & part
        try:
            results = index.query(key, condition, filter_condition=filter_condition, scan_index_forward=False,
                                  limit=limit, page_size=limit,
                                  last_evaluated_key=_typed_key(start) if start else None)
            intents = [intent_from_json(item.doc) for item in results]
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"list intents: {error}") from error
        last = results.last_evaluated_key
        return IntentPage(intents, _plain_key(last) if last else None)

    def intent_from_raw(self, raw_item: dict[str, Any]) -> PaymentIntent:
        return intent_from_json(self._item.from_raw_data(raw_item).doc)

    def due_for_expiry(self, now: datetime, limit: int) -> list[str]:
        """Ids of up to `limit` capturable intents whose next expiry action is due at `now`, the longest
        due first: one Query per by-expiry partition (each at most `limit` keys), merged. The index is
        eventually consistent: the caller reads each intent before acting on it."""
        model = self._item
        upper = f"{format_time(now)}#~"  # above every key due at now (ids never hold '~')
        keys: list[str] = []
        try:
            for shard in range(expiry_index_shards):
                results = model.by_expiry.query(str(shard), model.expiry_due_key <= upper, limit=limit,
                                                page_size=limit)
                keys.extend(item.expiry_due_key for item in results)
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"due intents: {error}") from error
        return [key.rsplit("#", 1)[1] for key in sorted(keys)[:limit]]

    # -- settlements --------------------------------------------------------------------------------

    def get_settlement(self, merchant_id: str, business_date: date) -> Settlement | None:
        try:
            item = self._item.get(*_settlement_key(merchant_id, business_date), consistent_read=True)
        except self._item.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"read settlement {merchant_id}: {error}") from error
        return settlement_from_json(item.doc)

    def latest_settlement(self, merchant_id: str) -> Settlement | None:
        """One Query of the merchant's settlements partition, newest date first, limit 1."""
        try:
            results = list(self._item.query(f"{SETTLEMENT_PREFIX}{merchant_id}", scan_index_forward=False,
                                             limit=1, consistent_read=True))
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"latest settlement {merchant_id}: {error}") from error
        return settlement_from_json(results[0].doc) if results else None

    def settlements_of(self, merchant_id: str, limit: int, after: date | None = None) -> list[Settlement]:
        """One Query of the merchant's settlements partition, oldest date first (after a date: later ones)."""
        condition = self._item.sk > after.isoformat() if after is not None else None
        try:
            results = self._item.query(f"{SETTLEMENT_PREFIX}{merchant_id}", condition, limit=limit,
                                       page_size=limit, consistent_read=True)
            return [settlement_from_json(item.doc) for item in results]
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"settlements of {merchant_id}: {error}") from error

    def create_settlement(self, settlement: Settlement, previous: date | None) -> Settlement:
        """The settlement and its claim of the place after `previous`, in one transaction."""
        item = self._settlement_item(settlement)
        after = previous.isoformat() if previous is not None else FIRST_SETTLEMENT
        claim = self._item(f"{SETTLEMENT_NEXT_PREFIX}{settlement.merchant_id}", after, version=1,
                           status="claimed", doc=json.dumps({"next": settlement.business_date.isoformat()}))

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(item, condition=self._item.pk.does_not_exist())
                transaction.save(claim, condition=self._item.pk.does_not_exist())

        written = conditional_write(transact)
        if written.taken:
            return settlement
        if any_condition_failed(written.error):
            existing = self.get_settlement(settlement.merchant_id, settlement.business_date)
            if existing is not None:
                return existing
            raise SettlementOutOfOrder(f"date: {settlement.merchant_id} was settled after {after} for "
                                       "another date meanwhile", field="date")
        cause = written.error
        raise PaymentsStoreUnavailable(f"create settlement {settlement.merchant_id}: "
                                       f"{written.code}") from cause

    def save_settlement(self, settlement: Settlement, event: IntentEvent) -> bool:
        item = self._settlement_item(settlement)
        subject = f"{settlement.merchant_id}:{settlement.business_date.isoformat()}"
        now = settlement.paid_at or settlement.created_at
        event_id = f"{event.type}:{subject}"
        event_item = self._outbox(
            outbox_partition(OUTBOX_PRODUCER, settlement.merchant_id),
            f"{entry_key_prefix(micros(now))}#{event_id}", event_id=event_id, type=event.type,
            source=EVENT_SOURCE, subject=subject, time=format_time(now), data=_event_json(dict(event.data)))

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(item, condition=self._item.version == settlement.version - 1)
                transaction.save(event_item)

        written = conditional_write(transact)
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        cause = written.error
        raise PaymentsStoreUnavailable(f"save settlement {settlement.merchant_id}: {written.code}") from cause

    def run_progress(self, business_date: date) -> RunProgress | None:
        try:
            item = self._item.get(*_run_key(business_date), consistent_read=True)
        except self._item.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"read settlement run {business_date}: {error}") from error
        raw = jsonio.loads(item.doc)
        return RunProgress(business_date, raw["after"], bool(raw["done"]), int(item.version))

    def save_run_progress(self, progress: RunProgress) -> bool:
        item = self._item(*_run_key(progress.business_date), version=progress.version,
                          status="done" if progress.done else "running",
                          doc=json.dumps({"after": progress.after, "done": progress.done}))
        condition = (self._item.pk.does_not_exist() if progress.version == 1
                     else self._item.version == progress.version - 1)
        written = conditional_write(lambda: item.save(condition=condition))
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        raise PaymentsStoreUnavailable(f"save settlement run: {written.code}") from written.error

    # -- items ------------------------------------------------------------------------------------

    def _settlement_item(self, settlement: Settlement) -> Any:
        return self._item(*_settlement_key(settlement.merchant_id, settlement.business_date),
                          doc=settlement_to_json(settlement), version=settlement.version,
                          status=settlement.status.value)

    def _merchant_item(self, merchant: Merchant) -> Any:
        return self._item(*merchant_key(merchant.merchant_id), doc=merchant_to_json(merchant),
                          version=merchant.version, status=merchant.status.value, listed=MERCHANT_LISTED,
                          merchant_id=merchant.merchant_id)

    def _event_item(self, intent: PaymentIntent, event: IntentEvent) -> Any:
        """The outbox record; its id names the intent's version, so each change has one event, written
        again under the same key by any retry."""
        now = intent.updated_at or intent.created_at
        event_id = f"{event.type}:{intent.payment_id}:{intent.version}"
        event_key = f"{entry_key_prefix(micros(now))}#{event_id}"
        return self._outbox(
            outbox_partition(OUTBOX_PRODUCER, intent.payment_id), event_key,
            event_id=event_id, type=event.type, source=EVENT_SOURCE, subject=intent.payment_id,
            time=format_time(now), data=_event_json(dict(event.data)))

    def _intent_item(self, intent: PaymentIntent) -> Any:
        due_key = expiry_due_key(intent)
        return self._item(*_intent_key(intent.payment_id), doc=intent_to_json(intent), version=intent.version,
                          status=intent.status.value, merchant_id=intent.merchant_id,
                          owner_id=intent.owner_id, created_key=created_key(intent),
                          expiry_shard=expiry_shard(intent.payment_id) if due_key else None,
                          expiry_due_key=due_key)


def _event_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _typed_key(plain: dict[str, str]) -> dict[str, Any]:
    return {name: {"S": value} for name, value in plain.items()}


def _plain_key(last_evaluated_key: dict[str, Any]) -> dict[str, str]:
    """{"pk": {"S": "..."}, ...} -> {"pk": "..."}: every key attribute of this table is a string."""
    return {name: value["S"] for name, value in last_evaluated_key.items()}


class PaymentIntentsStore:
    """PaymentIntents over the payments table (the same store, under the port's names)."""

    def __init__(self, store: PaymentsStore) -> None:
        self._store = store

    def create(self, intent: PaymentIntent, event: IntentEvent) -> PaymentIntent:
        return self._store.create_intent(intent, event)

    def get(self, payment_id: str) -> PaymentIntent | None:
        return self._store.get_intent(payment_id)

    def save(self, intent: PaymentIntent, event: IntentEvent) -> bool:
        return self._store.save_intent(intent, event)

    def event_put(self, intent: PaymentIntent, event: IntentEvent) -> tuple[Any, Any]:
        return self._store.event_put(intent, event)

    def intent_put(self, intent: PaymentIntent) -> tuple[Any, Any]:
        return self._store.intent_put(intent)

    def intent_from_raw(self, raw_item: dict[str, Any]) -> PaymentIntent:
        return self._store.intent_from_raw(raw_item)

    def page(self, wanted: IntentFilter, limit: int, start: dict[str, str] | None) -> IntentPage:
        return self._store.page_intents(wanted, limit, start)

    def due_for_expiry(self, now: datetime, limit: int) -> list[str]:
        return self._store.due_for_expiry(now, limit)


class PaymentSettlementsStore:
    """Settlements over the payments table (`settlement#<merchant id>` / `<business date>`)."""

    def __init__(self, store: PaymentsStore) -> None:
        self._store = store

    def get(self, merchant_id: str, business_date: date) -> Settlement | None:
        return self._store.get_settlement(merchant_id, business_date)

    def latest(self, merchant_id: str) -> Settlement | None:
        return self._store.latest_settlement(merchant_id)

    def create(self, settlement: Settlement, previous: date | None) -> Settlement:
        return self._store.create_settlement(settlement, previous)

    def save(self, settlement: Settlement, event: IntentEvent) -> bool:
        return self._store.save_settlement(settlement, event)

    def of_merchant(self, merchant_id: str, limit: int, after: date | None = None) -> list[Settlement]:
        return self._store.settlements_of(merchant_id, limit, after)

    def run_progress(self, business_date: date) -> RunProgress | None:
        return self._store.run_progress(business_date)

    def save_run_progress(self, progress: RunProgress) -> bool:
        return self._store.save_run_progress(progress)
