"""The payments function's HTTP shapes: request bodies, views and the error table."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt, StrictStr

from finfaas.domain.errors import InvalidInput
from finfaas.domain.money import currency_exponent
from finfaas.domain.payments import (
    Rounding,
    fee_bps_max,
    fee_fixed_minor_max,
    receivable_shards_default,
    receivable_shards_max,
    reserve_bps_max,
)
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.services.ledger.api import ledger_error_table
from finfaas.services.payments.errors import (
    MerchantAccountsConflict,
    MerchantBusy,
    MerchantExists,
    MerchantNotFound,
    PaymentsStoreUnavailable,
)
from finfaas.services.payments.model import (
    Merchant,
    MerchantStatus,
    capture_window_seconds_default,
    capture_window_seconds_max,
    merchant_id_chars_max,
)
from finfaas.services.suite_clients import ServiceUnreachable

merchant_name_chars_max = 140
BANK_CODE_PATTERN = r"^[A-Z0-9]{4,11}$"
BANK_ACCOUNT_PATTERN = r"^[A-Za-z0-9]{4,34}$"

IDENTIFIER_PATTERN = r"^[A-Za-z0-9_-]+$"
MerchantId = Annotated[str, Field(min_length=1, max_length=merchant_id_chars_max, pattern=IDENTIFIER_PATTERN)]
Currency = Annotated[StrictStr, Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. USD")]


class SettlementAccountBody(StrictModel):
    """The merchant's bank account on the rail, where payouts go."""

    bank_code: Annotated[str, Field(pattern=BANK_CODE_PATTERN)]
    account_number: Annotated[str, Field(pattern=BANK_ACCOUNT_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=merchant_name_chars_max)]


class FeeScheduleBody(StrictModel):
    """bps of each captured amount, rounded by `rounding` to a minor unit, plus fixed_minor."""

    bps: Annotated[StrictInt, Field(ge=0, le=fee_bps_max)]
    fixed_minor: Annotated[StrictInt, Field(ge=0, le=fee_fixed_minor_max)] = 0
    rounding: Rounding = Rounding.HALF_EVEN


class OnboardBody(StrictModel):
    """A merchant to onboard; merchant_id is the caller's, so onboarding again finds it."""

    merchant_id: MerchantId
    name: Annotated[str, Field(min_length=1, max_length=merchant_name_chars_max)]
    currency: Currency
    settlement_account: SettlementAccountBody
    fee_schedule: FeeScheduleBody
    reserve_bps: Annotated[StrictInt, Field(ge=0, le=reserve_bps_max,
                                            description="rolling reserve, basis points of each capture")] = 0
    capture_window_seconds: Annotated[StrictInt, Field(
        ge=60, le=capture_window_seconds_max,
        description="how long an authorization may wait for its capture")] = capture_window_seconds_default
    receivable_shards: Annotated[StrictInt, Field(
        ge=1, le=receivable_shards_max,
        description="receivable sub-accounts captures spread over")] = receivable_shards_default


class FeeScheduleView(BaseModel):
    bps: int
    fixed_minor: int
    rounding: Rounding


class MerchantAccountsView(BaseModel):
    receivables: list[str]
    reserve: str
    fees_payable: str


class MerchantView(BaseModel):
    merchant_id: str
    name: str
    currency: str
    exponent: int
    status: MerchantStatus
    settlement_account: dict[str, str] = Field(description="masked: bank code and the last four characters")
    fee_schedule: FeeScheduleView
    reserve_bps: int
    capture_window_seconds: int
    ledger_accounts: MerchantAccountsView
    created_at: datetime
    updated_at: datetime | None = None


def merchant_view(merchant: Merchant) -> MerchantView:
    accounts = merchant.accounts
    return MerchantView(
        merchant_id=merchant.merchant_id, name=merchant.name, currency=merchant.currency,
        exponent=currency_exponent(merchant.currency), status=merchant.status,
        settlement_account=merchant.settlement.masked(),
        fee_schedule=FeeScheduleView(bps=merchant.fees.bps, fixed_minor=merchant.fees.fixed_minor,
                                     rounding=merchant.fees.rounding),
        reserve_bps=merchant.reserve_bps, capture_window_seconds=merchant.capture_window_seconds,
        ledger_accounts=MerchantAccountsView(receivables=list(accounts.receivables), reserve=accounts.reserve,
                                             fees_payable=accounts.fees_payable),
        created_at=merchant.created_at, updated_at=merchant.updated_at,
    )


# --- errors ------------------------------------------------------------------------------------------


def _input_errors() -> dict[type[BaseException], ErrorSpec]:
    """The domain's input refusals (amounts, currencies, fee schedules), each with its own code."""
    return {cls: spec for cls, spec in ledger_error_table().items() if issubclass(cls, InvalidInput)}


ERRORS: dict[type[BaseException], ErrorSpec] = {
    **_input_errors(),
    MerchantNotFound: ErrorSpec(404, MerchantNotFound.code, "Merchant not found"),
    MerchantExists: ErrorSpec(409, MerchantExists.code, "Merchant exists with different fields"),
    MerchantAccountsConflict: ErrorSpec(409, MerchantAccountsConflict.code, "Merchant accounts conflict"),
    MerchantBusy: ErrorSpec(503, MerchantBusy.code, "Merchant busy"),
    PaymentsStoreUnavailable: ErrorSpec(503, PaymentsStoreUnavailable.code, "Payments store unavailable"),
    ServiceUnreachable: ErrorSpec(503, "dependency_unreachable", "Dependency unreachable"),
}
