"""Reconciliation: per-flow and per (account, period) totals, the balance check, JSON and text."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from ml_connector.audit.store import FlowCounts
from ml_connector.records import GLAccount, Payment, SupplierInvoice
from ml_connector.sync.reconcile import Reconciler, Tally, check_against_audit

DAY = dt.date(2024, 2, 1)


def invoice(n: int, account: str, period: str, amount: str) -> SupplierInvoice:
    return SupplierInvoice(
        company="100",
        division="AAA",
        supplier_id="S1",
        invoice_number=f"INV-{n}",
        invoice_date=DAY,
        accounting_date=DAY,
        due_date=None,
        period=period,
        account=account,
        cost_center="CC1",
        currency="EUR",
        amount=Decimal(amount),
    )


def loaded_run() -> Reconciler:
    rec = Reconciler(top=3)
    invoices = [
        invoice(1, "6000", "2024-01", "100.00"),
        invoice(2, "6000", "2024-01", "50.00"),
        invoice(3, "6000", "2024-02", "25.00"),
        invoice(4, "6100", "2024-02", "10.00"),
        invoice(5, "6100", "2024-02", "-4.00"),
    ]
    for inv in invoices:
        rec.add_record("supplier_invoices", "source", inv)
    rec.add_record("supplier_invoices", "skipped", invoices[4])  # unchanged since the last load
    for inv in invoices[:4]:
        rec.add_record("supplier_invoices", "loaded", inv)
    rec.move_record("supplier_invoices", "loaded", "rejected", invoices[1])  # from the failure dump
    payment = Payment(
        company="100",
        division="AAA",
        payment_id="P1",
        supplier_id="S1",
        invoice_number="INV-1",
        payment_date=DAY,
        period="2024-02",
        currency="EUR",
        amount=Decimal("100.00"),
    )
    rec.add_record("payments", "source", payment)
    rec.add_record("payments", "loaded", payment)
    master = GLAccount(account="6000", name="Travel")
    rec.add_record("gl_accounts", "source", master)
    rec.add_record("gl_accounts", "loaded", master)
    return rec


def test_per_flow_totals_and_balance() -> None:
    summary = loaded_run().summary()
    assert [f.flow for f in summary.flows] == ["gl_accounts", "payments", "supplier_invoices"]
    inv = summary.flow("supplier_invoices")
    assert inv is not None
    t = inv.tallies
    assert (t.source, t.loaded, t.rejected, t.skipped) == (
        Tally(5, Decimal("181.00")),
        Tally(3, Decimal("135.00")),
        Tally(1, Decimal("50.00")),
        Tally(1, Decimal("-4.00")),
    )
    assert inv.imbalance() is None
    assert summary.balanced
    assert summary.problems == []
    assert summary.cells == 5  # 3 invoice cells, 1 payment cell, 1 master-data cell


def test_top_differences_per_account_and_period() -> None:
    summary = loaded_run().summary()
    assert summary.cells_with_differences == 2
    assert [(c.flow, c.account, c.period, c.tallies.difference) for c in summary.differences] == [
        ("supplier_invoices", "6000", "2024-01", Decimal("50.00")),
        ("supplier_invoices", "6100", "2024-02", Decimal("-4.00")),
    ]


def test_an_unaccounted_record_breaks_the_balance_with_a_clear_message() -> None:
    rec = loaded_run()
    rec.add_record("supplier_invoices", "source", invoice(6, "6200", "2024-03", "7.50"))  # read, never sent
    summary = rec.summary()
    assert not summary.balanced
    assert summary.cells_unbalanced == 1
    assert summary.problems == [
        "flow 'supplier_invoices' does not balance: extracted 6 != loaded 3 + rejected 1 + skipped 1"
        " (1 record(s) without an outcome); source amount 188.50 != loaded 135.00 + rejected 50.00 + skipped -4.00"
        " (difference 7.50)"
    ]
    first = summary.differences[0]
    assert (first.account, first.period, first.tallies.unexplained) == ("6200", "2024-03", Tally(1, Decimal("7.50")))


def test_json_is_small_and_ready_for_the_status() -> None:
    rec = Reconciler(top=2)
    for n in range(50):
        rec.add("gl_actuals", "source", account=f"{6000 + n}", period="2024-02", amount=Decimal(n), count=3)
        rec.add("gl_actuals", "loaded", account=f"{6000 + n}", period="2024-02", amount=Decimal(n) / 2, count=3)
    data = rec.summary().to_dict()
    encoded = json.dumps(data)
    assert len(encoded) < 2000
    assert data["cells"] == 50
    assert data["cellsWithDifferences"] == 49
    assert [d["account"] for d in data["topDifferences"]] == ["6049", "6048"]
    assert data["flows"]["gl_actuals"]["source"] == {"count": 150, "amount": "1225"}
    assert data["balanced"] is False  # loaded half the amount with no rejection: unexplained


def test_text_report() -> None:
    text = loaded_run().summary().text()
    assert text.splitlines() == [
        "Reconciliation",
        "flow                   source      loaded   rejected    skipped  balance",
        "-----------------  ----------  ----------  ---------  ---------  -------",
        "gl_accounts          1 / 0.00    1 / 0.00   0 / 0.00   0 / 0.00  ok",
        "payments           1 / 100.00  1 / 100.00   0 / 0.00   0 / 0.00  ok",
        "supplier_invoices  5 / 181.00  3 / 135.00  1 / 50.00  1 / -4.00  ok",
        "",
        "Differences per account and period (source - loaded), top 2 of 2:",
        "flow               account  period       source      loaded   rejected    skipped  difference",
        "-----------------  -------  -------  ----------  ----------  ---------  ---------  ----------",
        "supplier_invoices  6000     2024-01  2 / 150.00  1 / 100.00  1 / 50.00   0 / 0.00       50.00",
        "supplier_invoices  6100     2024-02    2 / 6.00   1 / 10.00   0 / 0.00  1 / -4.00       -4.00",
    ]
    rec = loaded_run()
    rec.add_record("supplier_invoices", "source", invoice(6, "6200", "2024-03", "7.50"))
    dry = rec.summary().text(dry_run=True).splitlines()
    assert dry[0] == "Reconciliation (dry run)"
    assert dry[1].split() == ["flow", "source", "would", "load", "would", "reject", "skipped", "balance"]
    assert dry[5].endswith("OFF by 1 / 7.50")
    assert dry[-1].startswith("PROBLEM: flow 'supplier_invoices' does not balance: extracted 6 != loaded 3")


def test_cross_check_with_the_audit_trail() -> None:
    summary = loaded_run().summary()
    agreeing = {
        "supplier_invoices": FlowCounts("supplier_invoices", extracted=5, loaded=3, rejected=1, skipped=1),
        "payments": FlowCounts("payments", extracted=1, loaded=1),
        "gl_accounts": FlowCounts("gl_accounts", extracted=1, loaded=1),
    }
    assert check_against_audit(summary, agreeing) == []
    disagreeing = {**agreeing, "payments": FlowCounts("payments", extracted=1, loaded=0)}
    assert check_against_audit(summary, disagreeing) == [
        "flow 'payments': loaded 1 in the reconciliation but 0 in the audit trail",
        "flow 'payments' does not balance: extracted 1 != loaded 0 + rejected 0 + skipped 0"
        " (1 record(s) without an outcome)",
    ]
