"""In-memory customer and credential repositories, for tests: they pass the same contract tests
as the DynamoDB store."""

from __future__ import annotations

from dataclasses import replace
from threading import Lock

from finfaas.services.customers.model import Credentials, CustomerRecord


class InMemoryCustomerStore:
    """Customers and credentials in dicts, for unit tests; same contracts as the DynamoDB store."""

    def __init__(self) -> None:
        self.customers: dict[str, CustomerRecord] = {}
        self.credentials: dict[str, Credentials] = {}
        self._lock = Lock()

    def get(self, customer_id: str) -> CustomerRecord | None:
        with self._lock:
            return self.customers.get(customer_id)

    def put_profile(self, customer_id: str, sealed_profile: str, updated_at_s: int) -> bool:
        with self._lock:
            record = self.customers.get(customer_id)
            if record is None:
                return False
            self.customers[customer_id] = replace(record, sealed_profile=sealed_profile,
                                                  profile_updated_at_s=updated_at_s)
            return True

    def create(self, customer: CustomerRecord, credentials: Credentials) -> bool:
        """Both records, or neither when the username (or customer id) is taken."""
        with self._lock:
            if credentials.username in self.credentials or customer.customer_id in self.customers:
                return False
            self.customers[customer.customer_id] = customer
            self.credentials[credentials.username] = credentials
            return True

    def credentials_for(self, username: str) -> Credentials | None:
        with self._lock:
            return self.credentials.get(username)

    def replace_password_hash(self, username: str, old_hash: str, new_hash: str) -> bool:
        with self._lock:
            current = self.credentials.get(username)
            if current is None or current.password_hash != old_hash:
                return False
            self.credentials[username] = replace(current, password_hash=new_hash)
            return True
