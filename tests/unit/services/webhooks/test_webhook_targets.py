"""Where deliveries may go (SSRF): URLs checked as written, every DNS answer checked before each
attempt, and the attempt pinned to the checked address. No test here opens a connection: DNS is a
fake, and the sender's HTTP client is a fake that records the address it was told to connect to."""

from __future__ import annotations

import ipaddress

import pytest
from finfaas.services.webhooks.api import Delivery
from finfaas.services.webhooks.errors import InvalidTarget
from finfaas.services.webhooks.service import DeliveryOutcome, OutboundPolicy, TargetMode
from finfaas_dev.testing.platform import load_function_handler
from support.webhooks_testing import WebhooksWorld, transfer_created

PUBLIC_IP = "93.184.216.34"
EVENT = transfer_created()

PRIVATE_AND_LOCAL = [
    "10.0.0.1", "10.255.255.254", "172.16.0.1", "172.31.255.254", "192.168.1.1",  # RFC 1918
    "127.0.0.1", "127.53.1.9", "0.0.0.0", "100.64.0.1",  # noqa: S104 - loopback, this host, shared (CGNAT)
    "169.254.169.254", "169.254.1.1",  # link-local, cloud metadata
    "224.0.0.1", "240.0.0.1", "255.255.255.255",  # multicast, reserved, broadcast
    "::1", "::", "fe80::1", "fe80::1%eth0", "fd00::1", "fc12:3456::1", "ff02::1",  # IPv6 equivalents
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "2002:a9fe:a9fe::1", "::a9fe:a9fe",  # NAT64, 6to4, compatible
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]


def literal_url(address: str) -> str:
    host = f"[{address.replace('%', '%25')}]" if ":" in address else address
    return f"https://{host}/hooks"


def refusing_resolver(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} must be refused before any DNS lookup")


