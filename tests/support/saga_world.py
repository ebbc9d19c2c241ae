"""The transfer saga in one process: the real handlers of orchestrator, transfers, risk, ledger and rail
behind an in-process gateway, in-memory stores, an in-memory SQS, a fake clock and crash points.

Everything the saga touches goes through the same HTTP handlers, clients and engine as in a
deployment; only the transport (no sockets), the stores (in memory, same contracts) and time (a
fake clock) differ. The orchestrator can be crashed at any of the engine's hook points; it then
restarts as a fresh process, and undelivered messages come back after the visibility timeout.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from finfaas.domain.creditor import CreditorVault, payee_fingerprint
from finfaas.domain.ledger import AccountKind, AccountStatus, NewAccount
from finfaas.platform.events import EventMac
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.pii import EnvelopeCipher, KeyedDigests
from finfaas.platform.ratelimit import RateLimiter
from finfaas.platform.resilience import CircuitBreaker
from finfaas.services.ledger.api import LedgerApi
from finfaas.services.ledger.service import LedgerService
from finfaas.services.rail.service import RailAdapter, SandboxBank, SandboxSettings
from finfaas.services.risk.in_process import InProcessRisk
from finfaas.services.risk.service import RiskService
from finfaas.services.suite_clients import OrchestratorClient, RiskClient, ServiceUnreachable, SuiteClient
from finfaas.services.transfers.model import TransferOrder
from finfaas.services.transfers.service import (
    ComposedValidationReads,
    LedgerAccounts,
    TransfersService,
    TransfersSettings,
)
from finfaas.services.wallet.model import WalletMove
from finfaas.services.wallet.service import WalletService
from finfaas.services.webhooks.model import new_webhook_secret
from finfaas.workflow.asl import DefinitionRegistry, definitions_dir, load_definition_file
from finfaas.workflow.engine import Engine, EngineLimits
from finfaas.workflow.model import Status
from finfaas.workflow.sweeper import Sweeper
from finfaas.workflow.tasks import HttpTasks, ResourceRunner, SqsTasks
from finfaas_dev.fakes.platform import InMemoryDataKeys, InMemoryIdempotencyStore, InMemoryRateLimitStore
from finfaas_dev.fakes.rail import InMemoryRailStore
from finfaas_dev.fakes.risk import InMemoryRiskStore
from finfaas_dev.fakes.transfers import InMemoryTransferOrders
from finfaas_dev.fakes.wallet import InMemoryWalletMoves
from finfaas_dev.fakes.workflow import InMemoryExecutionStore, InMemoryWaker
from finfaas_dev.ledger_check import AccountSnapshot, Report, reconcile
from finfaas_dev.testing.platform import Context, Event, TokenMinter, load_function_handler
from finfaas_dev.testing.reference_model import ReferenceLedger
from finfaas_dev.testing.workflow import CrashAt, FakeClock, SimulatedCrash

from support.workflow_testing import (
    VISIBILITY_SECONDS,
    StaticTokens,
    deliver_wakeup,
    engine_process,
    entered_states,
    wait_for_work,
)

QUEUE_MAC = EventMac.generate()  # the events key the suite's senders seal queue messages with

GATEWAY = "http://gateway.test"
RECEIVES_MAX = 5  # then the DLQ
DELIVERIES_MAX = 2_000
CUSTOMER = "cust-1"
OTHER_CUSTOMER = "cust-2"
USD = "USD"
OPENING_BALANCE_MINOR = 1_000_000  # 10,000.00 USD
QUEUE_CONSUMERS = {"rail": "rail", "reviews": "transfers"}
ORCHESTRATOR_SCOPES = ("ledger:write", "ledger:read", "transfers:saga", "rail:recall", "wallet:saga",
                       "payments:saga", "loans:saga")
WALLET_SCOPES = ("orchestrator:start", "orchestrator:read")
SAGA_DEFINITIONS = ("transfer", "wallet-topup", "wallet-withdrawal", "payments-refund", "payments-payout",
                    "loan-disbursement")
TRANSFERS_SCOPES = ("orchestrator:start", "orchestrator:read", "orchestrator:callback", "risk:assess")
RAIL_SCOPES = ("orchestrator:callback",)


@dataclass
class FakeResponse:
    """What `requests` would return."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass
