"""LeaseRenewal: the renewal thread every lease holder shares stops when told, and on close."""

from __future__ import annotations

import time

from finfaas.platform.leases import LeaseRenewal

RENEW_SECONDS = 0.005  # real seconds, so the tests wait little for the thread


class CountingRenewal(LeaseRenewal):
    """Counts renewals; the renewal numbered stop_at says the lease is lost."""

    def __init__(self, stop_at: int) -> None:
        super().__init__(RENEW_SECONDS, thread_name="test-lease-renewal")
        self.stop_at = stop_at
        self.calls = 0

    def _renew_once(self) -> bool:
        self.calls += 1
        return self.calls < self.stop_at


def test_renewals_stop_at_the_first_that_says_the_lease_is_gone():
    # GIVEN a holder whose third renewal finds the lease lost
    # WHEN the work runs many renewal periods long
    with CountingRenewal(stop_at=3) as renewal:
        time.sleep(RENEW_SECONDS * 40)

    # THEN nothing was renewed after the third
    assert renewal.calls == 3


def test_closing_stops_the_renewals_before_it_returns():
    # GIVEN renewals that would go on for ever
    with CountingRenewal(stop_at=10**9) as renewal:
        time.sleep(RENEW_SECONDS * 4)

    # WHEN the work is over, THEN no renewal runs after the block has left
    calls_at_close = renewal.calls
    time.sleep(RENEW_SECONDS * 10)
    assert renewal.calls == calls_at_close
