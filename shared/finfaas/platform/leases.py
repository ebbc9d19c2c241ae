"""Keeping a lease alive while slow work runs: a renewal thread per held lease, one class for every holder."""

from __future__ import annotations

import threading
from typing import Self


class LeaseRenewal:
    """Calls `_renew_once` on a thread of its own every renew_seconds until closed or it returns False.

    A holder subclasses it with the renewal itself (one conditional write, a deadline check) and
    uses it as a context manager around the work the lease protects.
    """

    def __init__(self, renew_seconds: float, thread_name: str) -> None:
        self._renew_seconds = renew_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._renew_seconds):
            if not self._renew_once():
                return

    def _renew_once(self) -> bool:
        """Renew the lease once; False ends the renewals (lease lost, deadline passed)."""
        raise NotImplementedError
