"""Loopback helpers shared by the tooling and the tests: a free port, and a bounded wait."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

LOOPBACK_HOST = "127.0.0.1"
# Short enough that a ready server is seen at once, long enough not to spin a shared CPU.
POLL_SECONDS = 0.05

T = TypeVar("T")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nobody listens on now (TCP by default; pass SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((LOOPBACK_HOST, 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], T], seconds_max: float, what: str) -> T:
    """Poll `condition` until it returns a true value and return it; TimeoutError after `seconds_max`."""
    deadline = time.monotonic() + seconds_max
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {seconds_max} s waiting for {what}")
        time.sleep(POLL_SECONDS)
