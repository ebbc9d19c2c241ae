"""The webhooks capability wired as functions/webhooks wires it (one store, secret box, policy, queue
and key shared by the subscriptions, the fan-out and the sender), on fakes unless a test passes the
real adapters."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from finfaas.platform.events import EventEnvelope, EventMac
from finfaas.platform.pii import EnvelopeCipher
from finfaas.services.webhooks.service import (
    OutboundPolicy,
    SecretBox,
    SubscriptionCache,
    SubscriptionService,
    TargetMode,
    WebhookFanout,
    WebhookSender,
)
from finfaas_dev.fakes.platform import InMemoryDataKeys
from finfaas_dev.testing.platform import load_function_handler

from support.events_fakes import T0, FakePoster, FakeQueue, FakeSubscriptions

URL = "http://127.0.0.1:9000/hooks"
SENDER_NOW_S = 1_768_469_400  # the sender's clock in worlds with fixed clocks


def loopback_dns(host: str, port: int) -> list[str]:
    """Every name resolves to this machine, so LOOPBACK-mode targets pass without a real lookup."""
    return ["127.0.0.1"]


def transfer_created(data: dict[str, Any] | None = None) -> EventEnvelope:
    """The ledger's event for transfer t-1, as the fan-out receives it."""
    event_type = "ledger.transfers.created"
    return EventEnvelope(f"{event_type}:t-1:1", "finfaas/ledger", event_type, "t-1", T0,
                         {"transfers": []} if data is None else data)


class WebhooksWorld:
    """Subscriptions, fan-out and sender on shared parts; with `fixed_clocks` creation is stamped T0 and
    the sender reads `now` (which a test moves), otherwise both read the real clock as deployed."""

    def __init__(
        self,
        *,
        store: Any = None,
        box: SecretBox | None = None,
        policy: OutboundPolicy | None = None,
        poster: Any = None,
        queue: Any = None,
        dead_letters: Any = None,
        statuses: Sequence[int] = (200,),
        delays_seconds: Sequence[int] | None = None,
        fixed_clocks: bool = False,
    ) -> None:
        self.store = FakeSubscriptions() if store is None else store
        self.keys = InMemoryDataKeys()
        self.box = box or SecretBox(EnvelopeCipher(self.keys))
        self.policy = policy or OutboundPolicy(TargetMode.LOOPBACK, resolve=loopback_dns)
        self.poster = FakePoster(list(statuses)) if poster is None else poster
        self.queue = FakeQueue() if queue is None else queue
        self.dlq = FakeQueue() if dead_letters is None else dead_letters
        self.mac = EventMac.generate()
        self.now = SENDER_NOW_S
        created_at: dict[str, Any] = {"clock": lambda: T0} if fixed_clocks else {}
        sender_options: dict[str, Any] = {"clock": lambda: self.now} if fixed_clocks else {}
        if delays_seconds is not None:
            sender_options["delays_seconds"] = tuple(delays_seconds)
        self.service = SubscriptionService(self.store, self.box, self.policy, **created_at)
        cache = SubscriptionCache(self.store, ttl_seconds=0)
        self.fanout = WebhookFanout(cache, self.queue, self.mac)
        self.sender = WebhookSender(cache, self.box, self.poster, self.policy, self.queue, self.dlq, self.mac,
                                    **sender_options)

    def function(self, verifier: Any) -> ModuleType:
        """A fresh instance of functions/webhooks/handler.py trusting `verifier`, running on this world."""
        module = load_function_handler("webhooks")
        module.verifier.use(verifier)
        module.services.use(module.WebhooksServices(self.service, self.fanout, self.sender, self.mac,
                                                    probe=lambda: None))
        return module
