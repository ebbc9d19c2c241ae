"""Token signing keys: generation, the key ring read from the `auth-signing-keys` secret, the JWKS.

The secret is a JSON list of {kid, private_key_pem, status}. Exactly one key is `active` and signs;
`retiring` keys are still published so tokens they signed verify until they expire.
Rotation: add a new key as active and mark the old one retiring; drop it after a token lifetime
plus the verifiers' JWKS cache time.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finfaas.platform import config, jsonio
from finfaas.platform.config import SERVICE_CLIENT_SECRET_SUFFIX

# Names of OpenFaaS secrets, not secret values.
SIGNING_KEYS_SECRET = "auth-signing-keys"  # noqa: S105
CLIENTS_SECRET = "auth-clients"  # noqa: S105
DEMO_CREDENTIALS_FILE = "demo-client-credentials.json"
ACTIVE = "active"
RETIRING = "retiring"
KEY_STATUSES = frozenset({ACTIVE, RETIRING})
SIGNING_ALGORITHM = "RS256"
DEMO_CLIENT_ID = "demo-app"
# Everything a developer needs to try every function locally.
DEMO_CLIENT_SCOPES = (
    "accounts:read", "accounts:write", "ledger:read", "ledger:write", "payments:read", "payments:write",
    "transfers:read", "transfers:write", "wealth:read", "wealth:write", "loans:read", "loans:write", "ops",
    # Acting in the operator console (approve, reject, stop, redrive), beside ops.
    "ops:act",
    "orchestrator:read", "orchestrator:start", "orchestrator:callback",
    # Integrators' subscriptions: without these nobody could manage webhooks in a fresh suite.
    "webhooks:read", "webhooks:write",
)
# Functions that call other functions through the gateway with their own client_credentials token.
# Each gets the secret `<name>-client` ({client_id, client_secret}) and an entry in auth-clients.
SERVICE_CLIENTS: dict[str, tuple[str, ...]] = {
    # The orchestrator runs workflow Tasks against the money-moving functions.
    "orchestrator": ("accounts:read", "ledger:read", "ledger:write", "payments:read", "payments:write",
                     "transfers:read", "transfers:write", "transfers:saga", "rail:recall",
                     "wallet:saga", "loans:saga", "wealth:batch", "payments:saga"),
    # The transfers function starts and follows sagas and asks the risk function for assessments.
    "transfers": ("orchestrator:start", "orchestrator:read", "orchestrator:callback", "risk:assess"),
    # The sandbox rail reports settlements back to the waiting executions.
    "rail": ("orchestrator:callback",),
    # The payments function opens merchants' accounts through the ledger function and asks risk.
    # ... and starts its rail refund sagas.
    "payments": ("ledger:read", "ledger:write", "risk:assess", "orchestrator:start", "orchestrator:read"),
    # The wallet function starts its top-up and withdrawal sagas.
    "wallet": ("orchestrator:start", "orchestrator:read"),
    # The loans function screens applicants with risk, asks the sandbox bureau for credit reports and
    # starts the disbursement saga; an operator's review reaches the saga through its task token.
    "loans": ("risk:assess", "bureau:read", "orchestrator:start", "orchestrator:callback"),
    # The wealth function starts each business date's batch on the orchestrator.
    "wealth": ("orchestrator:start", "orchestrator:read"),
}
rsa_key_bits = 3072
rsa_key_bits_min = 2048
rsa_public_exponent = 65537
signing_keys_max = 4
client_secret_bytes = 32
secrets_file_mode = 0o600
secrets_dir_mode = 0o700


class KeyRingError(ValueError):
    """The signing-keys secret is malformed or has no single active key."""


@dataclass(frozen=True)
class SigningKey:
    """One RSA key of the ring."""

    kid: str
    private_key: Any
    status: str

    def public_jwk(self) -> dict[str, Any]:
        from jwt.algorithms import RSAAlgorithm

        jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        # RFC 7517 4.3: `use` and `key_ops` should not appear together; verifiers look at `use`.
        jwk.pop("key_ops", None)
        return {**jwk, "kid": self.kid, "alg": SIGNING_ALGORITHM, "use": "sig"}


class KeyRing:
    """The active signing key and every key still published."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        if not 1 <= len(keys) <= signing_keys_max:
            raise KeyRingError(f"the key ring holds 1 to {signing_keys_max} keys, got {len(keys)}")
        if len({key.kid for key in keys}) != len(keys):
            raise KeyRingError("kids must be unique")
        active = [key for key in keys if key.status == ACTIVE]
        if len(active) != 1:
            raise KeyRingError(f"exactly one key must be active, got {len(active)}")
        self.active = active[0]
        self.keys = tuple(keys)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set, active key first."""
        ordered = [self.active, *(key for key in self.keys if key is not self.active)]
        return {"keys": [key.public_jwk() for key in ordered]}

    @classmethod
    def from_entries(cls, entries: Any) -> KeyRing:
        if not isinstance(entries, list):
            raise KeyRingError(f"{SIGNING_KEYS_SECRET} must be a JSON list")
        return cls([_signing_key(entry) for entry in entries])


def _signing_key(entry: Any) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not isinstance(entry, Mapping) or not {"kid", "private_key_pem", "status"} <= set(entry):
        raise KeyRingError("each key needs kid, private_key_pem and status")
    if entry["status"] not in KEY_STATUSES:
        raise KeyRingError(f"key {entry['kid']!r}: status must be one of {sorted(KEY_STATUSES)}")
    try:
        private_key = load_pem_private_key(str(entry["private_key_pem"]).encode("ascii"), password=None)
    except ValueError as error:
        raise KeyRingError(f"key {entry['kid']!r}: unreadable PEM") from error
    if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size < rsa_key_bits_min:
        raise KeyRingError(f"key {entry['kid']!r}: must be RSA of at least {rsa_key_bits_min} bits")
    return SigningKey(str(entry["kid"]), private_key, entry["status"])


def load_keyring(read_secret: Callable[[str], str | None] = config.read_secret) -> KeyRing:
    """The key ring from the `auth-signing-keys` OpenFaaS secret."""
    text = read_secret(SIGNING_KEYS_SECRET)
    try:
        entries = jsonio.loads(text or "")
    except ValueError as error:
        raise KeyRingError(f"{SIGNING_KEYS_SECRET} is not JSON") from error
    return KeyRing.from_entries(entries)


def new_kid(now_seconds: float | None = None) -> str:
    """A sortable, unique key id: creation date plus randomness."""
    day = time.strftime("%Y%m%d", time.gmtime(time.time() if now_seconds is None else now_seconds))
    return f"{day}-{secrets.token_hex(4)}"


def generate_signing_key(
    kid: str | None = None, status: str = ACTIVE, bits: int = rsa_key_bits
) -> dict[str, str]:
    """A new RSA key as an `auth-signing-keys` entry: {kid, private_key_pem, status}."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if status not in KEY_STATUSES:
        raise ValueError(f"status must be one of {sorted(KEY_STATUSES)}")
    if bits < rsa_key_bits_min:
        raise ValueError(f"RSA keys have at least {rsa_key_bits_min} bits")
    private_key = rsa.generate_private_key(public_exponent=rsa_public_exponent, key_size=bits)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"kid": kid or new_kid(), "private_key_pem": pem.decode("ascii"), "status": status}


