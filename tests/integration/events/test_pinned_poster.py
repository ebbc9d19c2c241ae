"""The sender's HTTP client against receivers on 127.0.0.1: it connects to the address it is given
(never resolving the URL's name again), names the URL's host in Host, SNI and the certificate check,
and does not follow redirects. The names used are under `.test`, which never resolves (RFC 6761)."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from finfaas.services.webhooks.errors import DeliveryFailed
from finfaas.services.webhooks.service import PinnedPoster

NAME = "hooks.example.test"
LOOPBACK = "127.0.0.1"
BODY = b'{"id":"evt-1"}'
HEADERS = {"content-type": "application/cloudevents+json", "webhook-id": "evt-1"}
timeout_seconds = (2.0, 2.0)


class Receiver:
    """A receiver on 127.0.0.1 answering `status` (with `location`), optionally over TLS."""

    def __init__(self, status: int = 200, location: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: receiver.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.close()


def test_it_connects_to_the_given_address_and_names_the_urls_host(receivers):
    receiver = Receiver()
    receivers.append(receiver)
    url = f"http://{NAME}:{receiver.port}/hooks/in?source=finfaas"
    assert PinnedPoster(timeout_seconds).post(url, LOOPBACK, HEADERS, BODY) == 200
    [(path, headers, body)] = receiver.requests
    assert path == "/hooks/in?source=finfaas" and body == BODY
    assert headers["host"] == f"{NAME}:{receiver.port}" and headers["webhook-id"] == "evt-1"


def test_a_redirect_is_answered_not_followed(receivers):
    # GIVEN a receiver that redirects to another server on this machine
    inner = Receiver()
    outer = Receiver(status=307, location=f"http://{LOOPBACK}:{inner.port}/admin")
    receivers.extend([inner, outer])
    # WHEN a delivery is posted to the first
    status = PinnedPoster(timeout_seconds).post(f"http://{NAME}:{outer.port}/x", LOOPBACK, HEADERS, BODY)
    # THEN the redirect is the answer and the other server saw nothing
    assert status == 307 and len(outer.requests) == 1 and inner.requests == []


def test_over_tls_the_certificate_is_checked_against_the_urls_host_not_the_address(receivers, tmp_path):
    ca_file, server_context = tls_material(tmp_path, NAME)
    receiver = Receiver(tls=server_context)
    receivers.append(receiver)
    poster = PinnedPoster(timeout_seconds, ca_certs=str(ca_file))
    assert poster.post(f"https://{NAME}:{receiver.port}/x", LOOPBACK, HEADERS, BODY) == 200
    assert receiver.server_names == [NAME] and receiver.requests[0][1]["host"] == f"{NAME}:{receiver.port}"
    # A URL naming another host fails the certificate check, though the address is the same.
    with pytest.raises(DeliveryFailed):
        poster.post(f"https://other.example.test:{receiver.port}/x", LOOPBACK, HEADERS, BODY)
    assert len(receiver.requests) == 1


def test_nothing_listening_is_a_failed_attempt(receivers):
    receiver = Receiver()
    port = receiver.port
    receiver.close()
    with pytest.raises(DeliveryFailed):
        PinnedPoster(timeout_seconds).post(f"http://{NAME}:{port}/x", LOOPBACK, HEADERS, BODY)


def tls_material(folder: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (its PEM file) and a server context with a certificate for `name` it signed."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                             encipher_only=False, decipher_only=False)
    issuer_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhooks test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(ca_usage, critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(issuer_id, critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(leaf.public_bytes(pem))
    plain = serialization.NoEncryption()
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, plain))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context
