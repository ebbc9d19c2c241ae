"""Customer store contracts, written once: the in-memory fakes run them here, the DynamoDB stores run
them in tests/integration/services/auth against DynamoDB Local."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from finfaas.services.auth.model import FamilyStatus, RefreshTokenRecord, TokenFamily, TokenStatus
from finfaas.services.customers.model import Credentials, CustomerRecord
from finfaas_dev.fakes.auth import InMemoryRefreshTokenStore
from finfaas_dev.fakes.customers import InMemoryCustomerStore

NOW_S = 1_700_000_000
FAMILY_LIFETIME_S = 30 * 24 * 3600
TOKEN_LIFETIME_S = 14 * 24 * 3600


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def new_customer(username: str | None = None) -> tuple[CustomerRecord, Credentials]:
    customer_id = uuid.uuid4().hex
    username = username or unique("user")
    return (CustomerRecord(customer_id, username, NOW_S),
            Credentials(username, customer_id, "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"))


class CustomerStoreContract:
    """CustomerRepository and CredentialRepository; subclasses provide the `store` fixture."""

    def test_a_created_customer_is_found_by_id_and_by_username(self, store):
        customer, credentials = new_customer()

        assert store.create(customer, credentials)

        assert store.get(customer.customer_id) == customer
        assert store.credentials_for(credentials.username) == credentials

    def test_a_taken_username_writes_nothing(self, store):
        first, credentials = new_customer()
        store.create(first, credentials)
        second = CustomerRecord(uuid.uuid4().hex, credentials.username, NOW_S)

        assert not store.create(second, replace(credentials, customer_id=second.customer_id))

        assert store.get(second.customer_id) is None
        assert store.credentials_for(credentials.username).customer_id == first.customer_id

    def test_unknown_ids_and_usernames_are_none(self, store):
        assert store.get(uuid.uuid4().hex) is None
        assert store.credentials_for(unique("nobody")) is None

    def test_a_profile_is_stored_on_an_existing_customer_only(self, store):
        customer, credentials = new_customer()
        store.create(customer, credentials)

        assert store.put_profile(customer.customer_id, '{"sealed":1}', NOW_S + 5)
        assert not store.put_profile(uuid.uuid4().hex, '{"sealed":1}', NOW_S + 5)

        stored = store.get(customer.customer_id)
        assert (stored.sealed_profile, stored.profile_updated_at_s) == ('{"sealed":1}', NOW_S + 5)

    def test_a_password_hash_is_replaced_only_from_the_hash_it_replaces(self, store):
        customer, credentials = new_customer()
        store.create(customer, credentials)

        assert not store.replace_password_hash(credentials.username, "$argon2id$stale", "$argon2id$new")
        assert store.replace_password_hash(credentials.username, credentials.password_hash, "$argon2id$new")

        assert store.credentials_for(credentials.username).password_hash == "$argon2id$new"


def family_and_token(token_lifetime_s: int = TOKEN_LIFETIME_S) -> tuple[TokenFamily, RefreshTokenRecord]:
    family = TokenFamily(uuid.uuid4().hex, "cust-1", "public", FamilyStatus.ACTIVE, NOW_S,
                         NOW_S + FAMILY_LIFETIME_S)
    return family, token_in(family, token_lifetime_s)


def token_in(family: TokenFamily, lifetime_s: int = TOKEN_LIFETIME_S) -> RefreshTokenRecord:
    return RefreshTokenRecord(uuid.uuid4().hex, family.family_id, family.customer_id, family.client_id,
                              "accounts:read", TokenStatus.ACTIVE, NOW_S, NOW_S + lifetime_s,
                              family.expires_at_s)


class RefreshTokenStoreContract:
    """RefreshTokenRepository; subclasses provide the `store` fixture."""

    def test_a_started_family_and_its_first_token_are_readable(self, store):
        family, first = family_and_token()

        store.start_family(family, first)

        assert store.get_token(first.token_hash) == first
        assert store.get_family(family.family_id) == family

    def test_rotation_marks_the_old_token_and_stores_its_successor(self, store):
        family, first = family_and_token()
        store.start_family(family, first)
        second = token_in(family)

        assert store.rotate(first, second, NOW_S + 60)

        old = store.get_token(first.token_hash)
        assert old.status is TokenStatus.ROTATED and old.replaced_by == second.token_hash
        assert store.get_token(second.token_hash) == second

    def test_a_rotated_token_cannot_be_rotated_again(self, store):
        family, first = family_and_token()
        store.start_family(family, first)
        store.rotate(first, token_in(family), NOW_S + 60)
        third = token_in(family)

        assert not store.rotate(first, third, NOW_S + 120)

        assert store.get_token(third.token_hash) is None

    def test_an_expired_token_is_not_rotated(self, store):
        family, first = family_and_token(token_lifetime_s=100)
        store.start_family(family, first)
        second = token_in(family)

        assert not store.rotate(first, second, NOW_S + 100)

        assert store.get_token(first.token_hash).status is TokenStatus.ACTIVE
        assert store.get_token(second.token_hash) is None

    def test_tokens_of_a_revoked_family_are_not_rotated(self, store):
        family, first = family_and_token()
        store.start_family(family, first)

        store.revoke_family(family.family_id, NOW_S + 10, "revoked")

        assert store.get_family(family.family_id).status is FamilyStatus.REVOKED
        assert not store.rotate(first, token_in(family), NOW_S + 20)
        assert store.get_token(first.token_hash).status is TokenStatus.ACTIVE

    def test_tokens_of_an_expired_family_are_not_rotated(self, store):
        family, first = family_and_token()
        store.start_family(family, first)

        assert not store.rotate(first, token_in(family), family.expires_at_s)

    def test_a_second_revocation_keeps_the_first_reason(self, store):
        family, first = family_and_token()
        store.start_family(family, first)

        store.revoke_family(family.family_id, NOW_S + 10, "reuse")
        store.revoke_family(family.family_id, NOW_S + 20, "revoked")

        assert store.get_family(family.family_id).revoked_reason == "reuse"

    def test_revoking_an_unknown_family_creates_nothing(self, store):
        family_id = uuid.uuid4().hex

        store.revoke_family(family_id, NOW_S, "revoked")

        assert store.get_family(family_id) is None


class TestInMemoryCustomerStore(CustomerStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryCustomerStore()


class TestInMemoryRefreshTokenStore(RefreshTokenStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryRefreshTokenStore()
