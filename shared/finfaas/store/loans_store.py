"""The loans table (HASH pk, RANGE sk): loan products today; loans join it under their own keys.

Items:
- `product` / `<product id>`: a loan product as JSON text (`doc`), its `version` and `status`. All
  products share one partition, so a list is one Query in id order (never a Scan): ops create a few
  dozen products, far below one partition's limits.

A product is created with `attribute_not_exists` (its id is the guard) and changed by a put conditional
on the stored version, so two operators never overwrite each other's change.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model

from finfaas.domain.loans import Amortization, Bucket, Component, DayCount, InterestMethod
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.loans.errors import LoansStoreUnavailable
from finfaas.services.loans.model import LoanProduct, OverpaymentRule, ProductPage, ProductStatus
from finfaas.store.binding import StoreMeta, bound
from finfaas.store.dynamo import any_condition_failed, conditional_write, consistent_get

LOANS_TABLE_LOGICAL_NAME = "loans"
PRODUCTS_PARTITION = "product"


class _LoansItem(Model):
    """Every item of the table; which attributes are set depends on the item's kind."""

    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute()
    version = NumberAttribute()
    status = UnicodeAttribute()


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
        status=ProductStatus(raw["status"]),
        version=int(raw["version"]),
    )


class LoansStore:
    """Loan products on DynamoDB (pynamodb), a LoanProductRepository. Thread-safe; share one per process."""

    def __init__(self, table_name: str | None = None, region: str | None = None) -> None:
        self.table_name = table_name or resource_name(LOANS_TABLE_LOGICAL_NAME)
        self._item: Any = bound(_LoansItem, self.table_name, region or settings().region)

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
