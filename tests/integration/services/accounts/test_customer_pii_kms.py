"""Customer PII sealed with KMS (moto) data keys and stored in DynamoDB Local."""

from __future__ import annotations

import json

import pytest
from finfaas.platform import config
from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, PiiDecryptionFailed, pii_key_id
from finfaas.services.customers.model import encryption_context
from finfaas.store.audit_store import AuditStore
from finfaas_dev.awsclients import client as aws_client
from finfaas_dev.testing.platform import call, captured_logs
from unit.services.customers.test_accounts_pii import DataKeysContract

pytestmark = pytest.mark.emulator

PROFILE = {"name": "Grace Hopper", "national_id": "GH-1906-1209", "phone": "+1 (202) 555-0143"}
PLAIN_VALUES = ("Grace", "Hopper", "GH19061209", "GH-1906-1209", "+12025550143", "555-0143")


class TestKmsDataKeys(DataKeysContract):
    """The contract the in-memory provider passes, against moto's KMS and the stage's key alias."""

    @pytest.fixture
    def keys(self, embedded_aws):
        return KmsDataKeys(pii_key_id())


def raw_customer_item(customer_id: str) -> dict:
    """The item exactly as DynamoDB holds it, read around the application's own code."""
    dynamodb = aws_client("dynamodb")
    reply = dynamodb.get_item(TableName=config.resource_name("customers"),
                              Key={"customer_id": {"S": customer_id}}, ConsistentRead=True)
    return reply["Item"]


def test_a_profile_round_trips_and_is_stored_only_as_a_kms_envelope(accounts_world):
    world = accounts_world
    customer_id, token = world.customer()

    saved = call(world.handler.handle, "POST", "/customers/me", token=token, json_body=PROFILE)
    read = call(world.handler.handle, "GET", "/customers/me", token=token)

    assert saved.status == 200 and not any(value in saved.body for value in PLAIN_VALUES)
    assert read.json() | {"updated_at": None} == {
        "customer_id": customer_id, "name": "Grace Hopper", "national_id": "GH19061209",
        "phone": "+12025550143", "updated_at": None}
    item_text = json.dumps(raw_customer_item(customer_id))
    assert not any(value in item_text for value in PLAIN_VALUES)
    envelope = json.loads(raw_customer_item(customer_id)["sealed_profile"]["S"])
    assert envelope["key_id"].startswith("arn:aws:kms:") and envelope["alg"] == "AES-256-GCM"


def test_a_profile_copied_to_another_customer_does_not_decrypt(accounts_world):
    world = accounts_world
    alice_id, alice = world.customer()
    bob_id, bob = world.customer()
    call(world.handler.handle, "POST", "/customers/me", token=alice, json_body=PROFILE)
    sealed = raw_customer_item(alice_id)["sealed_profile"]["S"]

    # GIVEN someone with table access copies Alice's sealed profile onto Bob's record
    world.customers.put_profile(bob_id, sealed, 1_700_000_000)

    # THEN KMS refuses to unwrap it under Bob's context, and Bob's read fails without leaking anything
    with pytest.raises(PiiDecryptionFailed):
        EnvelopeCipher(KmsDataKeys(pii_key_id())).open(sealed, encryption_context(bob_id))
    with captured_logs() as logs:
        reply = call(world.handler.handle, "GET", "/customers/me", token=bob)
    assert reply.status == 500 and reply.json()["code"] == "internal_error"
    assert not any(value in reply.body + logs.text for value in PLAIN_VALUES)


def test_profile_values_stay_out_of_logs_and_the_audit_table(accounts_world):
    world = accounts_world
    customer_id, token = world.customer()

    with captured_logs() as logs:
        call(world.handler.handle, "POST", "/customers/me", token=token, json_body=PROFILE)
        call(world.handler.handle, "GET", "/customers/me", token=token)
        call(world.handler.handle, "POST", "/customers/me", token=token, json_body={**PROFILE, "phone": "x"})

    assert [line["status"] for line in logs.requests()] == [200, 200, 422]
    assert not any(value in logs.text for value in PLAIN_VALUES)
    store = AuditStore()
    records = [r for chain in store.chains() if chain.startswith("accounts-") for r in store.records(chain)
               if r.actor == customer_id]
    assert [(r.action, r.outcome) for r in records] == [
        ("customer.profile.update", "succeeded"), ("customer.profile.read", "succeeded"),
        ("customer.profile.update", "failed")]
    assert not any(value in repr(records) for value in PLAIN_VALUES)
