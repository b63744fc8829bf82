"""Shared helpers for the Infor client tests against the emulator (no tests here).

Small dataset, fast retries, no client-side rate limit unless a test sets one; every comparison is
against the emulator's own dataset (``Dataset.records``), the "perfect extraction".
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from ml_connector.infor import (
    ClientOptions,
    FsmOptions,
    IonApiCredentials,
    M3Options,
    ProductLine,
    SourceRecordError,
    SyteLineOptions,
    open_product_line,
)
from ml_connector.net.retry import RetryPolicy
from ml_connector.records import Entity, Record
from ml_connector.sandbox.dataset import DatasetConfig
from ml_connector.sandbox.infor import RunningInfor, start_infor

SMALL = DatasetConfig(gl_postings=600, suppliers=40, customers=25, items=30)
FAST_RETRY = RetryPolicy(max_attempts=15, initial_wait=0.002, max_wait=0.01, max_retry_after=0.05, total_budget=30)
READ_ENTITIES: tuple[Entity, ...] = (
    "suppliers", "customers", "items", "gl_accounts", "cost_centers", "gl_postings", "supplier_invoices",
    "payments", "purchase_orders",
)  # fmt: skip
SITES = ("P10", "P20", "P30")


def client_options(**changes: Any) -> ClientOptions:
    values: dict[str, Any] = {"rate_limit": 0, "retry": FAST_RETRY, "concurrency": 4}
    values.update(changes)
    return ClientOptions(**values)


def m3_options(**changes: Any) -> M3Options:
    values: dict[str, Any] = {"company": "100", "list_page_size": 7, "export_batch_size": 40,
                              "client": client_options()}  # fmt: skip
    values.update(changes)
    return M3Options(**values)


def syteline_options(tenant: str, **changes: Any) -> SyteLineOptions:
    values: dict[str, Any] = {"sites": SyteLineOptions.configs_for(tenant, SITES), "company": "100",
                              "page_size": 13, "client": client_options()}  # fmt: skip
    values.update(changes)
    return SyteLineOptions(**values)


@contextlib.asynccontextmanager
async def emulator(**state_options: Any) -> AsyncIterator[RunningInfor]:
    state_options.setdefault("dataset", SMALL)
    async with start_infor(**state_options) as infor:
        yield infor


def credentials(infor: RunningInfor, product: str) -> IonApiCredentials:
    return IonApiCredentials.load(infor.ionapi(product))  # type: ignore[arg-type]


def open_m3(infor: RunningInfor, **changes: Any) -> ProductLine:
    return open_product_line("M3", credentials(infor, "M3"), m3_options(**changes))


def open_syteline(infor: RunningInfor, **changes: Any) -> ProductLine:
    creds = credentials(infor, "SyteLine")
    return open_product_line("SyteLine", creds, syteline_options(creds.ti, **changes))


def open_fsm(infor: RunningInfor, **changes: Any) -> ProductLine:
    values: dict[str, Any] = {"page_size": 50, "client": client_options()}
    values.update(changes)
    return open_product_line("FSM", credentials(infor, "FSM"), FsmOptions(**values))


async def read_all(
    line: ProductLine, entity: Entity, changed_since: dt.datetime | None = None
) -> tuple[list[Record], list[SourceRecordError]]:
    records: list[Record] = []
    errors: list[SourceRecordError] = []
    async for item in line.read(entity, changed_since=changed_since):
        if isinstance(item, SourceRecordError):
            errors.append(item)
        else:
            records.append(item)
    return records, errors


# -- what "the same content" means per entity (fields every product line can carry faithfully) ----------


def _posting(r: Any) -> tuple[Any, ...]:
    return (r.division, r.accounting_date, r.period, r.account, r.cost_center, r.currency, r.amount, r.text)


def _invoice(r: Any) -> tuple[Any, ...]:
    return (r.division, r.supplier_id, r.invoice_number, r.invoice_date, r.accounting_date, r.due_date, r.period,
            r.account, r.cost_center, r.currency, r.amount)  # fmt: skip


def _payment(r: Any) -> tuple[Any, ...]:
    return (r.division, r.supplier_id, r.invoice_number, r.payment_date, r.period, r.currency, r.amount)


def _po(r: Any) -> tuple[Any, ...]:
    return (r.division, r.po_number, r.line, r.supplier_id, r.item_id, r.order_date, r.quantity, r.amount, r.currency)


PROJECTIONS: dict[Entity, Callable[[Any], tuple[Any, ...]]] = {
    "suppliers": lambda r: (r.supplier_id, r.name, r.currency, r.country, r.status),
    "customers": lambda r: (r.customer_id, r.name, r.currency, r.country, r.status),
    "items": lambda r: (r.item_id, r.description[:30], r.item_type, r.status),  # M3 ITDS holds 30 characters
    "gl_accounts": lambda r: (r.account, r.name, r.account_type),
    "cost_centers": lambda r: (r.cost_center, r.name, r.plant),
    "gl_postings": _posting,
    "supplier_invoices": _invoice,
    "payments": _payment,
    "purchase_orders": _po,
}


def projected(entity: Entity, records: Iterable[Any]) -> Counter[tuple[Any, ...]]:
    project = PROJECTIONS[entity]
    return Counter(project(r) for r in records)
