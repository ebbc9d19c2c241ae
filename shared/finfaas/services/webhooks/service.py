"""Webhooks for integrators: subscriptions, fan-out of events, and signed deliveries with retries.

    events queue --(WebhookFanout: one message per matching subscription)--> webhooks queue
    webhooks queue --(WebhookSender: signed POST)--> integrator's URL

Signatures follow the Standard Webhooks scheme: headers `webhook-id` (the event id, so integrators
dedupe retries and relay duplicates alike), `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature` = `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, where the secret
is `whsec_<base64 key>`. The body is the structured CloudEvent, the same bytes on every attempt.

Secrets are random per subscription and returned once; at rest they are sealed with the KMS key
(envelope encryption, bound to the subscription id), because the sender must be able to sign with
them. Deriving them from one server secret would save the decrypt but make every integrator's secret
fall with that one, and rotate only all together.

Retries: a failed attempt (non-2xx, timeout, refused connection) puts a copy of the delivery back
on the webhooks queue with the next delay of `retry_delays_seconds` (SQS delays at most 15 min, so
longer waits hop), and the current message is acknowledged. The queue connector does not hand the
receipt handle to functions (neither does OpenFaaS's), so ChangeMessageVisibility is not available
here; and the visibility timeout alone would retry every 30 s five times, too fast for a receiver
that is down. After the last attempt the delivery goes to the webhooks DLQ with the reason. If even
the re-queueing fails, the function answers 503 and SQS redelivers (the redrive policy then bounds it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding
from finfaas.platform.events import (
    EVENT_TYPES,
    TYPE_ATTRIBUTE,
    EventEnvelope,
    EventMac,
    EventQueue,
    QueueMessage,
    QueueUnavailable,
    canonical_json,
    envelope_from_document,
    sqs_delay_seconds_max,
)
from finfaas.platform.logging import get_logger
from finfaas.services.webhooks.api import DELIVERY_TYPE, Delivery, url_chars_max
from finfaas.services.webhooks.errors import (
    DeliveryFailed,
    IdempotencyKeyReused,
    InvalidEventTypes,
    InvalidTarget,
    SubscriptionDeleted,
    SubscriptionLimitReached,
    SubscriptionNotFound,
)
from finfaas.services.webhooks.model import (
    ALL_EVENT_TYPES,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Subscription,
    SubscriptionStatus,
    new_webhook_secret,
    sign,
    subscription_id_chars_max,
    subscription_id_for,
)
from finfaas.services.webhooks.ports import HttpPoster, SecretCipher, SubscriptionRepository

USER_AGENT = "FinFaaS-Webhooks/0.1"


# Attempt n+1 waits retry_delays_seconds[n-1] after attempt n fails: 9 attempts over about 10.7 h.
retry_delays_seconds = (5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600)
connect_timeout_seconds = 3.0
read_timeout_seconds = 10.0
response_bytes_max = 4096  # read and discarded, so a chatty receiver cannot hold the sender


subscriptions_per_owner_max = 20
LIST_ROUTE = "GET /subscriptions"


subscription_cache_seconds = 5.0
secret_cache_entries_max = 256
secret_cache_seconds = 300.0
SECRET_CONTEXT_PURPOSE = "webhook-signing"  # noqa: S105 - a KMS encryption context value


_log = get_logger("webhooks")


class SecretBox:
    """Webhook secrets sealed with envelope encryption; opened secrets are kept a while in memory."""

    def __init__(self, cipher: SecretCipher, clock: Callable[[], float] = time.monotonic) -> None:
        self._cipher = cipher
        self._clock = clock
        self._opened: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def seal(self, subscription_id: str, secret: str) -> str:
        return self._cipher.seal(secret.encode(), _secret_context(subscription_id))

    def open(self, subscription: Subscription) -> str:
        key = (subscription.subscription_id, subscription.sealed_secret)
        now = self._clock()
        with self._lock:
            cached = self._opened.get(key)
            if cached is not None and now - cached[1] < secret_cache_seconds:
                return cached[0]
        secret = self._cipher.open(subscription.sealed_secret, _secret_context(subscription.subscription_id))
        with self._lock:
            if len(self._opened) >= secret_cache_entries_max:
                self._opened.clear()
            self._opened[key] = (secret.decode(), now)
        return secret.decode()


def _secret_context(subscription_id: str) -> dict[str, str]:
    return {"subscription_id": subscription_id, "purpose": SECRET_CONTEXT_PURPOSE}


@dataclass(frozen=True)
class CreatedSubscription:
    subscription: Subscription
    secret: str
    replayed: bool


@dataclass(frozen=True)
class SubscriptionPage:
    subscriptions: list[Subscription]
    has_more: bool
    next_cursor: str | None = None


class SubscriptionService:
    """What integrators do through the API: create, read, list and delete their subscriptions."""

    def __init__(self, store: SubscriptionRepository, secrets_box: SecretBox, policy: OutboundPolicy,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 cursors: CursorCodec | None = None) -> None:
        self._store = store
        self._secrets = secrets_box
        self._policy = policy
        self._clock = clock
        # Production passes the stage's keyed codec; a fresh key suits one process (tests).
        self._cursors = cursors or CursorCodec.generate()

    def create(self, owner: str, idempotency_key: str, url: str, event_types: Sequence[str],
               description: str = "") -> CreatedSubscription:
        """One subscription per (owner, Idempotency-Key): a retry returns the same one and its secret."""
        types = _checked_event_types(event_types)
        self._policy.check_url(url)
        subscription_id = subscription_id_for(owner, idempotency_key)
        fingerprint = _fingerprint(url, types, description)
        existing = self._store.get(subscription_id)
        if existing is not None:
            return self._replay(existing, owner, fingerprint)
        if sum(s.status is SubscriptionStatus.ACTIVE for s in self._store.list_owner(owner)) \
                >= subscriptions_per_owner_max:
            raise SubscriptionLimitReached(f"at most {subscriptions_per_owner_max} subscriptions")
        secret = new_webhook_secret()
        sealed = self._secrets.seal(subscription_id, secret)
        wanted = Subscription(subscription_id, owner, url, types, description, self._clock(),
                              SubscriptionStatus.ACTIVE, fingerprint, sealed)
        stored = self._store.create(wanted)
        if stored.sealed_secret != wanted.sealed_secret:  # a concurrent retry won the conditional put
            return self._replay(stored, owner, fingerprint)
        return CreatedSubscription(stored, secret, replayed=False)

    def get(self, owner: str, subscription_id: str) -> Subscription:
        found = self._store.get(subscription_id)
        if found is None or found.owner != owner or found.status is not SubscriptionStatus.ACTIVE:
            raise SubscriptionNotFound(f"no subscription {subscription_id}")
        return found

    def list(self, owner: str, limit: int, starting_after: str | None = None) -> SubscriptionPage:
        """The owner's active subscriptions by id; starting_after is a next_cursor this list gave them."""
        bound = binding(LIST_ROUTE, owner)
        after_id = None
        if starting_after is not None:
            after_id = self._cursors.open(starting_after, bound)
            if not isinstance(after_id, str) or not 0 < len(after_id) <= subscription_id_chars_max:
                raise InvalidCursor("not a cursor of this list")
        active = [s for s in self._store.list_owner(owner) if s.status is SubscriptionStatus.ACTIVE]
        after = [s for s in active if after_id is None or s.subscription_id > after_id]
        page, has_more = after[:limit], len(after) > limit
        cursor = self._cursors.seal(page[-1].subscription_id, bound) if has_more else None
        return SubscriptionPage(page, has_more, cursor)

    def delete(self, owner: str, subscription_id: str) -> None:
        if not self._store.mark_deleted(subscription_id, owner):
            raise SubscriptionNotFound(f"no subscription {subscription_id}")

    def _replay(self, existing: Subscription, owner: str, fingerprint: str) -> CreatedSubscription:
        if existing.owner != owner:  # ids include the owner; a clash would be a hash collision
            raise IdempotencyKeyReused("the Idempotency-Key belongs to another request")
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReused("the Idempotency-Key was used with a different body")
        if existing.status is not SubscriptionStatus.ACTIVE:
            raise SubscriptionDeleted(f"subscription {existing.subscription_id} was deleted")
        return CreatedSubscription(existing, self._secrets.open(existing), replayed=True)


