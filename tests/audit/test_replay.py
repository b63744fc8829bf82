"""Stored payloads rebuild the exact records that were sent (equal fields, equal content hash)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from conftest import Backend
from ml_connector.audit.replay import record_from_payload, replay_records, replayed_event
from ml_connector.audit.store import AuditError, EventStatus, RecordEvent, RunInfo
from ml_connector.records import (
    RECORD_TYPES,
    BudgetLine,
    CostCenter,
    Customer,
    GLAccount,
    GLPosting,
    Item,
    Payment,
    PurchaseOrder,
    Record,
    Supplier,
    SupplierInvoice,
    content_hash,
)

CHANGED = dt.datetime(2024, 3, 4, 5, 6, 7, 891000, tzinfo=dt.UTC)
DAY = dt.date(2024, 2, 29)

SAMPLES: list[Record] = [
    Supplier(supplier_id="S1", name='Acme; "quoted"', currency="EUR", country="DE", status="20", changed_at=CHANGED),
    SupplierInvoice(
        company="100",
        division="AAA",
        supplier_id="S1",
        invoice_number="INV/1",
        invoice_date=DAY,
        accounting_date=DAY,
        due_date=None,
        period="2024-02",
        account="6000",
        cost_center="CC1",
        currency="EUR",
        amount=Decimal("-1234.5600"),
        status="posted",
    ),
    Payment(
        company="100",
        division="AAA",
        payment_id="P1",
        supplier_id="S1",
        invoice_number="INV/1",
        payment_date=DAY,
        period="2024-02",
        currency="EUR",
        amount=Decimal("1E+3"),
    ),
    PurchaseOrder(
        company="100",
        division="AAA",
        po_number="PO1",
        line=3,
        supplier_id="S1",
        item_id="I1",
        order_date=DAY,
        quantity=Decimal("2.5"),
        amount=Decimal("10"),
        currency="EUR",
    ),
    GLAccount(account="6000", name="Travel", account_type="expense"),
    CostCenter(cost_center="CC1", name="Plant 1", plant="P1"),
    GLPosting(
        company="100",
        division="AAA",
        year=2024,
        journal="J1",
        line=7,
        account="6000",
        cost_center="CC1",
        accounting_date=DAY,
        period="2024-02",
        currency="EUR",
        amount=Decimal("0.01"),
        text="line\nbreak",
    ),
    Customer(customer_id="C1", name="Client"),
    Item(item_id="I1", description="Widget"),
    BudgetLine(
        version="Budget", account="6000", cost_center="CC1", period="2024-03", currency="EUR", amount=Decimal("5")
    ),
]


def test_every_record_type_has_a_sample() -> None:
    assert {type(s) for s in SAMPLES} == set(RECORD_TYPES.values())


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: r.entity)
def test_payload_round_trip(record: Record) -> None:
    rebuilt = record_from_payload(record.entity, record.to_dict())
    assert rebuilt == record
    assert content_hash(rebuilt) == content_hash(record)


def test_bad_payloads_are_reported_with_the_field() -> None:
    payload = SAMPLES[1].to_dict()
    with pytest.raises(AuditError, match="unknown entity 'widgets'"):
        record_from_payload("widgets", payload)
    with pytest.raises(AuditError, match="invalid 'amount': 'abc'"):
        record_from_payload("supplier_invoices", {**payload, "amount": "abc"})
    with pytest.raises(AuditError, match="fields this version does not know: colour"):
        record_from_payload("supplier_invoices", {**payload, "colour": "red"})
    del payload["account"]
    with pytest.raises(AuditError, match="account"):
        record_from_payload("supplier_invoices", payload)


async def test_replay_streams_what_a_run_sent(backend: Backend) -> None:
    async with backend.make() as store:
        await store.start_run(RunInfo("r1", "acme"))
        posting = SAMPLES[6]
        assert isinstance(posting, GLPosting)
        sent = [dataclasses.replace(posting, line=n) for n in range(4)]
        events = []
        for n, rec in enumerate(sent):
            events.append(
                RecordEvent.of(rec, run_id="r1", flow="gl_actuals", status=EventStatus.EXTRACTED, with_payload=True)
            )
            outcome = EventStatus.REJECTED if n == 2 else EventStatus.LOADED
            events.append(RecordEvent.of(rec, run_id="r1", flow="gl_actuals", status=outcome))
        await store.record(events)

        items = [item async for item in replay_records(store, "r1")]
        assert [i.record for i in items] == sent
        only_failed = [item async for item in replay_records(store, "r1", only_failed=True)]
        assert [i.record for i in only_failed] == [sent[2]]

        replay = replayed_event(only_failed[0], run_id="r2")
        assert (replay.status, replay.flow, replay.payload, replay.reason) == (
            EventStatus.REPLAYED,
            "gl_actuals",
            sent[2].to_dict(),
            "replay of run r1",
        )

        await store.start_run(RunInfo("r3", "acme"))
        tampered = RecordEvent.of(
            sent[0], run_id="r3", flow="gl_actuals", status=EventStatus.EXTRACTED, with_payload=True
        )
        await store.record([dataclasses.replace(tampered, payload={**sent[0].to_dict(), "amount": "999"})])
        with pytest.raises(AuditError, match="does not reproduce its content hash"):
            [item async for item in replay_records(store, "r3")]