class QueuedMessage:
    queue: str
    body: str
    attributes: dict[str, str]
    visible_at_ms: int
    message_id: str
    receives: int = 0


@dataclass
class SuiteQueues:
    """The rail and reviews queues: SendMessage in botocore's shape; delivery as the connector's."""

    clock: FakeClock
    messages: list[QueuedMessage] = field(default_factory=list)
    dead_letters: list[QueuedMessage] = field(default_factory=list)
    sent: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803 - botocore's parameter name
        return {"QueueUrl": QueueName}

    def send_message(
        self,
        QueueUrl: str,
        MessageBody: str,
        MessageAttributes: dict | None = None,  # noqa: N803
        DelaySeconds: int = 0,
        **_: Any,
    ) -> dict[str, str]:
        attributes = {name: value["StringValue"] for name, value in (MessageAttributes or {}).items()}
        message_id = f"m{next(self._ids)}"
        self.messages.append(
            QueuedMessage(
                QueueUrl, MessageBody, attributes, self.clock.ms() + DelaySeconds * 1000, message_id
            )
        )
        self.sent += 1
        return {"MessageId": message_id, "MD5OfMessageBody": ""}

    def next_visible_at_ms(self) -> int | None:
        return min((m.visible_at_ms for m in self.messages), default=None)

    def pop_visible(self) -> QueuedMessage | None:
        visible = [m for m in self.messages if m.visible_at_ms <= self.clock.ms()]
        if not visible:
            return None
        message = min(visible, key=lambda m: (m.visible_at_ms, m.message_id))
        self.messages.remove(message)
        return message


class QueueSender:
    """The platform's SqsQueue.send for the rail's settlement timer, onto SuiteQueues."""

    def __init__(self, queues: SuiteQueues, queue: str) -> None:
        self._queues, self._queue = queues, queue

    def send(self, message: Any) -> None:
        attributes = {k: {"DataType": "String", "StringValue": v} for k, v in message.attributes.items()}
        self._queues.send_message(self._queue, message.body.decode(), attributes, message.delay_seconds)


class GatewayNotices:
    """The sandbox bank's notices, POSTed through the in-process gateway."""

    def __init__(self, gateway: InProcessGateway) -> None:
        self._gateway = gateway

    def send(self, body: bytes, headers: dict[str, str]) -> None:
        reply = self._gateway.request(
            "POST", f"{GATEWAY}/function/rail/notices", headers=dict(headers), data=body
        )
        if reply.status_code >= 300:
            raise ServiceUnreachable(f"notice not accepted: {reply.status_code}")


