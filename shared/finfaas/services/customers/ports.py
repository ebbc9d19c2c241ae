"""What customers need from outside: the customer and credential repositories."""

from __future__ import annotations

from typing import Protocol

from finfaas.services.customers.model import Credentials, CustomerRecord


class CustomerRepository(Protocol):
    def get(self, customer_id: str) -> CustomerRecord | None:
        """The customer (strongly consistent), or None."""
        ...

    def put_profile(self, customer_id: str, sealed_profile: str, updated_at_s: int) -> bool:
        """Replace the sealed profile of an existing customer; False when there is no such customer."""
        ...


class CredentialRepository(Protocol):
    def create(self, customer: CustomerRecord, credentials: Credentials) -> bool:
        """Store both records atomically; False (nothing written) when the username is taken."""
        ...

    def credentials_for(self, username: str) -> Credentials | None:
        """The credentials of a normalised username (strongly consistent), or None."""
        ...

    def replace_password_hash(self, username: str, old_hash: str, new_hash: str) -> bool:
        """Swap the hash (parameters upgraded) if it is still old_hash; False otherwise."""
        ...
