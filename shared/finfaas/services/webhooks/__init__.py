"""Webhooks: integrators' subscriptions, fan-out of events, signed deliveries."""
