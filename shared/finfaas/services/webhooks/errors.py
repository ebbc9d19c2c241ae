"""The webhooks capability's refusals and failures; `code` is the problem code where the API maps it."""

from __future__ import annotations


class InvalidSignature(Exception):
    """The webhook is not authentic, or too old or too far in the future."""


class WebhookError(Exception):
    """Base of the integrator-facing refusals; `code` is the problem code."""

    code = "webhook_error"


class SubscriptionNotFound(WebhookError):
    """No such subscription among the caller's."""

    code = "subscription_not_found"


class SubscriptionDeleted(WebhookError):
    """The Idempotency-Key created a subscription that has since been deleted."""

    code = "subscription_deleted"


class IdempotencyKeyReused(WebhookError):
    """The Idempotency-Key was used before with a different request body."""

    code = "idempotency_key_reused"


class SubscriptionLimitReached(WebhookError):
    """The caller already has the most subscriptions allowed."""

    code = "subscription_limit_reached"


class InvalidTarget(WebhookError):
    """The URL is not one deliveries may go to (scheme, host or address)."""

    code = "invalid_webhook_url"


class InvalidEventTypes(WebhookError):
    """An event type that the suite does not emit."""

    code = "invalid_event_types"


class WebhookStoreUnavailable(Exception):
    """The subscriptions table did not answer; retry later."""


class DeliveryFailed(Exception):
    """The receiver could not be reached or did not answer in time."""
