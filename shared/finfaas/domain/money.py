"""Money: integer minor units with an ISO 4217 currency; parsing of amounts from API input."""

from __future__ import annotations

import re
from dataclasses import dataclass

from finfaas.domain.errors import AmountTooLarge, InvalidAmount, TooManyDecimals, UnknownCurrency

# DynamoDB numbers keep 38 significant digits. A balance is a sum of amounts, so with amounts below
# 10**24 it takes 10**14 maximal transfers on one account to reach that precision: out of reach.
# 12345678901234567890 (20 digits) is well inside.
transfer_amount_minor_max = 10**24 - 1
dynamodb_number_digits_max = 38

# ISO 4217 minor-unit exponents of the currencies in circulation (funds codes included where used).
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP "
    "LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR "
    "NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR "
    "ZMW ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
    **{code: 4 for code in _EXPONENT_4.split()},
}

_DECIMAL_TEXT = re.compile(r"\A(?P<whole>[0-9]{1,64})(?:\.(?P<fraction>[0-9]{1,64}))?\Z")


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: integer minor units of one currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        assert type(self.amount_minor) is int, "minor units are integers"
        assert self.currency in CURRENCY_EXPONENTS, f"unknown currency {self.currency!r}"


def currency_exponent(currency: object, *, field: str = "currency") -> int:
    """The number of minor-unit digits of an ISO 4217 code; UnknownCurrency otherwise."""
    if not isinstance(currency, str) or currency not in CURRENCY_EXPONENTS:
        raise UnknownCurrency(f"{field}: unknown currency {currency!r}", field=field)
    return CURRENCY_EXPONENTS[currency]


def parse_currency(currency: object, *, field: str = "currency") -> str:
    """The currency code itself, validated (upper-case ISO 4217, no guessing of case)."""
    currency_exponent(currency, field=field)
    return str(currency)


def parse_amount(value: int | str, currency: str, *, field: str = "amount") -> int:
    """A positive amount in minor units from API input.

    A JSON integer is minor units (1050 = 10.50 USD); a string is a plain decimal in major units
    ("10.50"). Floats, bools, signs, exponents and extra fraction digits are rejected: typed callers
    pass int | str, and the check stays for values that arrive untyped (parsed JSON).
    """
    exponent = currency_exponent(currency)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidAmount(f"{field}: expected an integer of minor units or a decimal string", field=field)
    minor = value if isinstance(value, int) else _decimal_text_to_minor(value, exponent, field)
    return check_amount_minor(minor, field=field)


def check_amount_minor(minor: int, *, field: str = "amount") -> int:
    """The amount itself when it is within 1..transfer_amount_minor_max."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise InvalidAmount(f"{field}: expected an integer of minor units", field=field)
    if minor <= 0:
        raise InvalidAmount(f"{field}: must be greater than zero", field=field)
    if minor > transfer_amount_minor_max:
        raise AmountTooLarge(f"{field}: must be at most {transfer_amount_minor_max} minor units", field=field)
    return minor


def _decimal_text_to_minor(text: str, exponent: int, field: str) -> int:
    match = _DECIMAL_TEXT.match(text)
    if match is None:
        raise InvalidAmount(f"{field}: {text[:40]!r} is not a plain decimal number", field=field)
    fraction = match["fraction"] or ""
    if len(fraction) > exponent:
        raise TooManyDecimals(f"{field}: at most {exponent} decimal places for this currency", field=field)
    return int(match["whole"]) * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
