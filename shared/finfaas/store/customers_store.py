"""Customers (table customers: HASH customer_id, GSI by-username) and their sign-in credentials
(table auth: pk `user#<username>`, sk `credentials`).

Credentials sit in the auth table, keyed by username, for two reasons: sign-in needs a strongly
consistent lookup by username, which a GSI cannot give; and the conditional put on that key is what
makes usernames unique (a GSI enforces nothing). Sign-up writes both items in one transaction.
The accounts function reads profiles and never needs the password hashes.
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.platform.config import resource_name, settings
from finfaas.services.customers.errors import CustomerStoreUnavailable
from finfaas.services.customers.model import Credentials, CustomerRecord
from finfaas.store.binding import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    RETRY_ATTEMPTS_MAX,
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import conditional_write, consistent_get

CUSTOMERS_TABLE_LOGICAL_NAME = "customers"
AUTH_TABLE_LOGICAL_NAME = "auth"
CREDENTIALS_PK_PREFIX = "user#"
CREDENTIALS_SK = "credentials"


class _CustomerItem(Model):
    Meta = StoreMeta

    customer_id = UnicodeAttribute(hash_key=True)
    username = UnicodeAttribute()
    created_at = NumberAttribute()  # epoch seconds
    status = UnicodeAttribute()
    sealed_profile = UnicodeAttribute(null=True)  # finfaas.platform.pii envelope (JSON text)
    profile_updated_at = NumberAttribute(null=True)


class _CredentialsItem(Model):
    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    customer_id = UnicodeAttribute()
    password_hash = UnicodeAttribute()
    status = UnicodeAttribute()
    created_at = NumberAttribute()


def customer_model(table_name: str, region: str) -> type[_CustomerItem]:
    """The model bound to one physical table (the name depends on the stage, known at run time)."""
    return bound(_CustomerItem, table_name, region)


def credentials_model(table_name: str, region: str) -> type[_CredentialsItem]:
    return bound(_CredentialsItem, table_name, region)


def credentials_key(username: str) -> str:
    return f"{CREDENTIALS_PK_PREFIX}{username}"


class CustomersStore:
    """CustomerRepository and CredentialRepository on DynamoDB."""

    def __init__(self, customers_table: str | None = None, auth_table: str | None = None,
                 region: str | None = None) -> None:
        region = region or settings().region
        customers_table = customers_table or resource_name(CUSTOMERS_TABLE_LOGICAL_NAME)
        self.customers = customer_model(customers_table, region)
        self.credentials = credentials_model(auth_table or resource_name(AUTH_TABLE_LOGICAL_NAME), region)
        self._connection = Connection(region=region, connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
                                      read_timeout_seconds=READ_TIMEOUT_SECONDS,
                                      max_retry_attempts=RETRY_ATTEMPTS_MAX)

    # --- CustomerRepository ---

    def get(self, customer_id: str) -> CustomerRecord | None:
        item = consistent_get(self.customers, (customer_id,),
                              lambda _: CustomerStoreUnavailable("customer read failed"))
        if item is None:
            return None
        updated_at = item.profile_updated_at
        return CustomerRecord(
            customer_id=item.customer_id, username=item.username, created_at_s=int(item.created_at),
            status=item.status, sealed_profile=item.sealed_profile,
            profile_updated_at_s=int(updated_at) if updated_at is not None else None,
        )

    def put_profile(self, customer_id: str, sealed_profile: str, updated_at_s: int) -> bool:
        model = self.customers
        return conditional_write(lambda: model(customer_id).update(
            actions=[model.sealed_profile.set(sealed_profile),
                     model.profile_updated_at.set(updated_at_s)],
            condition=model.customer_id.exists(),
        )).or_raise(lambda _: CustomerStoreUnavailable("profile write failed"))

    # --- CredentialRepository ---

    def create(self, customer: CustomerRecord, credentials: Credentials) -> bool:
        customer_item = self.customers(
            customer.customer_id, username=customer.username, created_at=customer.created_at_s,
            status=customer.status,
        )
        credentials_item = self.credentials(
            credentials_key(credentials.username), CREDENTIALS_SK, customer_id=credentials.customer_id,
            password_hash=credentials.password_hash, status=credentials.status,
            created_at=customer.created_at_s,
        )

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(credentials_item, condition=self.credentials.pk.does_not_exist())
                transaction.save(customer_item, condition=self.customers.customer_id.does_not_exist())

        return conditional_write(transact).or_raise(
            lambda w: CustomerStoreUnavailable(f"sign-up write failed: {w.code}"))

    def credentials_for(self, username: str) -> Credentials | None:
        item = consistent_get(self.credentials, (credentials_key(username), CREDENTIALS_SK),
                              lambda _: CustomerStoreUnavailable("credentials read failed"))
        if item is None:
            return None
        return Credentials(username, item.customer_id, item.password_hash, item.status)

    def replace_password_hash(self, username: str, old_hash: str, new_hash: str) -> bool:
        model = self.credentials
        return conditional_write(lambda: model(credentials_key(username), CREDENTIALS_SK).update(
            actions=[model.password_hash.set(new_hash)], condition=model.password_hash == old_hash,
        )).or_raise(lambda _: CustomerStoreUnavailable("password hash update failed"))
