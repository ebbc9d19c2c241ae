"""A webhook receiver to try subscriptions with: prints each delivery once its signature verifies.

    python3 events/webhook_receiver.py PORT WHSEC_SECRET

Standard library only, as an integrator's endpoint would be (copy it freely). Listens on 127.0.0.1,
answers 204 to an authentic delivery and 401 to anything else (which the sender retries).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

tolerance_seconds = 300
body_bytes_max = 256 * 1024


def verify_signature(secret: str, headers, body: bytes, tolerance_s: int = tolerance_seconds) -> None:
    """Returns when the delivery is authentic and recent; raises ValueError otherwise."""
    webhook_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (webhook_id and stamp.isdigit() and signatures):
        raise ValueError("missing webhook-id, webhook-timestamp or webhook-signature")
    if abs(time.time() - int(stamp)) > tolerance_s:
        raise ValueError("timestamp outside the tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise ValueError("no signature matches")


def serve(port: int, secret: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(length, body_bytes_max))  # the raw bytes: verify before parsing
            try:
                verify_signature(secret, self.headers, body)
            except ValueError as refusal:
                print(f"refused: {refusal}", flush=True)
                self.send_response(401)
            else:
                event = json.loads(body)
                print(f"verified webhook-id={self.headers['webhook-id']} type={event['type']} "
                      f"subject={event['subject']} data={json.dumps(event['data'])}", flush=True)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    with HTTPServer(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