class ScriptedDns:
    """Answers each lookup with the next scripted answer (the last repeats), recording the lookups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


# --- URLs as written (at creation and before every attempt) -----------------------------------------


@pytest.mark.parametrize("address", PRIVATE_AND_LOCAL)
def test_deployed_deliveries_refuse_private_loopback_and_link_local_literals(address):
    with pytest.raises(InvalidTarget):
        OutboundPolicy(TargetMode.PUBLIC, resolve=refusing_resolver).check_connect(literal_url(address))


@pytest.mark.parametrize("host", [
    "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "127.1", "127.0.0.1.", "0x7f.1",  # 127.0.0.1
    "3232235777", "0xa9fea9fe", "025177524776", "169.254.43518",  # 192.168.1.1, 169.254.169.254
    "8.8.8.010", "0x08.8.8.8",  # even a public address, written so that parsers disagree
])
def test_addresses_spelt_in_decimal_octal_hex_or_short_forms_are_refused(host):
    for mode in TargetMode:
        with pytest.raises(InvalidTarget):
            OutboundPolicy(mode, resolve=refusing_resolver).check_url(f"https://{host}/hooks")


@pytest.mark.parametrize("url", [
    "https://localhost/x", "https://LOCALHOST/x", "https://localhost./x", "https://api.localhost/x",
    "https://127\u30020\u30020\u30021/x",  # ideographic full stops, which IDNA turns into dots
    "https://hooks%2eexample.com/x", "https://exa mple.com/x", "https://\u0131nternal.example/x",
    "https://[::ffff:7f00:1]/x", "https://[fe80::1%25eth0]/x", "https://[not:an:address]/x",
])
def test_deployed_deliveries_refuse_local_names_and_hosts_that_hide_an_address(url):
    with pytest.raises(InvalidTarget):
        OutboundPolicy(TargetMode.PUBLIC, resolve=refusing_resolver).check_url(url)


@pytest.mark.parametrize("url", ["https://hooks.example.com/x?a=1", f"https://{PUBLIC_IP}:8443/x",
                                 "https://[2606:4700::1111]/x", "https://xn--bcher-kva.example/x"])
def test_deployed_deliveries_accept_public_https_targets(url):
    OutboundPolicy(TargetMode.PUBLIC).check_url(url)


def test_a_public_literal_is_connected_to_without_any_lookup():
    policy = OutboundPolicy(TargetMode.PUBLIC, resolve=refusing_resolver)
    assert policy.check_connect(f"https://{PUBLIC_IP}/x") == PUBLIC_IP
    assert policy.check_connect("https://[2606:4700::1111]/x") == "2606:4700::1111"


# --- DNS answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", PRIVATE_AND_LOCAL)
def test_a_name_resolving_to_any_private_or_local_address_is_refused(address):
    dns = ScriptedDns([PUBLIC_IP, address])
    with pytest.raises(InvalidTarget, match="resolves to"):
        OutboundPolicy(TargetMode.PUBLIC, resolve=dns).check_connect("https://hooks.example.com/x")
    assert dns.lookups == [("hooks.example.com", 443)]


def test_the_attempt_connects_to_the_address_that_was_checked_and_resolves_once():
    # GIVEN a name whose DNS answer turns private after the first lookup (DNS rebinding)
    world = SenderWorld(ScriptedDns([PUBLIC_IP], ["169.254.169.254"]), statuses=[503, 200])
    subscription_id = world.subscribe("https://hooks.example.com/x")
    # WHEN the first attempt is made
    assert world.deliver(Delivery(subscription_id, EVENT.document())) is DeliveryOutcome.RETRY_SCHEDULED
    # THEN the name was looked up once and the connection went to the address that was checked
    [request] = world.poster.received
    assert request.address == PUBLIC_IP and request.url == "https://hooks.example.com/x"
    assert len(world.dns.lookups) == 1
    # AND the retry, which sees the private answer, is refused before any connection
    retry = Delivery.from_document(world.mac.open(world.queue.sent[-1].body))
    world.now += 5
    assert world.deliver(retry) is DeliveryOutcome.DEAD_LETTERED
    assert len(world.poster.received) == 1 and len(world.dns.lookups) == 2


def test_a_redirect_is_a_failed_attempt_and_is_not_followed():
    world = SenderWorld(ScriptedDns([PUBLIC_IP]), statuses=[302])
    subscription_id = world.subscribe("https://hooks.example.com/x")
    assert world.deliver(Delivery(subscription_id, EVENT.document())) is DeliveryOutcome.RETRY_SCHEDULED
    assert [r.address for r in world.poster.received] == [PUBLIC_IP]


def test_a_subscription_to_a_hidden_address_is_refused_at_creation():
    world = SenderWorld(ScriptedDns([PUBLIC_IP]))
    with pytest.raises(InvalidTarget):
        world.subscribe("https://0xa9fea9fe/latest/meta-data/")
    assert world.store.items == {} and world.dns.lookups == []


# --- the local runtime's loopback mode --------------------------------------------------------------


def test_loopback_delivery_is_off_unless_chosen():
    assert OutboundPolicy().mode is TargetMode.PUBLIC
    with pytest.raises(InvalidTarget):
        OutboundPolicy().check_url("http://127.0.0.1:9000/hooks")


def test_the_webhooks_function_delivers_to_public_targets_unless_told_otherwise(monkeypatch):
    module = load_function_handler("webhooks")
    monkeypatch.delenv(module.TARGETS_ENV, raising=False)
    assert module.target_mode() is TargetMode.PUBLIC
    monkeypatch.setenv(module.TARGETS_ENV, "loopback")
    assert module.target_mode() is TargetMode.LOOPBACK


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/x", "http://[::1]:9000/x", "http://localhost:9000/x",
                                 "http://[::ffff:127.0.0.1]:9000/x"])
def test_loopback_mode_connects_only_to_this_machine(url):
    address = OutboundPolicy(TargetMode.LOOPBACK, resolve=ScriptedDns(["127.0.0.1"])).check_connect(url)
    loopbacks = {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "::ffff:127.0.0.1")}
    assert ipaddress.ip_address(address) in loopbacks


@pytest.mark.parametrize("url", ["http://2130706433:9000/x", "http://localhost.:9000/x",
                                 "http://api.localhost:9000/x", "http://hooks.example.com/x",
                                 "http://169.254.169.254/", "http://[::ffff:10.0.0.1]/x", "http://0.0.0.0:9000/x"])
def test_loopback_mode_refuses_everything_else(url):
    with pytest.raises(InvalidTarget):
        OutboundPolicy(TargetMode.LOOPBACK, resolve=refusing_resolver).check_connect(url)


def test_loopback_mode_refuses_localhost_when_it_resolves_off_the_machine():
    policy = OutboundPolicy(TargetMode.LOOPBACK, resolve=ScriptedDns(["127.0.0.1", "10.0.0.5"]))
    with pytest.raises(InvalidTarget, match="10.0.0.5"):
        policy.check_connect("http://localhost:9000/x")


class SenderWorld(WebhooksWorld):
    """A subscription service and sender in PUBLIC mode on fake DNS, store, queues and receiver."""

    def __init__(self, dns: ScriptedDns, statuses=(200,)) -> None:
        super().__init__(policy=OutboundPolicy(TargetMode.PUBLIC, resolve=dns), statuses=statuses,
                         delays_seconds=(5,), fixed_clocks=True)
        self.dns = dns

    def subscribe(self, url: str) -> str:
        return self.service.create("partner-1", "k-1", url, ["*"]).subscription.subscription_id

    def deliver(self, delivery: Delivery) -> DeliveryOutcome:
        return self.sender.deliver(delivery)