def rotated(entries: Iterable[Mapping[str, str]], new_key: Mapping[str, str]) -> list[dict[str, str]]:
    """The entries after a rotation: new key active, the old active retiring, older retiring keys dropped."""
    if new_key.get("status") != ACTIVE:
        raise ValueError("the new key must be active")
    previous = [dict(entry, status=RETIRING) for entry in entries if entry.get("status") == ACTIVE]
    return [dict(new_key), *previous]


def hash_client_secret(secret: str) -> str:
    """An argon2id hash of a client secret, as stored in `auth-clients`."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash(secret)


@dataclass(frozen=True)
class DevSecrets:
    """What `write_dev_secrets` left in the folder; the secret is known only when just created."""

    folder: Path
    created: tuple[str, ...]
    client_id: str
    client_secret: str | None


def write_dev_secrets(folder: Path, out: Callable[[str], None] = print) -> DevSecrets:
    """Create the secrets a fresh machine lacks (a signing key, a demo client, the cursor key); keep
    existing ones."""
    from finfaas.platform.cursors import CURSOR_KEY_SECRET_NAME
    from finfaas.platform.mac_keys import new_mac_key_text

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(secrets_dir_mode)
    created: list[str] = []
    if not (folder / CURSOR_KEY_SECRET_NAME).exists():
        _write_private(folder / CURSOR_KEY_SECRET_NAME, new_mac_key_text())
        created.append(CURSOR_KEY_SECRET_NAME)
    if not (folder / SIGNING_KEYS_SECRET).exists():
        _write_private(folder / SIGNING_KEYS_SECRET, json.dumps([generate_signing_key()], indent=2))
        created.append(SIGNING_KEYS_SECRET)
    client_secret = None
    if not (folder / CLIENTS_SECRET).exists():
        client_secret = secrets.token_urlsafe(client_secret_bytes)
        client = {
            "client_id": DEMO_CLIENT_ID,
            "secret_hash": hash_client_secret(client_secret),
            "scopes": list(DEMO_CLIENT_SCOPES),
        }
        _write_private(folder / CLIENTS_SECRET, json.dumps([client], indent=2))
        credentials = {"client_id": DEMO_CLIENT_ID, "client_secret": client_secret}
        # Only the hash is in auth-clients; keep the plain secret where the developer can find it again.
        _write_private(folder / DEMO_CREDENTIALS_FILE, json.dumps(credentials, indent=2))
        created.append(CLIENTS_SECRET)
        out(
            f"demo client created: client_id={DEMO_CLIENT_ID} client_secret={client_secret} "
            f"(saved in {folder / DEMO_CREDENTIALS_FILE})"
        )
    elif _refresh_demo_scopes(folder / CLIENTS_SECRET):
        out(f"demo client scopes updated: {' '.join(DEMO_CLIENT_SCOPES)}")
    return DevSecrets(folder, tuple(created), DEMO_CLIENT_ID, client_secret)


def _refresh_demo_scopes(clients_path: Path) -> bool:
    """Give a demo client kept from an earlier start the scopes of this version; True when changed."""
    entries = json.loads(clients_path.read_text())
    demo = next((e for e in entries if isinstance(e, dict) and e.get("client_id") == DEMO_CLIENT_ID), None)
    if demo is None or sorted(demo.get("scopes", [])) == sorted(DEMO_CLIENT_SCOPES):
        return False
    demo["scopes"] = list(DEMO_CLIENT_SCOPES)
    _write_private(clients_path, json.dumps(entries, indent=2))
    return True


def ensure_service_clients(
    folder: Path,
    clients: Mapping[str, Sequence[str]] = SERVICE_CLIENTS,
    out: Callable[[str], None] = print,
) -> tuple[str, ...]:
    """Give each service client its `<name>-client` secret and auth-clients entry; keep what is intact.

    Run after write_dev_secrets. A client whose secret file is missing, or no longer matches its
    entry, gets a new secret; changed scopes are updated in place. Returns the clients written.
    Restart the auth function (or POST /_/ops/reload-secrets) for it to see new entries.
    """
    clients_path = folder / CLIENTS_SECRET
    entries = jsonio.loads(clients_path.read_text()) if clients_path.exists() else []
    written: list[str] = []
    for client_id, scopes in clients.items():
        if _ensure_service_client(folder, entries, client_id, list(scopes)):
            written.append(client_id)
    if written:
        _write_private(clients_path, json.dumps(entries, indent=2))
        names = ", ".join(f"{client_id}{SERVICE_CLIENT_SECRET_SUFFIX}" for client_id in written)
        out(f"service client secrets written: {names}")
    return tuple(written)


def _ensure_service_client(
    folder: Path, entries: list[dict[str, Any]], client_id: str, scopes: list[str]
) -> bool:
    """Bring one client's secret file and entry in line; True when anything was written."""
    secret_path = folder / f"{client_id}{SERVICE_CLIENT_SECRET_SUFFIX}"
    entry = next((e for e in entries if e.get("client_id") == client_id), None)
    if entry is not None and secret_path.exists() and _secret_matches(secret_path, entry):
        if sorted(entry.get("scopes", [])) == sorted(scopes):
            return False
        entry["scopes"] = scopes
        return True
    client_secret = secrets.token_urlsafe(client_secret_bytes)
    fresh = {"client_id": client_id, "secret_hash": hash_client_secret(client_secret), "scopes": scopes}
    entries[:] = [e for e in entries if e.get("client_id") != client_id] + [fresh]
    credentials = {"client_id": client_id, "client_secret": client_secret}
    _write_private(secret_path, json.dumps(credentials, indent=2))
    return True


def _secret_matches(secret_path: Path, entry: Mapping[str, Any]) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import Argon2Error, InvalidHashError

    try:
        credentials = jsonio.loads(secret_path.read_text())
        return PasswordHasher().verify(entry["secret_hash"], credentials["client_secret"])
    except (ValueError, KeyError, TypeError, Argon2Error, InvalidHashError):
        return False


def _write_private(path: Path, text: str) -> None:
    # Created with owner-only permissions from the start, never readable in between.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, secrets_file_mode)
    os.fchmod(descriptor, secrets_file_mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")
