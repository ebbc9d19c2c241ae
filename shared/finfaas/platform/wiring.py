"""How a function's handler holds its services: built on first use, replaceable in tests.

Module-level setup stays cheap so `/_/health` imports no AWS code: a handler declares
`services = Lazy(build_services)` and its routes call `services.get()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from finfaas.platform import jwt_auth

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built once, by the first caller that needs it; `use()` puts another in place."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    @classmethod
    def ready(cls, value: T) -> Lazy[T]:
        """A Lazy that already holds its value."""
        lazy = cls(lambda: value)
        lazy.use(value)
        return lazy

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def peek(self) -> T | None:
        """The value if it was built or given, without building it."""
        with self._lock:
            return self._value

    def use(self, value: T) -> None:
        """Replace the value (tests, the local runtime)."""
        with self._lock:
            self._value = value


class ReplaceableVerifier:
    """The process's JWKS verifier unless another is put in place (tests sign with their own key)."""

    def __init__(self) -> None:
        self._verifier: Any = None

    def use(self, verifier: Any) -> None:
        self._verifier = verifier

    def verify(self, token: str) -> jwt_auth.Principal:
        return (self._verifier or jwt_auth.default_verifier()).verify(token)
