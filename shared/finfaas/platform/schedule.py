"""Schedule ticks: what lets a scheduled entry point (no bearer token) run its job.

A tick is either

- signed: `X-Finfaas-Schedule: t=<unix seconds>,v1=<base64 HMAC-SHA256 of "<function>.<t>">` made with
  the `schedule-hmac-key` secret (base64 keys separated by whitespace, the signing key first, older
  ones still accepted during a rotation). The function name in the MAC keeps a tick for one function
  from starting another; the timestamp must be within schedule_tick_age_seconds_max of the
  function's clock, and each tick is accepted once per process. A hand-run tick
  (`python -m finfaas.platform.schedule <function> <url>`, stdlib only) is one, and always runs;
- unsigned: what a stock scheduler sends (OpenFaaS's cron-connector's plain POST, a Knative
  PingSource's CloudEvent), which cannot sign. It runs the job only if it wins the job's claim for
  the current period: one conditional write of `schedule#<function>#<period start>` in the rate-limit
  table. So anyone who can reach the route causes at most one run per period, as the scheduler
  does; the others answer 200 `{"ran": false, "reason": "already_ran_this_period"}`. The jobs are
  safe to run twice at once anyway (a signed tick and an unsigned one may overlap).

A present but bad signature is 401 (a misconfigured signer must be seen), never an unsigned tick.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel

from finfaas.platform.errors import HttpError, ServiceUnavailable
from finfaas.platform.http.messages import Response
from finfaas.platform.logging import get_logger
from finfaas.platform.mac_keys import mac_keys_from_config
from finfaas.platform.problems import FieldError
from finfaas.platform.ratelimit import RateLimitRepository, RateLimitStoreError
from finfaas.platform.wiring import Lazy

SCHEDULE_HEADER = "X-Finfaas-Schedule"
SCHEDULE_KEY_SECRET_NAME = "schedule-hmac-key"  # noqa: S105 - the name of the secret file, not a secret
SCHEDULE_PROOF_VERSION = "v1"
schedule_tick_age_seconds_max = 120  # two cron minutes: a tick delayed by a slow gateway still counts
schedule_tick_skew_seconds_max = 30  # a scheduler's clock a little ahead of the function's
schedule_ticks_remembered_max = 1024  # per process; ticks come once a minute per schedule
schedule_header_chars_max = 128
tick_timeout_seconds = 70.0  # the relay's 65 s exec_timeout, and some
SCHEDULE_CLAIM_PREFIX = "schedule#"  # in the rate-limit table, beside buckets named <limit>:<digest>:<window>
ALREADY_RAN: Final = "already_ran_this_period"
# A claim outlives its period by this much before DynamoDB's TTL may delete it; a later period has its
# own key, so the TTL only keeps the table small.
schedule_claim_kept_seconds = 3600
schedule_period_seconds_max = 86_400
_HEADER_PATTERN = re.compile(r"^t=(?P<t>[0-9]{1,12}),v1=(?P<mac>[A-Za-z0-9+/=]{1,64})$")
_log = get_logger("schedule")


class ScheduleProofInvalid(HttpError):
    """A scheduled entry point called without a fresh, authentic tick; the detail never says why."""

    status, code, title = 401, "schedule_proof_invalid", "Schedule proof invalid"

    def __init__(self) -> None:
        super().__init__(
            f"This entry point runs on a schedule: send a signed tick in {SCHEDULE_HEADER}.",
            errors=(FieldError(SCHEDULE_HEADER, "missing, malformed, stale, replayed or forged"),),
            headers={"WWW-Authenticate": f'FinfaasSchedule realm="finfaas", header="{SCHEDULE_HEADER}"'},
        )


def schedule_keys_from_config() -> tuple[bytes, ...]:
    """The keys of the `schedule-hmac-key` secret (ConfigError when it is missing)."""
    return mac_keys_from_config(SCHEDULE_KEY_SECRET_NAME)


def _mac(key: bytes, function: str, timestamp: int) -> str:
    digest = hmac.new(key, f"{function}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_tick(key: bytes, function: str, now: float) -> str:
    """The X-Finfaas-Schedule value of a tick sent now to `function`."""
    timestamp = int(now)
    return f"t={timestamp},{SCHEDULE_PROOF_VERSION}={_mac(key, function, timestamp)}"


class TickSkipped(BaseModel):
    """The answer to an unsigned tick whose period already ran: nothing was done, nothing to retry."""

    ran: Literal[False] = False
    reason: Literal["already_ran_this_period"] = ALREADY_RAN
    period_start: int  # unix seconds: the scheduled instant the tick stood for


def claim_bucket(function: str, period_start: int) -> str:
    """The claim of one job for one period."""
    return f"{SCHEDULE_CLAIM_PREFIX}{function}#{period_start}"


def period_start(now: float, period_seconds: int) -> int:
    """The scheduled instant a tick arriving now stands for: the nearest one, so a scheduler's clock a
    little ahead or behind, or a delivery late by less than half a period, still names its own period."""
    return int(round(now / period_seconds)) * period_seconds


class ScheduleProof:
    """The trigger check of a scheduled route: a fresh tick signed for this function (once per process),
    or an unsigned tick that wins this period's claim (once per period, across every replica)."""

    answer_model = TickSkipped  # what an unsigned tick past its period's claim answers (OpenAPI)

    def __init__(self, function: str, keys: Sequence[bytes] | Callable[[], Sequence[bytes]],
                 claims: RateLimitRepository | Callable[[], RateLimitRepository], period_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        if not 1 <= period_seconds <= schedule_period_seconds_max:
            raise ValueError(f"{function}: period_seconds must be in 1..{schedule_period_seconds_max}")
        self.function = function
        self.period_seconds = period_seconds
        self._keys: Lazy[tuple[bytes, ...]] = (
            Lazy(lambda: tuple(keys())) if callable(keys) else Lazy.ready(tuple(keys))
        )
        self._claims: Lazy[RateLimitRepository] = (
            Lazy(claims) if callable(claims) else Lazy.ready(claims)
        )
        self._clock = clock
        self._seen: dict[str, float] = {}  # MAC -> when it stops being acceptable anyway
        self._lock = threading.Lock()

    def use(self, keys: Sequence[bytes] | None = None, clock: Callable[[], float] | None = None,
            claims: RateLimitRepository | None = None) -> None:
        """Verify with these keys, clock and claims from now on: tests, or a key read another way."""
        if keys is not None:
            self._keys.use(tuple(keys))
        if claims is not None:
            self._claims.use(claims)
        self._clock = clock or self._clock

    def verify(self, request: Any) -> None:
        """Accept a signed tick or raise ScheduleProofInvalid (401); an unsigned one waits for admit."""
        raw = request.header(SCHEDULE_HEADER.lower())
        if raw is None:
            return  # unsigned: admit() claims the period once the request is known to be valid
        match = _HEADER_PATTERN.match(raw[:schedule_header_chars_max])
        if match is None:
            raise ScheduleProofInvalid()
        timestamp, claimed, now = int(match["t"]), match["mac"], self._clock()
        if not -schedule_tick_skew_seconds_max <= now - timestamp <= schedule_tick_age_seconds_max:
            raise ScheduleProofInvalid()
        keys = self._keys_or_none()
        if not any(hmac.compare_digest(claimed, _mac(k, self.function, timestamp)) for k in keys):
            raise ScheduleProofInvalid()
        self._remember(claimed, timestamp + schedule_tick_age_seconds_max, now)

    def admit(self, request: Any) -> Response | None:
        """Just before the job runs: None to run it (a signed tick, or the period's claim won), else the
        answer an unsigned tick gets when its period already ran (200, TickSkipped)."""
        if request.header(SCHEDULE_HEADER.lower()) is not None:
            return None  # signed, and verified
        start = period_start(self._clock(), self.period_seconds)
        expires_at = start + self.period_seconds + schedule_claim_kept_seconds
        try:
            won = self._claims.get().take(claim_bucket(self.function, start), 1, 1, expires_at)
        except (RateLimitStoreError, OSError) as error:
            # Fail closed: without the claim, anyone could run the job as often as they like.
            _log.error("schedule claim unavailable", function=self.function, error_type=type(error).__name__)
            raise ServiceUnavailable("The schedule's claim could not be taken; the next tick runs the job.",
                                     headers={"Retry-After": str(self.period_seconds)}) from None
        _log.info("unsigned schedule tick", function=self.function, period_start=start, ran=won,
                  source=(request.header("ce-type") or "plain")[:64])
        if won:
            return None
        return Response(TickSkipped(period_start=start).model_dump(), 200)

    def _keys_or_none(self) -> tuple[bytes, ...]:
        try:
            return self._keys.get()
        except Exception as error:  # a missing key must refuse every tick, never accept one
            _log.error("schedule key unavailable", error_type=type(error).__name__)
            return ()

    def _remember(self, mac: str, expires_at: float, now: float) -> None:
        with self._lock:
            if mac in self._seen:
                raise ScheduleProofInvalid()
            if len(self._seen) >= schedule_ticks_remembered_max:
                self._seen = {m: t for m, t in self._seen.items() if t >= now}
            if len(self._seen) >= schedule_ticks_remembered_max:
                raise ScheduleProofInvalid()  # a flood of valid ticks is not a schedule: refuse, never forget
            self._seen[mac] = expires_at


def send_tick(function: str, url: str, key: bytes, now: float,
              timeout_seconds: float = tick_timeout_seconds) -> tuple[int, bytes]:
    """POST one signed tick to the function's URL; (status, body)."""
    request = urllib.request.Request(  # noqa: S310 - the scheduler's own configured URL
        url, data=b"", method="POST",
        headers={SCHEDULE_HEADER: sign_tick(key, function, now), "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as reply:  # noqa: S310
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def main(argv: list[str] | None = None) -> int:
    """`python -m finfaas.platform.schedule <function> <url>`: one tick; exit 0 on a 2xx answer."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m finfaas.platform.schedule <function> <url>", file=sys.stderr)
        return 2
    status, body = send_tick(args[0], args[1], schedule_keys_from_config()[0], time.time())
    print(status, body.decode("utf-8", "replace")[:500])
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