def _fingerprint(url: str, event_types: tuple[str, ...], description: str) -> str:
    return hashlib.sha256(canonical_json({"url": url, "event_types": list(event_types),
                                          "description": description})).hexdigest()


def _checked_event_types(event_types: Sequence[str]) -> tuple[str, ...]:
    types = tuple(sorted(set(event_types)))
    unknown = [t for t in types if t != ALL_EVENT_TYPES and t not in EVENT_TYPES]
    if not types or unknown:
        raise InvalidEventTypes(f"unknown event types {unknown}; choose from {list(EVENT_TYPES)} or '*'")
    return types


# --- where deliveries may go -----------------------------------------------------------------------
#
# An integrator chooses the URL, so a delivery is a request our network makes on their behalf (SSRF).
# At creation the URL is checked as written; before every attempt the host is resolved once, every
# address it resolves to is checked, and the attempt connects to a checked address (never resolving
# again, so DNS cannot change between the check and the connection), follows no redirect and reads
# no proxy from the environment.


class TargetMode(StrEnum):
    LOOPBACK = "loopback"  # the local runtime, set explicitly: only this machine (127/8, ::1, localhost)
    PUBLIC = "public"  # the default: https to public addresses only (no private, link-local or metadata)


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 ranges whose last 32 bits are an IPv4 address a gateway may forward to (NAT64 well-known prefix,
# the deprecated IPv4-compatible form): that IPv4 address is judged too.
_IPV4_CARRYING_NETWORKS = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))
_IPV4_BITS = 0xFFFFFFFF
# Ranges Python's ipaddress still calls global that are not: local-use NAT64 (RFC 8215).
_NOT_GLOBAL_NETWORKS = (ipaddress.IPv6Network("64:ff9b:1::/48"),)
# Letters, digits and hyphens in dot-separated labels, as DNS names are written (IDNs as punycode):
# no percent-encoding or Unicode dots that a client library would turn into another host.
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?")
_LOCALHOST = "localhost"


