"""The caller's address comes from the one header the deployed edge sets, never from another."""

from __future__ import annotations

import pytest
from finfaas.platform.http import CLIENT_IP_HEADER_ENV, client_ip


def lowered(**headers: str) -> dict[str, str]:
    """Headers as a platform Request keys them."""
    return {name.replace("_", "-").lower(): value for name, value in headers.items()}


@pytest.fixture(autouse=True)
def no_configured_header(monkeypatch):
    monkeypatch.delenv(CLIENT_IP_HEADER_ENV, raising=False)


def test_by_default_the_address_is_x_real_ip_as_the_local_gateway_and_an_ingress_set_it():
    assert client_ip(lowered(X_Real_Ip="203.0.113.9")) == "203.0.113.9"


def test_by_default_forwarded_for_and_envoy_headers_are_not_trusted():
    headers = lowered(X_Forwarded_For="198.51.100.1", X_Envoy_External_Address="198.51.100.2")

    assert client_ip(headers) is None


def test_the_configured_header_is_the_only_one_read(monkeypatch):
    monkeypatch.setenv(CLIENT_IP_HEADER_ENV, "X-Envoy-External-Address")
    headers = lowered(X_Real_Ip="203.0.113.9", X_Envoy_External_Address="198.51.100.2")

    assert client_ip(headers) == "198.51.100.2"
    assert client_ip(lowered(X_Real_Ip="203.0.113.9")) is None


def test_forwarded_for_when_configured_is_read_from_its_right_most_entry(monkeypatch):
    monkeypatch.setenv(CLIENT_IP_HEADER_ENV, "X-Forwarded-For")

    # The left entries are whatever the client sent; the last is what the nearest proxy appended.
    assert client_ip(lowered(X_Forwarded_For="198.51.100.1, 192.0.2.7")) == "192.0.2.7"


@pytest.mark.parametrize(
    "value",
    ["", "   ", "not-an-ip", "203.0.113.9, 198.51.100.1", "203.0.113.256", "1" * 46, "<script>"],
)
def test_a_value_that_is_not_one_ip_address_is_unknown(value):
    assert client_ip(lowered(X_Real_Ip=value)) is None


def test_addresses_are_normalised():
    assert client_ip(lowered(X_Real_Ip=" 2001:DB8:0:0::1 ")) == "2001:db8::1"
