"""Money parsing and formatting: exact minor units per ISO 4217 exponent, every bad input named."""

from __future__ import annotations

import pytest
from finfaas.domain import errors
from finfaas.domain.money import (
    CURRENCY_EXPONENTS,
    dynamodb_number_digits_max,
    parse_amount,
    transfer_amount_minor_max,
)
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(("value", "currency", "minor"), [
    (1050, "USD", 1050),
    ("10.50", "USD", 1050),
    ("10.5", "EUR", 1050),
    ("10", "GBP", 1000),
    ("100", "JPY", 100),
    ("100", "KRW", 100),
    ("1.234", "BHD", 1234),
    ("0.001", "KWD", 1),
    ("1.2345", "CLF", 12345),
    ("12345678901234567890", "JPY", 12345678901234567890),
    (12345678901234567890, "USD", 12345678901234567890),
    (2**53 + 1, "USD", 2**53 + 1),
])
def test_amounts_parse_to_exact_minor_units(value, currency, minor):
    assert parse_amount(value, currency) == minor


@pytest.mark.parametrize(("value", "currency"), [
    ("100.5", "JPY"), ("10.505", "USD"), ("1.2345", "BHD"), ("1.23456", "CLF"), ("10.500", "USD"),
])
def test_more_decimals_than_the_currency_has_are_refused(value, currency):
    with pytest.raises(errors.TooManyDecimals) as refused:
        parse_amount(value, currency, field="amount")
    assert refused.value.field == "amount"


@pytest.mark.parametrize("value", [10.5, 10.0, True, False, None, [], {}, b"10"])
def test_floats_bools_and_other_types_are_refused(value):
    with pytest.raises(errors.InvalidAmount) as refused:
        parse_amount(value, "USD", field="transfers[2].amount")
    assert refused.value.field == "transfers[2].amount"


@pytest.mark.parametrize("value", [0, -1, "0", "0.00", "-1", "+1", "1e3", " 1", "1,000", "", ".5", "5.",
                                   "١٢"])
def test_zero_negative_and_malformed_amounts_are_refused(value):
    with pytest.raises(errors.InvalidAmount):
        parse_amount(value, "USD")


def test_the_maximum_is_accepted_and_one_more_is_not():
    assert parse_amount(transfer_amount_minor_max, "USD") == transfer_amount_minor_max
    with pytest.raises(errors.AmountTooLarge) as refused:
        parse_amount(transfer_amount_minor_max + 1, "USD")
    assert refused.value.field == "amount"
    with pytest.raises(errors.AmountTooLarge):
        parse_amount("1" + "0" * 24, "JPY")


def test_the_maximum_leaves_room_for_balances_within_dynamodb_precision():
    # A balance of 10**14 maximal transfers still has at most 38 significant digits.
    assert len(str(transfer_amount_minor_max * 10**14)) <= dynamodb_number_digits_max


@pytest.mark.parametrize("currency", ["usd", "XXX", "", None, 840, "US D"])
def test_unknown_currencies_are_refused_naming_the_field(currency):
    with pytest.raises(errors.UnknownCurrency) as refused:
        parse_amount(100, currency)
    assert refused.value.field == "currency"


def test_exponents_of_well_known_currencies():
    expected = {"JPY": 0, "KRW": 0, "CNY": 2, "USD": 2, "EUR": 2, "GBP": 2, "HKD": 2, "BHD": 3, "KWD": 3,
                "JOD": 3, "CLF": 4}
    assert {code: CURRENCY_EXPONENTS[code] for code in expected} == expected


def _major_units_text(minor: int, currency: str) -> str:
    """A positive amount as a client writes it in major units, with every fraction digit."""
    exponent = CURRENCY_EXPONENTS[currency]
    whole, fraction = divmod(minor, 10**exponent)
    return f"{whole}.{fraction:0{exponent}d}" if exponent else str(whole)


@given(st.sampled_from(sorted(CURRENCY_EXPONENTS)), st.integers(1, transfer_amount_minor_max))
def test_major_units_text_parses_back_to_its_minor_units(currency, minor):
    assert parse_amount(_major_units_text(minor, currency), currency) == minor
