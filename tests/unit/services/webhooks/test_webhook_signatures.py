"""Standard Webhooks signatures: what integrators verify with verify_signature."""

from __future__ import annotations

import pytest
from finfaas.services.webhooks.errors import InvalidSignature
from finfaas.services.webhooks.model import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    new_webhook_secret,
    sign,
    verify_signature,
)

NOW = 1_768_469_400
BODY = b'{"id":"ledger.transfers.created:t-1:1","type":"ledger.transfers.created"}'


def signed_headers(secret: str, body: bytes = BODY, timestamp: int = NOW, webhook_id: str = "evt-1") -> dict:
    return {ID_HEADER: webhook_id, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, webhook_id, timestamp, body)}


def test_matches_the_standard_webhooks_reference_vector():
    # The test vector shared by the Standard Webhooks reference libraries.
    signature = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_genuine_webhook_verifies():
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    verify_signature(secret, signed_headers(secret), BODY, now=NOW + 10)


def test_header_names_are_matched_in_any_case():
    secret = new_webhook_secret()
    headers = {name.title(): value for name, value in signed_headers(secret).items()}
    verify_signature(secret, headers, BODY, now=NOW)


def test_a_tampered_body_is_refused():
    secret = new_webhook_secret()
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify_signature(secret, signed_headers(secret), BODY.replace(b"t-1", b"t-2"), now=NOW)


def test_another_subscriptions_secret_is_refused():
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify_signature(new_webhook_secret(), signed_headers(new_webhook_secret()), BODY, now=NOW)


def test_a_changed_id_or_timestamp_is_refused():
    secret = new_webhook_secret()
    for changed in ({ID_HEADER: "evt-2"}, {TIMESTAMP_HEADER: str(NOW + 1)}):
        with pytest.raises(InvalidSignature):
            verify_signature(secret, {**signed_headers(secret), **changed}, BODY, now=NOW)


@pytest.mark.parametrize("age_s", [301, -301, 86_400])
def test_an_old_or_future_timestamp_is_refused_even_when_signed(age_s):
    secret = new_webhook_secret()
    with pytest.raises(InvalidSignature, match="tolerance"):
        headers = signed_headers(secret, timestamp=NOW - age_s)
        verify_signature(secret, headers, BODY, tolerance_s=300, now=NOW)


def test_missing_or_malformed_headers_are_refused():
    secret = new_webhook_secret()
    for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        headers = {k: v for k, v in signed_headers(secret).items() if k != name}
        with pytest.raises(InvalidSignature, match="missing"):
            verify_signature(secret, headers, BODY, now=NOW)
    with pytest.raises(InvalidSignature, match="Unix seconds"):
        verify_signature(secret, {**signed_headers(secret), TIMESTAMP_HEADER: "1e9"}, BODY, now=NOW)


def test_any_one_of_several_signatures_may_match_during_a_rotation():
    old, new = new_webhook_secret(), new_webhook_secret()
    headers = signed_headers(new)
    headers[SIGNATURE_HEADER] = f"{sign(old, 'evt-1', NOW, BODY)} {headers[SIGNATURE_HEADER]}"
    verify_signature(new, headers, BODY, now=NOW)
    verify_signature(old, headers, BODY, now=NOW)


def test_the_readme_receiver_accepts_our_signature_and_refuses_a_changed_body():
    import importlib.util
    import time
    from pathlib import Path

    path = Path(__file__).resolve().parents[4] / "events" / "webhook_receiver.py"
    spec = importlib.util.spec_from_file_location("webhook_receiver", path)
    receiver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(receiver)
    secret, now = new_webhook_secret(), int(time.time())
    receiver.verify_signature(secret, signed_headers(secret, timestamp=now), BODY)
    with pytest.raises(ValueError, match="no signature matches"):
        receiver.verify_signature(secret, signed_headers(secret, timestamp=now), BODY + b" ")
    with pytest.raises(ValueError, match="tolerance"):
        receiver.verify_signature(secret, signed_headers(secret, timestamp=now - 3600), BODY)