def _resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def _judged_addresses(ip: IpAddress) -> tuple[IpAddress, ...]:
    """The address and every IPv4 address it carries (mapped, 6to4, Teredo, NAT64, compatible)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return (ip,)
    carried: list[IpAddress] = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        carried.extend(ip.teredo)
    if not (ip.is_loopback or ip.is_unspecified) and any(ip in net for net in _IPV4_CARRYING_NETWORKS):
        carried.append(ipaddress.IPv4Address(int(ip) & _IPV4_BITS))
    return (ip, *carried)


def address_allowed(ip: IpAddress, mode: TargetMode) -> bool:
    """Whether a delivery may connect to this address in this mode."""
    if mode is TargetMode.LOOPBACK:
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return ip.is_loopback or (mapped is not None and mapped.is_loopback)
    if any(ip in network for network in _NOT_GLOBAL_NETWORKS if network.version == ip.version):
        return False
    return all(a.is_global and not (a.is_multicast or a.is_reserved or a.is_link_local)
               for a in _judged_addresses(ip))


@dataclass(frozen=True)
class OutboundPolicy:
    mode: TargetMode = TargetMode.PUBLIC
    resolve: Callable[[str, int], list[str]] = _resolve

    def check_url(self, url: str) -> None:
        """Refuses URLs deliveries may never go to, before any name is resolved."""
        parts = _url_parts(url)
        allowed_schemes = ("http", "https") if self.mode is TargetMode.LOOPBACK else ("https",)
        if parts.scheme not in allowed_schemes:
            raise InvalidTarget(f"the URL must use {' or '.join(allowed_schemes)}")
        host = _target_host(parts.hostname or "")
        loopback = self.mode is TargetMode.LOOPBACK
        if isinstance(host, IpAddress):
            allowed = address_allowed(host, self.mode)
        else:
            allowed = host == _LOCALHOST if loopback else not _is_local_name(host)
        if not allowed:
            raise InvalidTarget("the local runtime delivers to this machine only (127.0.0.1, ::1, localhost)"
                                if loopback else "deliveries go to public addresses only")

    def check_connect(self, url: str) -> str:
        """Before each attempt: the address to connect to, once every address the host resolves to
        is allowed now. Connect to this address, not to the name (which may resolve elsewhere later)."""
        self.check_url(url)
        parts = _url_parts(url)
        host = _target_host(parts.hostname or "")
        if isinstance(host, IpAddress):
            return str(host)
        try:
            answers = self.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except OSError as error:
            raise DeliveryFailed(f"cannot resolve the host: {error}") from None
        if not answers:
            raise DeliveryFailed("the host resolves to no address")
        for answer in answers:
            try:
                ip = ipaddress.ip_address(answer)
            except ValueError:
                raise DeliveryFailed(f"the resolver answered {answer!r}, not an address") from None
            if not address_allowed(ip, self.mode):
                raise InvalidTarget(f"the host resolves to {answer}, which deliveries may not reach")
        return answers[0]


def _url_parts(url: str):
    if not isinstance(url, str) or not 0 < len(url) <= url_chars_max:
        raise InvalidTarget(f"the URL must be 1..{url_chars_max} characters")
    if not all("!" <= c <= "~" for c in url):
        raise InvalidTarget("the URL must be printable ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InvalidTarget("the URL is malformed") from None
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise InvalidTarget("the URL needs a host and no credentials or fragment")
    return parts


def _target_host(host: str) -> IpAddress | str:
    """The host as an address when it is one, else as a name; refuses spellings that hide an address
    (decimal 2130706433, octal 0177.0.0.1, hex 0x7f.1, shortened 127.1) and names not in DNS syntax."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidTarget("the URL's IPv6 address is malformed") from None
    if not _HOST_NAME.fullmatch(host):
        raise InvalidTarget("the host must be a DNS name (IDNs as punycode) or an IP address")
    last_label = host.rstrip(".").rsplit(".", 1)[-1]
    # As URL parsers (WHATWG) and inet_aton read it, a host whose last label is a number is an address.
    if last_label.isdigit() or last_label.startswith("0x"):
        try:
            return ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidTarget("write an IPv4 address as four decimal numbers (no octal, hex or "
                                "shortened forms)") from None
    return host