class InProcessGateway:
    """/function/<name>/<path> to the handler modules; a crashed orchestrator answers 502 and restarts."""

    def __init__(self, on_orchestrator_crash: Callable[[], None]) -> None:
        self.handlers: dict[str, Any] = {}
        self.calls: list[tuple[str, str, str]] = []
        # (function, path suffix) -> how many more calls answer with this status (faults for tests)
        self.faults: dict[tuple[str, str], list[Any]] = {}
        self.interceptor: Callable[..., FakeResponse] | None = None
        self._on_orchestrator_crash = on_orchestrator_crash

    def request(
        self,
        method: str,
        url: str,
        headers: dict | None = None,
        data: bytes | None = None,
        timeout: Any = None,
        allow_redirects: bool = False,
    ) -> FakeResponse:
        """Every call of every client; `interceptor(forward, method, url, headers, data)` sees them first."""
        if self.interceptor is not None:
            return self.interceptor(self.dispatch, method, url, headers, data)
        return self.dispatch(method, url, headers, data)

    def dispatch(
        self, method: str, url: str, headers: dict | None = None, data: bytes | None = None
    ) -> FakeResponse:
        parts = urlsplit(url)
        _, _, name, *rest = parts.path.split("/")
        path = "/" + "/".join(rest)
        self.calls.append((name, method, path))
        fault = self._fault(name, path)
        if fault is not None:
            return fault
        event = Event(method, path, data or b"", dict(headers or {}), dict(parse_qsl(parts.query)))
        try:
            result = self.handlers[name].handle(event, Context())
        except SimulatedCrash:
            self._on_orchestrator_crash()
            return FakeResponse(502, {}, b'{"code":"function_crashed"}')
        return FakeResponse(result["statusCode"], dict(result["headers"]), result["body"].encode())

    def call(
        self,
        method: str,
        name: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> FakeResponse:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        return self.request(method, f"{GATEWAY}/function/{name}{path}", all_headers, data)

    def _fault(self, name: str, path: str) -> FakeResponse | None:
        for (function, suffix), remaining in self.faults.items():
            if function == name and path.endswith(suffix) and remaining:
                status, body = remaining.pop(0)
                return FakeResponse(
                    status, {"Content-Type": "application/problem+json"}, json.dumps(body).encode()
                )
        return None


@dataclass
class Stores:
    """Where state lives: in memory by default; the integration tests pass the DynamoDB stores."""

    ledger: Any = field(default_factory=ReferenceLedger)
    orders: Any = field(default_factory=InMemoryTransferOrders)
    risk: Any = field(default_factory=InMemoryRiskStore)
    rail: Any = field(default_factory=InMemoryRailStore)
    executions: Any = field(default_factory=InMemoryExecutionStore)
    idempotency: Callable[[], Any] = InMemoryIdempotencyStore
    wallet: Any = field(default_factory=InMemoryWalletMoves)


def dynamodb_stores() -> Stores:
    """The stage's DynamoDB stores of the sagas with the rail (ledger, transfers, risk, rail, executions,
    idempotency, wallet), for the integration tests on DynamoDB Local."""
    from finfaas.store.executions_store import ExecutionsStore
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.rail_store import RailStore
    from finfaas.store.risk_store import RiskStore
    from finfaas.store.transfers_store import TransfersStore
    from finfaas.store.wallet_store import WalletStore

    risk = RiskStore()  # the orders store reads and writes risk's items with the order's, as the function's
    return Stores(ledger=ledger_store_from_config(), orders=TransfersStore(risk=risk), risk=risk,
                  rail=RailStore(), executions=ExecutionsStore(), idempotency=IdempotencyStore,
                  wallet=WalletStore())


def outbox_types(producer: str, subject: str) -> Counter[str]:
    """The types of the events a producer's outbox holds for one subject (not yet relayed)."""
    from finfaas.store.outbox_store import OutboxStore, outbox_partition

    partition = outbox_partition(producer, subject)
    return Counter(e.type for e in OutboxStore(partitions=[partition]).oldest(partition, 1000)
                   if e.subject == subject)


@cache
def saga_registry() -> DefinitionRegistry:
    """Parsed once per process: every orchestrator process of every world runs the same definitions."""
    return DefinitionRegistry([load_definition_file(definitions_dir() / f"{name}.asl.json")
                               for name in SAGA_DEFINITIONS])


@cache
def suite_minter() -> TokenMinter:
    """One signing key for every world of the process: generating an RSA key per world cost more than
    most runs of the saga. Each world still mints its own tokens, for its own prefixed customers."""
    return TokenMinter.generate()


class OwnExecutions:
    """The executions store as one world sees it: the executions it created are the ones whose running
    keeps it going. Worlds on DynamoDB share the stage's table with other tests' executions, which may be
    left running (a suite stopped mid-saga) and are not this world's to wait for."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._created: set[str] = set()

    def create(self, execution: Any, events: Any) -> bool:
        created = bool(self._store.create(execution, events))
        self._created.add(execution.execution_id)
        return created

    def any_running(self) -> bool:
        from finfaas.workflow.model import Status

        return any((found := self._store.get(execution_id)) is not None and found.status is Status.RUNNING
                   for execution_id in sorted(self._created))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class SagaWorld:
    """The suite in memory; `start_transfer` then `run` until nothing is left to do."""

    def __init__(
        self,
        *,
        crash: CrashAt | None = None,
        duplicate_deliveries: bool = False,
        sandbox: SandboxSettings = SandboxSettings(settle_seconds=2),
        settings: TransfersSettings = TransfersSettings(),
        limits: EngineLimits = EngineLimits(),
        stores: Stores | None = None,
        prefix: str = "",
        minter: TokenMinter | None = None,
        risk_in_process: bool = False,
    ) -> None:
        self.clock = FakeClock()
        # As the transfers function runs: risk's rules in its process, risk's items read and written with
        # the order's (otherwise through the risk function, which the tests of a failing risk make fail).
        self.risk_in_process = risk_in_process
        self.stores = stores or Stores()
        self.prefix = prefix  # of account and customer ids, so worlds can share tables
        self.customer = prefix + CUSTOMER
        self.crash = crash or CrashAt()
        self.duplicate_deliveries = duplicate_deliveries
        self.limits = limits
        self.minter = minter or suite_minter()
        self.queues = SuiteQueues(self.clock)
        self.gateway = InProcessGateway(self._restart_orchestrator)
        self.store = OwnExecutions(self.stores.executions)
        self.waker = InMemoryWaker(self.clock.ms)
        self.sweeper = Sweeper(self.store, self.waker, clock=self.clock)
        self.processes = 0
        self.ledger = self.stores.ledger
        self.orders = self.stores.orders
        self.risk_store = self.stores.risk
        self.rail_store = self.stores.rail
        # One stage's keys: transfers seals and fingerprints, the rail opens, risk fingerprints.
        self.data_keys = InMemoryDataKeys()
        self.digests = KeyedDigests(b"k" * 32)
        self.vault = CreditorVault(EnvelopeCipher(self.data_keys), self.digests)
        self.breaker = CircuitBreaker("risk", failures_to_open=3, open_seconds=30, clock=self.clock)
        self._open_accounts()
        self._load_functions(sandbox, settings)
        self.engine = self._new_engine()
        self._use_engine()

    # -- wiring -----------------------------------------------------------------------------------

    def token(self, sub: str, scopes: tuple[str, ...], kind: str = "client") -> str:
        return self.minter.mint(sub=sub, scopes=scopes, kind=kind)

    def _load_functions(self, sandbox: SandboxSettings, settings: TransfersSettings) -> None:
        verifier = self.minter.verifier()
        for name in ("orchestrator", "transfers", "risk", "ledger", "rail", "wallet"):
            module = load_function_handler(name)
            module.verifier.use(verifier)
            self.gateway.handlers[name] = module
            if hasattr(module, "queue_proof"):  # the queue routes open what the senders here seal
                module.queue_proof.use(QUEUE_MAC)
        transfers_client = SuiteClient(
            GATEWAY, StaticTokens(self.token("transfers", TRANSFERS_SCOPES)), request=self.gateway.request
        )
        rail_client = SuiteClient(
            GATEWAY, StaticTokens(self.token("rail", RAIL_SCOPES)), request=self.gateway.request
        )
        self._use_transfers(transfers_client, settings)
        self._use_risk()
        self._use_ledger()
        self._use_rail(rail_client, sandbox)
        wallet_client = SuiteClient(
            GATEWAY, StaticTokens(self.token("wallet", WALLET_SCOPES)), request=self.gateway.request
        )
        self._use_wallet(wallet_client)

    def _use_transfers(self, client: SuiteClient, settings: TransfersSettings) -> None:
        module = self.gateway.handlers["transfers"]
        risk: Any = RiskClient(client)
        in_process, reads = None, None
        if self.risk_in_process:
            # The thresholds from the risk function's GET /rules, as the function reads them.
            in_process = InProcessRisk(lambda policy: RiskService(self.risk_store, policy, self.clock.utc),
                                       RiskClient(client).rules)
            risk, reads = in_process, self._validation_reads()
        service = TransfersService(
            self.orders,
            LedgerAccounts(self.ledger),
            risk,
            OrchestratorClient(client),
            breaker=self.breaker,
            settings=settings,
            clock=self.clock.utc,
            vault=self.vault,
            reads=reads,
            risk_in_process=in_process,
        )
        module.services.use(
            module.TransfersServices(
                transfers=service,
                guard=IdempotencyGuard(self.stores.idempotency(), "transfers", clock=self.clock),
                limiter=None,
                probe=lambda: None,
            )
        )

    def _validation_reads(self) -> Any:
        """One read across the ledger, orders and risk tables on DynamoDB; one read each in memory."""
        if isinstance(self.orders, InMemoryTransferOrders):
            self.orders.risk = self.risk_store
            return ComposedValidationReads(LedgerAccounts(self.ledger), self.orders, self.risk_store)
        from finfaas.store.transfer_reads import TransferValidationReads

        assert self.orders.risk is self.risk_store, "the orders store writes risk's items in this risk store"
        return TransferValidationReads(self.orders, self.ledger.models.account)

    def _use_wallet(self, client: SuiteClient) -> None:
        from finfaas_dev.fakes.payments import InMemoryPaymentsLedger

        module = self.gateway.handlers["wallet"]
        moves = self.stores.wallet
        if isinstance(moves, InMemoryWalletMoves):  # the move's put applies with the ledger operation
            ledger: Any = InMemoryPaymentsLedger(LedgerService(self.ledger, clock=self.clock.utc), moves)
        else:  # the DynamoDB stores: the move's put rides in the ledger's transaction
            from finfaas.services.payments.service import LedgerStoreAccounts

            ledger = LedgerStoreAccounts(LedgerService(self.ledger, clock=self.clock.utc))
        self.wallet = WalletService(moves, ledger, OrchestratorClient(client), vault=self.vault,
                                    clock=self.clock.utc)
        module.services.use(
            module.WalletServices(
                wallet=self.wallet,
                guard=IdempotencyGuard(self.stores.idempotency(), "wallet", clock=self.clock),
                limiter=None,
                audit=None,
                probe=lambda: None,
            )
        )

    def _use_risk(self) -> None:
        module = self.gateway.handlers["risk"]
        module.services.use(
            module.RiskServices(
                risk=RiskService(
                    self.risk_store,
                    clock=self.clock.utc,
                    payee_fingerprint=lambda bank, account: payee_fingerprint(self.digests, bank, account),
                ),
                probe=lambda: None,
            )
        )

    def _use_ledger(self) -> None:
        module = self.gateway.handlers["ledger"]
        service = LedgerService(self.ledger, clock=self.clock.utc)
        records = self.stores.idempotency()
        # On DynamoDB the key is recorded in the ledger's own transaction (the DynamoDB idempotency store
        # with the ledger store); the reference ledger takes no transaction extras, so with it the
        # platform records the key after the handler.
        in_transaction = None if isinstance(self.ledger, ReferenceLedger) else records
        module.services.use(
            module.LedgerServices(
                api=LedgerApi(service, in_transaction),
                guard=IdempotencyGuard(records, "ledger", clock=self.clock),
                limiter=RateLimiter(InMemoryRateLimitStore(), module.LIMITS, clock=self.clock),
                audit=None,
                probe=lambda: None,
            )
        )

    def _use_rail(self, client: SuiteClient, sandbox: SandboxSettings) -> None:
        module = self.gateway.handlers["rail"]
        key = new_webhook_secret()
        self.rail_notice_key = key  # the sandbox bank signs its notices with it; tests forge real ones
        bank = SandboxBank(
            self.rail_store,
            _Scheduler(QueueSender(self.queues, "rail")),
            GatewayNotices(self.gateway),
            key,
            settings=sandbox,
            clock=self.clock.utc,
            draw=lambda: 0.99,
        )
        adapter = RailAdapter(
            bank,
            self.rail_store,
            OrchestratorClient(client),
            key,
            vault=CreditorVault(EnvelopeCipher(self.data_keys)),
            clock=self.clock.utc,
        )
        module.services.use(module.RailServices(adapter=adapter, bank=bank, probe=lambda: None))

    def _new_engine(self) -> Engine:
        self.processes += 1
        tokens = StaticTokens(self.token("orchestrator", ORCHESTRATOR_SCOPES))
        runner = ResourceRunner(
            HttpTasks(GATEWAY, tokens, request=self.gateway.request),
            SqsTasks(client_factory=lambda: self.queues, resource_name=lambda logical: logical,
                     mac=QUEUE_MAC),
        )
        return engine_process(self.processes, saga_registry(), self.store, runner, self.waker,
                              clock=self.clock, limits=self.limits, crash=self.crash)

    def _use_engine(self) -> None:
        module = self.gateway.handlers["orchestrator"]
        module.services.use(module.OrchestratorServices(self.engine, self.sweeper))

    def _restart_orchestrator(self) -> None:
        self.engine = self._new_engine()
        self._use_engine()

    def _open_accounts(self) -> None:
        now = self.clock.utc()
        service = LedgerService(self.ledger, clock=self.clock.utc)
        service.ensure_system_accounts(USD)
        p = self.prefix
        for account_id, owner in (("acc-a", CUSTOMER), ("acc-b", OTHER_CUSTOMER), ("acc-c", CUSTOMER)):
            self.ledger.open_account(NewAccount(p + account_id, p + owner, USD, AccountKind.CUSTOMER), now)
        service.deposit(p + "acc-a", OPENING_BALANCE_MINOR, USD, transfer_id=f"{p}opening-a")

    # -- the app's side ---------------------------------------------------------------------------

    def start_transfer(self, body: dict[str, Any], key: str = "k-1", sub: str | None = None) -> FakeResponse:
        """POST /transfers as a customer, retried with the same key while the orchestrator crashes."""
        token = self.token(sub or self.customer, ("transfers:write", "transfers:read"), kind="customer")
        for _ in range(3):
            reply = self.gateway.call(
                "POST", "transfers", "/transfers", body, token, {"Idempotency-Key": key}
            )
            if reply.status_code != 503:
                return reply
        return reply

    def start_move(self, kind: str, body: dict[str, Any], key: str = "m-1",
                   sub: str | None = None) -> FakeResponse:
        """POST /topups or /withdrawals as a customer, retried with the same key while the orchestrator
        crashes."""
        token = self.token(sub or self.customer, ("payments:write", "payments:read"), kind="customer")
        for _ in range(3):
            reply = self.gateway.call("POST", "wallet", f"/{kind}", body, token, {"Idempotency-Key": key})
            if reply.status_code != 503:
                return reply
        return reply

    def move(self, move_id: str) -> WalletMove:
        move = self.stores.wallet.get(move_id)
        assert move is not None
        return move

    def transfer(self, transfer_id: str) -> TransferOrder:
        order = self.orders.get(transfer_id)
        assert order is not None
        return order

    def decide(self, transfer_id: str, decision: str, key: str | None = None,
               operator: str = "ops-1") -> FakeResponse:
        token = self.token(operator, ("ops", "ops:act"))
        return self.gateway.call(
            "POST",
            "transfers",
            f"/_/ops/transfers/{transfer_id}/decision",
            {"decision": decision, "note": "checked"},
            token,
            {"Idempotency-Key": key or f"decide-{transfer_id}-{decision}"},
        )

    # -- running ----------------------------------------------------------------------------------

    def run(self, deliveries_max: int = DELIVERIES_MAX, until: Callable[[], bool] | None = None) -> None:
        """Deliver wake-ups and queue messages, moving time forward, until nothing is running or queued
        (or until `until()` holds)."""
        for _ in range(deliveries_max):
            if until is not None and until():
                return
            if self._deliver_one():
                continue
            next_at = min(
                (
                    t
                    for t in (self.waker.next_visible_at_ms(), self.queues.next_visible_at_ms())
                    if t is not None
                ),
                default=None,
            )
            if not wait_for_work(next_at, self.store, self.sweeper, self.clock):
                return
        raise AssertionError(f"still running after {deliveries_max} deliveries")

    def _deliver_one(self) -> bool:
        wakeup = self.waker.pop_visible()
        if wakeup is not None:
            self._drive(wakeup)
            if self.duplicate_deliveries:
                self._drive(wakeup)
            return True
        message = self.queues.pop_visible()
        if message is not None:
            self._consume(message)
            return True
        return False

    def _drive(self, queued: Any) -> None:
        deliver_wakeup(queued, self.engine, self.sweeper, self.waker, self.clock, self._restart_orchestrator)

    def _consume(self, message: QueuedMessage) -> None:
        """The connector: POST the message to its function; anything but 2xx leaves it for redelivery."""
        message.receives += 1
        headers = {
            "Content-Type": "application/json",
            "ce-id": message.message_id,
            "ce-type": message.attributes.get("ce-type", "dev.finfaas.sqs.message"),
        }
        consumer = QUEUE_CONSUMERS[message.queue]
        deliveries = 2 if self.duplicate_deliveries else 1
        statuses = [
            self.gateway.request(
                "POST", f"{GATEWAY}/function/{consumer}/", dict(headers), message.body.encode()
            ).status_code
            for _ in range(deliveries)
        ]
        if all(200 <= status < 300 for status in statuses):
            return
        if message.receives >= RECEIVES_MAX:
            self.dead_letter(message)
            return
        message.visible_at_ms = self.clock.ms() + VISIBILITY_SECONDS * 1000
        self.queues.messages.append(message)

    def dead_letter(self, message: QueuedMessage) -> None:
        self.queues.dead_letters.append(message)

    # -- what happened ----------------------------------------------------------------------------

    def status(self, transfer_id: str) -> Status:
        return self.store.get(f"transfer:{transfer_id}").status

    def execution_status(self, execution_id: str) -> Status:
        return self.store.get(execution_id).status

    def path(self, transfer_id: str) -> list[str]:
        return entered_states(self.store, f"transfer:{transfer_id}")

    def balance(self, account_id: str) -> int:
        return self.ledger.get_account(account_id).balance_minor

    def held(self, account_id: str) -> int:
        return self.ledger.get_account(account_id).debits_pending

    def ledger_check(self) -> Report:
        """What `finfaas ledger check` checks, over this world's ledger."""
        if not isinstance(self.ledger, ReferenceLedger):
            from finfaas_dev.ledger_check import check_store

            return check_store(self.ledger)
        snapshots = []
        for account in self.ledger.accounts.values():
            entries = self.ledger.entries.get(account.account_id, [])
            snapshots.append(
                AccountSnapshot(account, account.available_minor, entries[-1].entry_key if entries else None)
            )
        all_entries = [e for entries in self.ledger.entries.values() for e in entries]
        return reconcile(snapshots, list(self.ledger.transfers.values()), all_entries)

    def set_status(self, account_id: str, status: AccountStatus) -> None:
        self.ledger.set_account_status(account_id, status, self.clock.utc())


class _Scheduler:
    """SqsSettlementScheduler on the in-memory queue."""

    def __init__(self, sender: QueueSender) -> None:
        from finfaas.services.rail.service import SqsSettlementScheduler

        self._scheduler = SqsSettlementScheduler(queue=sender, mac=QUEUE_MAC)

    def settle_later(self, payment_id: str, delay_seconds: int) -> None:
        self._scheduler.settle_later(payment_id, delay_seconds)
