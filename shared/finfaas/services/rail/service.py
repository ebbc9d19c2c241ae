"""The external payment rail: the interface the suite relies on, and a SANDBOX bank behind it.

The transfer saga hands a payment to the rail with a callback task (queue `rail`, the task token
in the message) and waits. Two parts live in the rail function:

* RailAdapter (the suite's side, kept for a real rail): takes the hand-off only if the orchestrator
  really waits for its token, submits the payment to a PaymentRail, turns the bank's signed
  settlement notices into the orchestrator's task success/failure, and recalls a payment for a
  saga that timed out ("has it settled? if not, make sure it never will").
* SandboxBank (a stand-in for a bank, for local use and tests): settles a payment after a delay,
  rejects or "times out" at configured rates, and signs its notices (Standard Webhooks HMAC, as
  the suite's own webhooks). Creditor account numbers ending in 0001 are always rejected, 0002
  settle without a notice (the notice is lost), 0003 never settle (stuck): deterministic cases
  for tests, as payment sandboxes offer test account numbers.

A real rail implements PaymentRail (submit, status, recall) against its bank and posts signed
notices to the same adapter route; nothing else changes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from finfaas.domain.creditor import Creditor, CreditorVault
from finfaas.domain.money import parse_currency
from finfaas.platform.orchestrator_api import Orchestrator
from finfaas.platform.pii import PiiDecryptionFailed, PiiKeyUnavailable
from finfaas.platform.retry import SAVE_RACE_POLICY, Change, Unchanged, read_change_save
from finfaas.services.rail.api import (
    SETTLE_EVENT_TYPE,
    DisputeDelivery,
    DisputeTrigger,
    HandOff,
    Notice,
    SettleMessage,
    payment_id_chars_max,
    well_formed_payment_id,
)
from finfaas.services.rail.errors import (
    InvalidNotice,
    PaymentConflict,
    PaymentNotFound,
    PaymentRefused,
    RailStoreUnavailable,
)
from finfaas.services.rail.model import PaymentStatus, Plan, RailPayment
from finfaas.services.rail.ports import DisputeNotifier, NoticeSender, RailRepository, Scheduler
from finfaas.services.webhooks.model import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify_signature,
)

NOTICE_KEY_SECRET_NAME = "rail-notice-key"  # noqa: S105 - the secret's name, not a secret
REJECTED_ERROR = "Rail.Rejected"
REJECT_SUFFIX, LOSE_NOTICE_SUFFIX, STUCK_SUFFIX = "0001", "0002", "0003"
settle_seconds_default = 1
settle_seconds_max = 900  # one SQS delay
notice_tolerance_seconds = 300
save_attempts_max = 4
SAVE_POLICY = SAVE_RACE_POLICY.with_attempts(save_attempts_max)


# --- the sandbox bank --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxSettings:
    """How the sandbox behaves; rates are probabilities in [0, 1]."""

    settle_seconds: int = settle_seconds_default
    reject_rate: float = 0.0
    timeout_rate: float = 0.0  # half of these lose their notice, half get stuck

    def __post_init__(self) -> None:
        if not 0 <= self.settle_seconds <= settle_seconds_max:
            raise ValueError(f"settle_seconds: 0..{settle_seconds_max}")
        if not (
            0 <= self.reject_rate <= 1
            and 0 <= self.timeout_rate <= 1
            and self.reject_rate + self.timeout_rate <= 1
        ):
            raise ValueError("reject_rate and timeout_rate are probabilities adding up to at most 1")


def plan_for(creditor: Creditor, settings: SandboxSettings, draw: float) -> Plan:
    """Test account numbers decide; otherwise the configured rates, by one uniform draw in [0, 1)."""
    for suffix, plan in (
        (REJECT_SUFFIX, Plan.REJECT),
        (LOSE_NOTICE_SUFFIX, Plan.LOSE_NOTICE),
        (STUCK_SUFFIX, Plan.STUCK),
    ):
        if creditor.account_number.endswith(suffix):
            return plan
    if draw < settings.reject_rate:
        return Plan.REJECT
    if draw < settings.reject_rate + settings.timeout_rate / 2:
        return Plan.LOSE_NOTICE
    if draw < settings.reject_rate + settings.timeout_rate:
        return Plan.STUCK
    return Plan.SETTLE


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SandboxBank:
    """SANDBOX: behaves like a bank's payment rail; never moves real money. Implements PaymentRail."""

    def __init__(
        self,
        store: RailRepository,
        scheduler: Scheduler,
        notices: NoticeSender,
        notice_key: str,
        *,
        settings: SandboxSettings = SandboxSettings(),
        clock: Callable[[], datetime] = _utc_now,
        draw: Callable[[], float] = random.random,
        disputes: DisputeNotifier | None = None,
    ) -> None:
        self._disputes = disputes
        self._store = store
        self._scheduler = scheduler
        self._notices = notices
        self._notice_key = notice_key
        self._settings = settings
        self._clock = clock
        self._draw = draw

    def submit(self, payment: RailPayment, creditor: Creditor | None = None) -> RailPayment:
        """Accept a payment (idempotent by id) and schedule its settlement; `creditor` is the payee in the
        clear, used to pay and never stored (the payment keeps it sealed)."""
        now = self._clock()
        plan = plan_for(creditor, self._settings, self._draw()) if creditor else Plan.SETTLE
        wanted = replace(
            payment,
            status=PaymentStatus.ACCEPTED,
            plan=plan,
            received_at=now,
            settle_at=now + timedelta(seconds=self._settings.settle_seconds),
        )
        stored = self._store.create(wanted)
        if stored.plan is Plan.NONE:
            raise PaymentRefused(f"payment {payment.payment_id} was recalled before it arrived")
        if stored.identity() != wanted.identity():
            raise PaymentConflict(f"payment {payment.payment_id} exists with different fields")
        if stored.status is PaymentStatus.ACCEPTED and stored.plan is not Plan.STUCK:
            self._scheduler.settle_later(stored.payment_id, self._settings.settle_seconds)
        return stored

    def status(self, payment_id: str) -> RailPayment | None:
        return self._store.get(payment_id)

    def notify_dispute(self, trigger: DisputeTrigger) -> DisputeDelivery:
        """SANDBOX: send payments the bank's signed dispute notice, as a card network would, and report
        its answer; the notice id names the dispute and the kind, so a repeat is the same notice."""
        if self._disputes is None:
            raise RailStoreUnavailable("no route for dispute notices is configured")
        body = trigger.model_dump_json(exclude_none=True).encode()
        notice_id = f"notice_{trigger.dispute_id}_{trigger.kind.replace('.', '_')}"
        timestamp = int(self._clock().timestamp())
        headers = {
            ID_HEADER: notice_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._notice_key, notice_id, timestamp, body),
            "Content-Type": "application/json",
        }
        status_code, answer = self._disputes.deliver(body, headers)
        return DisputeDelivery(notice_id=notice_id, status_code=status_code, answer=answer)

    def settle_due(self, payment_id: str) -> RailPayment | None:
        """The scheduled settlement: settle or reject (once), then send the signed notice (again on retry)."""

        def settled(
            payment: RailPayment | None,
        ) -> Unchanged[RailPayment | None] | Change[RailPayment, RailPayment | None]:
            if payment is None or payment.plan in (Plan.STUCK, Plan.NONE):
                return Unchanged(payment)
            if payment.status is not PaymentStatus.ACCEPTED:
                return Unchanged(payment)
            now = self._clock()
            if payment.settle_at is not None and now < payment.settle_at:
                return Unchanged(payment)  # not due yet
            decided = self._decided(payment, now)
            return Change(decided, decided)

        payment = read_change_save(
            lambda: self._store.get(payment_id), settled, self._store.save, policy=SAVE_POLICY,
            exhausted=lambda: RailStoreUnavailable(f"payment {payment_id} kept changing"),
        )
        if payment is None or payment.plan in (Plan.STUCK, Plan.NONE):
            return payment
        if payment.status is PaymentStatus.ACCEPTED and payment.settle_at is not None:
            remaining = (payment.settle_at - self._clock()).total_seconds()
            self._scheduler.settle_later(payment_id, max(1, int(remaining + 0.999)))
            return payment
        self._notify(payment)
        return payment

    def recall(self, payment_id: str) -> RailPayment:
        """Make sure an unsettled payment never settles: CANCELLED, or its final status if it has one.
        An id the bank never received is recorded as CANCELLED, so a late arrival is refused."""

        def payment_or_tombstone() -> RailPayment:
            payment = self._store.get(payment_id)
            if payment is not None:
                return payment
            tombstone = RailPayment(
                payment_id,
                0,
                "XXX",
                None,
                PaymentStatus.CANCELLED,
                Plan.NONE,
                self._clock(),
                reason="recalled before it arrived",
            )
            return self._store.create(tombstone)  # the payment, when it arrived meanwhile

        def cancelled(payment: RailPayment) -> Unchanged[RailPayment] | Change[RailPayment, RailPayment]:
            if payment.status.final:
                return Unchanged(payment)
            recalled = payment.next(status=PaymentStatus.CANCELLED, reason="recalled")
            return Change(recalled, recalled)

        return read_change_save(
            payment_or_tombstone, cancelled, self._store.save, policy=SAVE_POLICY,
            exhausted=lambda: RailStoreUnavailable(f"payment {payment_id} kept changing"),
        )

    def _decided(self, payment: RailPayment, now: datetime) -> RailPayment:
        if payment.plan is Plan.REJECT:
            return payment.next(status=PaymentStatus.REJECTED, reason="creditor account closed (sandbox)")
        return payment.next(status=PaymentStatus.SETTLED, settled_at=now)

    def _notify(self, payment: RailPayment) -> None:
        if payment.plan is Plan.LOSE_NOTICE or not payment.status.final:
            return
        notice = Notice(
            payment_id=payment.payment_id,
            status=payment.status,
            reason=payment.reason,
            settled_at=payment.settled_at,
        )
        body = notice.model_dump_json().encode()
        notice_id = f"notice_{payment.payment_id}_{payment.status.value.lower()}"
        timestamp = int(self._clock().timestamp())
        headers = {
            ID_HEADER: notice_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._notice_key, notice_id, timestamp, body),
            "Content-Type": "application/json",
        }
        self._notices.send(body, headers)