def _is_local_name(name: str) -> bool:
    bare = name.rstrip(".")
    return bare == _LOCALHOST or bare.endswith("." + _LOCALHOST)


# --- fan-out: events queue -> webhooks queue -------------------------------------------------------


class SubscriptionCache:
    """Active subscriptions, re-read at most every `ttl_seconds` (a new one applies within that)."""

    def __init__(self, store: SubscriptionRepository, ttl_seconds: float = subscription_cache_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._clock = clock
        self._cached: tuple[float, list[Subscription]] | None = None
        self._lock = threading.Lock()

    def active(self) -> list[Subscription]:
        now = self._clock()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < self._ttl:
                return self._cached[1]
        subscriptions = self._store.list_active()
        with self._lock:
            self._cached = (now, subscriptions)
        return subscriptions

    def get(self, subscription_id: str) -> Subscription | None:
        """Read through: a delivery must not go to a subscription deleted since it was queued."""
        return self._store.get(subscription_id)


class WebhookFanout:
    """Turns one event into one queued delivery per matching subscription."""

    def __init__(self, subscriptions: SubscriptionCache, queue: EventQueue, mac: EventMac) -> None:
        self._subscriptions = subscriptions
        self._queue = queue
        self._mac = mac

    def fan_out(self, envelope: EventEnvelope) -> int:
        """The number of deliveries queued; QueueUnavailable when any was not (the event is retried
        whole, and integrators dedupe the repeats by webhook-id)."""
        matching = [s for s in self._subscriptions.active() if s.matches(envelope.type)]
        document = envelope.document()
        messages = [Delivery(s.subscription_id, document).message(self._mac) for s in matching]
        if not messages:
            return 0
        outcome = self._queue.send_batch(messages)
        if not outcome.all_sent:
            raise QueueUnavailable(f"{len(outcome.failed) + len(outcome.refused)} deliveries not queued")
        return len(messages)


class PinnedPoster:
    """POSTs over a connection to the checked address while naming the URL's host (Host header, TLS
    SNI and certificate check), so no second DNS answer is ever used. Bounded timeouts, no redirects,
    no retries, no proxies, and at most response_bytes_max of the answer read (not decompressed)."""

    def __init__(self, timeout: tuple[float, float] = (connect_timeout_seconds, read_timeout_seconds),
                 ca_certs: str | None = None) -> None:
        import urllib3

        if ca_certs is None:
            import certifi

            ca_certs = certifi.where()  # the bundle requests would use, not the image's (maybe empty) store
        self._urllib3 = urllib3
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._ca_certs = ca_certs

    def post(self, url: str, address: str, headers: Mapping[str, str], body: bytes) -> int:
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        pool = self._pool(address, port, host if https else None)
        try:
            with pool:
                response = pool.urlopen("POST", target, body=body, headers={**headers, "host": parts.netloc},
                                        redirect=False, retries=False, assert_same_host=False,
                                        preload_content=False, release_conn=False)
                response.read(response_bytes_max, decode_content=False)
                return response.status
        except (self._urllib3.exceptions.HTTPError, OSError) as error:
            raise DeliveryFailed(f"{type(error).__name__}") from None

    def _pool(self, address: str, port: int, tls_host: str | None) -> Any:
        pools = self._urllib3
        if tls_host is None:
            return pools.HTTPConnectionPool(address, port, timeout=self._timeout, retries=False, maxsize=1)
        return pools.HTTPSConnectionPool(address, port, timeout=self._timeout, retries=False, maxsize=1,
                                         cert_reqs="CERT_REQUIRED", ca_certs=self._ca_certs,
                                         server_hostname=tls_host, assert_hostname=tls_host)


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"
    WAITING = "waiting"  # received before its time; queued again for the rest of the wait
    DEAD_LETTERED = "dead_lettered"
    DROPPED = "dropped"  # the subscription is gone


@dataclass
class WebhookSender:
    subscriptions: SubscriptionCache
    secrets_box: SecretBox
    poster: HttpPoster
    policy: OutboundPolicy
    retry_queue: EventQueue
    dead_letters: EventQueue
    mac: EventMac
    clock: Callable[[], float] = time.time
    delays_seconds: Sequence[int] = field(default=retry_delays_seconds)

    @property
    def attempts_max(self) -> int:
        return len(self.delays_seconds) + 1

    def deliver(self, delivery: Delivery) -> DeliveryOutcome:
        """One attempt. QueueUnavailable when a retry could not be queued: answer non-2xx then, so
        SQS redelivers this message instead."""
        now = int(self.clock())
        if delivery.not_before > now:
            self._requeue(delivery, delivery.not_before - now)
            return DeliveryOutcome.WAITING
        subscription = self.subscriptions.get(delivery.subscription_id)
        if subscription is None or subscription.status is not SubscriptionStatus.ACTIVE:
            _log.info("webhook dropped: subscription gone", subscription_id=delivery.subscription_id,
                      event_id=delivery.event_id)
            return DeliveryOutcome.DROPPED
        try:
            self._attempt(subscription, delivery, now)
        except InvalidTarget as refusal:
            return self._dead_letter(delivery, f"target refused: {refusal}")
        except DeliveryFailed as failure:
            return self._retry_or_give_up(delivery, str(failure), now)
        return DeliveryOutcome.DELIVERED

    def _attempt(self, subscription: Subscription, delivery: Delivery, now: int) -> None:
        address = self.policy.check_connect(subscription.url)
        body = self._body(delivery)
        headers = {
            ID_HEADER: delivery.event_id,
            TIMESTAMP_HEADER: str(now),
            SIGNATURE_HEADER: sign(self.secrets_box.open(subscription), delivery.event_id, now, body),
            "content-type": "application/cloudevents+json",
            "user-agent": USER_AGENT,
        }
        status = self.poster.post(subscription.url, address, headers, body)
        _log.info("webhook attempt", subscription_id=subscription.subscription_id, event_id=delivery.event_id,
                  attempt=delivery.attempt, status=status)
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status}")

    @staticmethod
    def _body(delivery: Delivery) -> bytes:
        """The structured CloudEvent; re-checked so only a well-formed event of ours is ever signed."""
        return envelope_from_document(delivery.event).canonical_json()

    def _retry_or_give_up(self, delivery: Delivery, reason: str, now: int) -> DeliveryOutcome:
        if delivery.attempt >= self.attempts_max:
            return self._dead_letter(delivery, f"{delivery.attempt} attempts failed; last: {reason}")
        delay = int(self.delays_seconds[delivery.attempt - 1])
        self._requeue(replace(delivery, attempt=delivery.attempt + 1, not_before=now + delay), delay)
        return DeliveryOutcome.RETRY_SCHEDULED

    def _requeue(self, delivery: Delivery, delay_seconds: int) -> None:
        self.retry_queue.send(delivery.message(self.mac, min(delay_seconds, sqs_delay_seconds_max)))

    def _dead_letter(self, delivery: Delivery, reason: str) -> DeliveryOutcome:
        _log.warning("webhook dead-lettered", subscription_id=delivery.subscription_id,
                     event_id=delivery.event_id, reason=reason)
        document = {**delivery.document(), "failure": reason[:1000]}
        self.dead_letters.send(QueueMessage(delivery.event_id, self.mac.seal(document),
                                            {TYPE_ATTRIBUTE: DELIVERY_TYPE}))
        return DeliveryOutcome.DEAD_LETTERED
