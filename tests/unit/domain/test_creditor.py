"""A payee at another bank: sealed per transfer, masked for display, fingerprinted under a stage key."""

from __future__ import annotations

import pytest
from finfaas.domain.creditor import Creditor, CreditorVault, SealedCreditor, masked_account_number
from finfaas.platform.mac_keys import new_mac_key_text
from finfaas.platform.pii import (
    EnvelopeCipher,
    KeyedDigests,
    PiiDecryptionFailed,
    PiiKeyUnavailable,
    keyed_digests_from_secret,
)
from finfaas_dev.fakes.platform import InMemoryDataKeys

CAROL = Creditor("BANKGB22", "GB29NWBK60161331926819", "Carol Danvers")


def vault(key: bytes = b"k" * 32, data_keys: InMemoryDataKeys | None = None) -> CreditorVault:
    return CreditorVault(EnvelopeCipher(data_keys or InMemoryDataKeys()), KeyedDigests(key))


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("12345678", "****5678"),
        ("GB29NWBK60161331926819", "****6819"),
        ("12345", "****45"),
        ("1234", "****34"),
    ],
)
def test_the_display_form_shows_at_most_four_and_at_most_half_of_the_number(number, masked):
    assert masked_account_number(number) == masked


def test_a_sealed_payee_names_no_one_and_opens_only_for_its_transfer():
    data_keys = InMemoryDataKeys()
    sealing = vault(data_keys=data_keys)

    sealed = sealing.seal("tr_1", CAROL)

    assert "Carol" not in repr(sealed) and "60161331926819" not in repr(sealed)
    assert sealed.masked() == {"bank_code": "BANKGB22", "account_number_masked": "****6819"}
    # the rail's vault has the same data keys but no digest key: it can only open
    rail = CreditorVault(EnvelopeCipher(data_keys))
    assert rail.open("tr_1", SealedCreditor.from_json(sealed.in_flight())) == CAROL
    with pytest.raises(PiiDecryptionFailed):
        rail.open("tr_2", sealed)


def test_a_payee_sealed_twice_has_two_envelopes_but_one_identity_and_fingerprint():
    sealing = vault()

    first, second = sealing.seal("tr_1", CAROL), sealing.seal("tr_1", CAROL)
    renamed = sealing.seal("tr_1", Creditor(CAROL.bank_code, CAROL.account_number, "Someone Else"))

    assert first.sealed != second.sealed
    assert first.identity() == second.identity()
    assert renamed.identity() != first.identity()  # a repeated request must repeat the name too
    assert renamed.fingerprint == first.fingerprint  # risk knows the account, whatever its name


def test_the_fingerprint_depends_on_the_stage_key_so_a_table_reader_cannot_enumerate_numbers():
    assert vault(b"a" * 32).fingerprint("BANKGB22", "12345678") == vault(b"a" * 32).fingerprint(
        "bankgb22", "12345678"
    )
    assert vault(b"a" * 32).fingerprint("BANKGB22", "12345678") != vault(b"b" * 32).fingerprint(
        "BANKGB22", "12345678"
    )
    assert vault().fingerprint("BANKGB22", "12345678").startswith("pf_")


def test_the_digest_key_comes_from_its_secret_and_its_absence_is_a_key_fault():
    assert keyed_digests_from_secret(lambda name: new_mac_key_text()).digest("p", "x")
    with pytest.raises(PiiKeyUnavailable):
        keyed_digests_from_secret(lambda name: None)
    with pytest.raises(PiiKeyUnavailable):
        keyed_digests_from_secret(lambda name: "c2hvcnQ=")  # 5 bytes
