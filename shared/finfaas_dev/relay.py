"""The outbox relay inside `finfaas up`: a thread running the relay loop until the suite stops.

    running = start_relay(SECRETS_DIR)   # after the emulators, infra and dev secrets are in place
    ...
    running.stop()

Deployed, the same loop runs in the relay function (functions/relay), ticked every minute by the
cron-connector (stack.yml's annotations) or a PingSource (infra/knative/base/relay-schedule.yaml).
Either way the relay signs the audit records it seals from outbox events (chains `ledger-outbox-<n>`)
with the `audit-hmac-key` secret, read on first use, so it needs that secret like the functions do.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from finfaas.platform.events import EVENTS_MAC_KEY_SECRET_NAME
from finfaas.platform.mac_keys import new_mac_key_text
from finfaas.services.outbox_relay.service import OutboxRelay, RelayLoop

STOP_WAIT_SECONDS = 10.0  # a pass is bounded (batches_per_lease_max per partition), so it ends soon
SECRET_FILE_MODE = 0o600


@dataclass
class RunningRelay:
    loop: RelayLoop
    thread: threading.Thread

    def stop(self, wait_seconds: float = STOP_WAIT_SECONDS) -> bool:
        """Stops after the current pass; True when the thread has ended."""
        self.loop.stop()
        self.thread.join(wait_seconds)
        return not self.thread.is_alive()


def ensure_events_mac_key(secrets_dir: Path) -> bool:
    """Creates the `events-hmac-key` dev secret when it is missing; True when it was created."""
    path = Path(secrets_dir) / EVENTS_MAC_KEY_SECRET_NAME
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    except FileExistsError:
        return False  # another process made it first
    with os.fdopen(descriptor, "w") as handle:
        handle.write(new_mac_key_text() + "\n")
    return True


def build_relay() -> OutboxRelay:
    """The relay on this stage's outbox table and events queue, signing with the events key."""
    from finfaas.platform.events import SqsQueue, event_mac_from_config
    from finfaas.store.outbox_store import OutboxStore

    holder = f"finfaas-up-{os.getpid()}-{os.urandom(4).hex()}"
    return OutboxRelay(OutboxStore(), SqsQueue("events"), event_mac_from_config(), holder)


def start_relay(secrets_dir: Path, relay: OutboxRelay | None = None) -> RunningRelay:
    """Starts the relay thread. Call it once the environment points at the emulators and the stage."""
    ensure_events_mac_key(secrets_dir)
    loop = RelayLoop(relay or build_relay())
    thread = threading.Thread(target=loop.run, name="outbox-relay", daemon=True)
    thread.start()
    return RunningRelay(loop, thread)