# --- the suite's adapter -----------------------------------------------------------------------------


class RailAdapter:
    """Between the saga and a PaymentRail: hand-offs in, notices out to the orchestrator, recalls."""

    def __init__(
        self,
        bank: SandboxBank,
        store: RailRepository,
        orchestrator: Orchestrator,
        notice_key: str,
        *,
        vault: CreditorVault | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._bank = bank
        self._store = store
        self._orchestrator = orchestrator
        self._notice_key = notice_key
        self._vault = vault  # opens the payee at the moment of paying; None pays no one
        self._clock = clock

    def hand_off(self, message: HandOff) -> str:
        """Submit the payment if the orchestrator waits for this token; a forged or stale one is ignored."""
        if not self._orchestrator.heartbeat(message.task_token):
            return "ignored"
        sealed = message.creditor.creditor()
        if self._vault is None:
            raise PiiKeyUnavailable("no key to open payees with: the rail cannot pay")
        try:
            creditor = self._vault.open(message.payment_id, sealed)
        except (PiiDecryptionFailed, ValueError, KeyError, TypeError):
            # Sealed for another transfer, or damaged: a definite refusal, nothing was paid.
            self._report_failure(message.task_token, "the payee does not open for this payment")
            return "refused"
        payment = RailPayment(
            message.payment_id,
            message.amount_minor,
            parse_currency(message.currency),
            sealed,
            PaymentStatus.ACCEPTED,
            Plan.SETTLE,
            self._clock(),
            task_token=message.task_token,
        )
        try:
            stored = self._bank.submit(payment, creditor)
        except PaymentRefused as refused:
            self._report_failure(message.task_token, str(refused))
            return "refused"
        self._keep_token(stored, message.task_token)
        if stored.status.final:  # a repeated hand-off after the notice went out
            self._report(stored, message.task_token)
        return "submitted"

    def on_notice(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        """A signed notice from the bank: report the payment's final status to the waiting saga."""
        from finfaas.services.webhooks.errors import InvalidSignature

        try:
            moment = self._clock().timestamp() if now is None else now
            verify_signature(self._notice_key, headers, body, notice_tolerance_seconds, moment)
            notice = Notice.model_validate_json(body)
        except (InvalidSignature, ValueError) as error:
            raise InvalidNotice(f"notice refused: {error}") from None
        payment = self._store.get(notice.payment_id)
        if payment is None or payment.task_token is None:
            return "unknown_payment"
        return self._report(payment, payment.task_token)

    def recall(self, payment_id: str) -> RailPayment:
        """The bank's recall; an id no hand-off can carry is not found, so it leaves no tombstone."""
        if not well_formed_payment_id(payment_id):
            raise PaymentNotFound(f"payment {payment_id[:payment_id_chars_max]} not found")
        return self._bank.recall(payment_id)

    def status(self, payment_id: str) -> RailPayment:
        payment = self._bank.status(payment_id)
        if payment is None:
            raise PaymentNotFound(f"payment {payment_id} not found")
        return payment

    def _keep_token(self, payment: RailPayment, token: str) -> None:
        known: RailPayment | None = payment

        def read() -> RailPayment | None:
            # The payment in hand first; after a lost race, the stored one.
            nonlocal known
            current, known = known or self._store.get(payment.payment_id), None
            return current

        def kept(current: RailPayment | None) -> Unchanged[None] | Change[RailPayment, None]:
            if current is None or current.task_token == token:
                return Unchanged(None)
            return Change(current.next(task_token=token), None)

        read_change_save(
            read, kept, self._store.save, policy=SAVE_POLICY,
            exhausted=lambda: RailStoreUnavailable(f"payment {payment.payment_id} kept changing"),
        )

    def _report(self, payment: RailPayment, token: str) -> str:
        from finfaas.services.suite_clients import TaskNotWaiting

        try:
            if payment.status is PaymentStatus.SETTLED:
                settled_at = payment.settled_at.isoformat() if payment.settled_at else None
                self._orchestrator.succeed(
                    token, {"payment_id": payment.payment_id, "status": "SETTLED", "settled_at": settled_at}
                )
                return "reported"
            if payment.status.final:
                self._orchestrator.fail(
                    token,
                    REJECTED_ERROR,
                    json.dumps(
                        {
                            "payment_id": payment.payment_id,
                            "status": payment.status.value,
                            "reason": payment.reason,
                        }
                    ),
                )
                return "reported"
        except TaskNotWaiting:
            return "not_waiting"  # the saga moved on (it timed out and recalled): nothing to tell
        return "pending"

    def _report_failure(self, token: str, reason: str) -> None:
        from finfaas.services.suite_clients import TaskNotWaiting

        try:
            self._orchestrator.fail(token, REJECTED_ERROR, reason)
        except TaskNotWaiting:
            pass


def new_notice_key() -> str:
    """A fresh `rail-notice-key` secret (Standard Webhooks format)."""
    from finfaas.services.webhooks.model import new_webhook_secret

    return new_webhook_secret()


# --- adapters of the sandbox to the suite's queue and gateway ----------------------------------------


class SqsSettlementScheduler:
    """Settlement later = a delayed message on the rail's own queue (`rail`), delivered back to it."""

    def __init__(self, queue: Any = None, mac: Any = None) -> None:
        from finfaas.platform.queue_proof import lazy_event_mac

        self._queue = queue
        self._mac = lazy_event_mac(mac)  # the rail's POST / takes only sealed messages

    def settle_later(self, payment_id: str, delay_seconds: int) -> None:
        from finfaas.platform.events import CONTENT_TYPE_ATTRIBUTE, TYPE_ATTRIBUTE, QueueMessage, SqsQueue
        from finfaas.platform.queue_proof import seal_body

        if self._queue is None:
            self._queue = SqsQueue("rail")
        body = seal_body(self._mac.get(), SettleMessage(payment_id=payment_id).model_dump_json()).encode()
        attributes = {TYPE_ATTRIBUTE: SETTLE_EVENT_TYPE, CONTENT_TYPE_ATTRIBUTE: "application/json"}
        self._queue.send(QueueMessage(payment_id, body, attributes, min(delay_seconds, settle_seconds_max)))


class HttpNoticeSender:
    """POSTs the bank's signed notices to the adapter's route through the gateway."""

    def __init__(self, url: str, timeout_seconds: float = 10.0) -> None:
        self._url = url
        self._timeout_seconds = timeout_seconds
        self._session: Any = None

    def send(self, body: bytes, headers: Mapping[str, str]) -> None:
        import requests

        from finfaas.platform.suite_http import new_suite_session
        from finfaas.services.suite_clients import ServiceUnreachable

        if self._session is None:  # a race makes a second session, never a wrong one
            self._session = new_suite_session()
        try:
            response = self._session.post(
                self._url, data=body, headers=dict(headers), timeout=self._timeout_seconds
            )
        except requests.RequestException as error:
            raise ServiceUnreachable(f"notice not delivered: {type(error).__name__}") from error
        if response.status_code >= 300:
            raise ServiceUnreachable(f"notice not accepted: {response.status_code}")

    def deliver(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, object]]:
        """POST the notice and return the receiver's status and JSON answer (a refusal included)."""
        import requests

        from finfaas.platform.suite_http import new_suite_session
        from finfaas.services.suite_clients import ServiceUnreachable

        if self._session is None:
            self._session = new_suite_session()
        try:
            response = self._session.post(
                self._url, data=body, headers=dict(headers), timeout=self._timeout_seconds
            )
        except requests.RequestException as error:
            raise ServiceUnreachable(f"notice not delivered: {type(error).__name__}") from error
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return response.status_code, answer if isinstance(answer, dict) else {}
