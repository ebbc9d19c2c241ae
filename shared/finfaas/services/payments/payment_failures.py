"""payment_intent.payment_failed: a confirmation refused by the payment itself (risk declined it, or the
customer's account cannot cover the hold) is recorded on the intent with its event, in one versioned save.

Nothing moved, so the intent stays `requires_confirmation` (a later confirmation may pass, e.g. once the
account is funded); `last_payment_error` names the refusal's code. A refusal the caller can fix by asking
differently (a wrong state, an inactive merchant) or one that is not about the payment (risk unavailable)
writes nothing, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from finfaas.services.payments.model import IntentStatus, intent_event
from finfaas.services.payments.ports import PaymentIntents

PAYMENT_FAILED = "payment_intent.payment_failed"
INSUFFICIENT_FUNDS_CODE = "insufficient_funds"
failure_reason_chars_max = 500


def failure_code(refusal: Exception) -> str:
    """The refusal's stable code (the problem+json code the caller gets)."""
    return str(getattr(refusal, "code", "") or INSUFFICIENT_FUNDS_CODE)


def record_payment_failure(intents: PaymentIntents, payment_id: str, refusal: Exception,
                           clock: Callable[[], datetime], write_id: str | None = None) -> bool:
    """Save the refusal on the intent with payment_intent.payment_failed; False when the intent moved on
    meanwhile (a rival's change stands and this refusal is not the latest word on it), or when this very
    request (`write_id`, from its Idempotency-Key) already recorded it: a retry writes no second event."""
    intent = intents.get(payment_id)
    if intent is None or intent.status is not IntentStatus.REQUIRES_CONFIRMATION:
        return False
    if write_id is not None and intent.write_id == write_id:
        return False
    code = failure_code(refusal)
    wanted = intent.changed(clock(), write_id=write_id or uuid.uuid4().hex, last_payment_error=code)
    event = intent_event(wanted, PAYMENT_FAILED)
    failed = replace(event, data={**event.data, "failure_code": code,
                                  "failure_reason": str(refusal)[:failure_reason_chars_max]})
    return intents.save(wanted, failed)

