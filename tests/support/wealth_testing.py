"""A wealth world on DynamoDB Local: the service over the real wealth table and the ledger in process, on
a market of its own (its own products and business date), so tests sharing the tables never meet."""

from __future__ import annotations

import random
import string
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from finfaas.domain.calendar import parse_calendar
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.services.business_date.model import BusinessDateMode
from finfaas.services.business_date.service import BusinessDateService
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService
from finfaas.services.wealth.api import NewProductBody
from finfaas.services.wealth.model import Product
from finfaas.services.wealth.service import InProcessLedger, WealthService
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas.store.wealth_store import WealthStore, ledger_balances_reader
from finfaas_dev.fakes.business_date import InMemoryBusinessDateStore

CALENDAR_TEXT = (Path(__file__).resolve().parents[2] / "infra" / "calendars" / "cn-2027.json").read_text()
FUNDING_LEGS_MAX = 16  # a linked batch of the ledger


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


class WealthWorld:
    """The service on the stage's tables; `now` is the clock the orders read their time of day from."""

    def __init__(self, business_date: date, now: datetime, page_positions: int = 100) -> None:
        self.market = "W" + "".join(random.choices(string.ascii_uppercase, k=6))
        self.now = now
        self.ledger_store = ledger_store_from_config()
        self.ledger = LedgerService(self.ledger_store)
        self.ledger.ensure_system_accounts("CNY")
        self.store = WealthStore()
        self.dates_store = InMemoryBusinessDateStore()
        self.dates_store.replace(self.market, None, business_date, now)
        self.dates = BusinessDateService(self.dates_store, BusinessDateMode.MANUAL, clock=lambda: self.now,
                                         time_zones={self.market: "Asia/Shanghai"})
        own = CALENDAR_TEXT.replace('"market": "CN"', f'"market": "{self.market}"')
        self.calendar = parse_calendar(own)
        self.wealth_ledger = InProcessLedger(self.ledger, ledger_balances_reader(self.ledger_store))
        self.page_positions = page_positions
        self.service = self.service_on(self.wealth_ledger)

    def service_on(self, ledger: Any) -> WealthService:
        """The world's service over another ledger (one that crashes, or lets a rival commit first)."""
        return WealthService(self.store, ledger, self.dates, {self.market: self.calendar},
                             clock=lambda: self.now, page_positions=self.page_positions)

    def product(self, **settings: object) -> Product:
        body = {"product_id": f"mmf-{uuid.uuid4().hex[:10]}", "kind": "mmf", "name": "Cash Plus",
                "market": self.market, "minimum": 100, **settings}
        return self.service.create_product(NewProductBody.model_validate(body).product())

    def wallet(self, customer_id: str, funded_minor: int) -> str:
        account_id = f"w-{uuid.uuid4().hex[:12]}"
        self.ledger.open_account(owner_id=customer_id, currency="CNY", account_id=account_id)
        if funded_minor:
            self.ledger.deposit(account_id, funded_minor, "CNY", transfer_id=f"dep-{account_id}")
        return account_id

    def fund_accounts(self, account_ids: list[str], amounts: list[int]) -> None:
        """Deposit into many accounts, 16 to a ledger transaction."""
        funding = system_account_id(AccountKind.FUNDING, "CNY")
        legs = [TransferRequest(funding, a, m, "CNY", f"seed-{a}") for a, m in zip(account_ids, amounts,
                                                                                  strict=True)]
        for start in range(0, len(legs), FUNDING_LEGS_MAX):
            self.ledger.transfer_linked(legs[start:start + FUNDING_LEGS_MAX])

    def publish(self, product: Product, day: date, figure: str) -> None:
        self.service.publish_income(product.product_id, day, Decimal(figure))

    def balance(self, account_id: str) -> int:
        return self.ledger.get_account(account_id).balance_minor

    def available(self, account_id: str) -> int:
        return self.ledger.get_account(account_id).available_minor

    def business_date(self) -> date:
        return self.dates.current(self.market).business_date

    def units(self, product_id: str, customer_id: str) -> int:
        """A position's units: its ledger balance and the income units accrued on its row."""
        position = self.store.position(product_id, customer_id)
        assert position is not None
        return self.balance(position.account_id) + position.accrued_units_minor


WEALTH_CLIENT_SCOPES = ("orchestrator:start", "orchestrator:read")


class RecordedStarts:
    """An orchestrator that records the executions it is asked to start and runs none (a started batch
    would go on writing its execution while a test watches the tables)."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        import json

        body = json.loads(event.body or b"{}")
        self.started.append(body)
        execution = {"execution_id": f"{body.get('state_machine')}:{body.get('name')}", "status": "RUNNING"}
        return {"statusCode": 201, "body": json.dumps(execution),
                "headers": {"Content-Type": "application/json"}}


def wire_wealth(wealth: Any, minter: Any) -> RecordedStarts:
    """Gives `wealth` (its handler module) its production services on this stage's tables, with its
    gateway client routed to an orchestrator that records the batches its schedule starts."""
    from finfaas.services.suite_clients import SuiteClient

    from support.saga_world import GATEWAY, InProcessGateway, StaticTokens

    gateway = InProcessGateway(on_orchestrator_crash=lambda: None)
    starts = gateway.handlers["orchestrator"] = RecordedStarts()
    token = minter.mint("wealth", WEALTH_CLIENT_SCOPES, kind="client")
    suite = SuiteClient(GATEWAY, StaticTokens(token), request=gateway.request)
    wealth.services.use(wealth.build_services(suite=suite))
    return starts
