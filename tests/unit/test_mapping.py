"""Dimension alignment: missing, unknown, renamed and extra members; policies; the dry-run report."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from ml_connector.records import GLPosting, Payment, SupplierInvoice
from ml_connector.sync.mapping import AlignmentReport, Member, MemberCheck, UsageCounter, align

DAY = dt.date(2024, 2, 1)


def invoice(n: int, account: str, cc: str, amount: str, supplier: str = "S1") -> SupplierInvoice:
    return SupplierInvoice(
        company="100",
        division="AAA",
        supplier_id=supplier,
        invoice_number=f"INV-{n}",
        invoice_date=DAY,
        accounting_date=DAY,
        due_date=None,
        period="2024-02",
        account=account,
        cost_center=cc,
        currency="EUR",
        amount=Decimal(amount),
    )


def gl(line: int, account: str, cc: str, amount: str) -> GLPosting:
    return GLPosting(
        company="100",
        division="AAA",
        year=2024,
        journal="J1",
        line=line,
        account=account,
        cost_center=cc,
        accounting_date=DAY,
        period="2024-02",
        currency="EUR",
        amount=Decimal(amount),
    )


SOURCE_ACCOUNTS = [Member("4000", "Revenue"), Member("6000", "Travel"), Member("6100", "Rent"), Member("6999", "Misc")]
TARGET_ACCOUNTS = [Member("4000", "Revenue"), Member("6000", "Travel expenses"), Member("9999", "Old")]


def usage() -> UsageCounter:
    counter = UsageCounter()
    for record in [
        invoice(1, "6100", "CC1", "100.00"),
        invoice(2, "6100", "CC9", "50.50"),
        invoice(3, "7777", "CC1", "3.00"),  # an account nobody knows
        invoice(4, "6000", "CC1", "1.00"),
        gl(1, "6100", "CC1", "-20.00"),
        gl(2, "4000", "CC1", "7.00"),
    ]:
        counter.add(record)
    counter.add(
        Payment(
            company="100",
            division="AAA",
            payment_id="P1",
            supplier_id="S2",
            invoice_number="INV-1",
            payment_date=DAY,
            period="2024-02",
            currency="EUR",
            amount=Decimal("100.00"),
        ),
        flow="payments",
    )
    return counter


def test_align_classifies_members_by_code() -> None:
    result = align("account", SOURCE_ACCOUNTS, TARGET_ACCOUNTS, list_name="GL Accounts", policy="Add", usage=usage())
    assert [m.code for m in result.missing] == ["6100", "6999"]
    assert result.unknown == ("7777",)
    assert [(r.code, r.source_name, r.target_name) for r in result.renamed] == [("6000", "Travel", "Travel expenses")]
    assert [m.code for m in result.extra] == ["9999"]
    assert (result.source_count, result.target_count) == (4, 3)
    assert [m.code for m in result.to_add] == ["6100", "6999"]
    assert not result.blocking
    rent = result.usage["6100"]
    assert (rent.records, rent.amount) == (3, Decimal("130.50"))
    assert rent.per_flow == {"supplier_invoices": (2, Decimal("150.50")), "gl_postings": (1, Decimal("-20.00"))}
    assert "6999" not in result.usage  # missing but unused
    assert set(result.usage) == {"6100", "7777"}  # only what the report needs


def test_policy_stop_blocks_and_lists_the_members() -> None:
    counter = usage()
    accounts = align("account", SOURCE_ACCOUNTS, TARGET_ACCOUNTS, list_name="GL Accounts", policy="Stop", usage=counter)
    centers = align(
        "cost_center",
        [Member("CC1", "Plant 1"), Member("CC9", "Plant 9")],
        [Member("CC1", "Plant 1")],
        list_name="Cost Centers",
        policy="Stop",
        usage=counter,
    )
    suppliers = align("supplier", [Member("S1", "Acme")], [Member("S1", "Acme")], list_name="Suppliers", usage=counter)
    report = AlignmentReport((accounts, centers, suppliers))
    assert accounts.blocking
    assert centers.blocking
    assert suppliers.blocking  # S2 is used by a payment, known nowhere
    assert accounts.to_add == ()
    assert report.blocking
    assert report.stop_message() == (
        "run stopped before loading (missing-member policy Stop): "
        "3 account(s) missing from Anaplan list 'GL Accounts': 6100, 6999, 7777; "
        "1 cost center(s) missing from Anaplan list 'Cost Centers': CC9; "
        "1 supplier(s) missing from Anaplan list 'Suppliers': S2"
    )


def test_aligned_dimensions_do_not_block() -> None:
    same = align("cost_center", [Member("CC1", "A")], [Member("CC1", "A ")], list_name="Cost Centers", policy="Stop")
    report = AlignmentReport((same,))
    assert not report.blocking
    assert report.stop_message() is None
    assert report.text().splitlines() == [
        "Dimension alignment",
        "  cost centers -> Anaplan list 'Cost Centers' (policy Stop): 1 in Infor, 1 in Anaplan",
        "    aligned",
    ]


def test_dry_run_report_text_and_json() -> None:
    result = align("account", SOURCE_ACCOUNTS, TARGET_ACCOUNTS, list_name="GL Accounts", policy="Add", usage=usage())
    text = AlignmentReport((result,)).text()
    assert text.splitlines() == [
        "Dimension alignment",
        "  accounts -> Anaplan list 'GL Accounts' (policy Add): 4 in Infor, 3 in Anaplan",
        "    missing in Anaplan (2, will be added):",
        "      6100  Rent  used by 3 record(s), amount 130.50 (gl_postings 1, supplier_invoices 2)",
        "      6999  Misc  not used by the records read",
        "    used but unknown to Infor and Anaplan (1, their rows will be rejected):",
        "      7777  used by 1 record(s), amount 3.00 (supplier_invoices 1)",
        "    renamed (same code, other name) (1):",
        "      6000  'Travel' in Infor, 'Travel expenses' in Anaplan",
        "    only in Anaplan (1): 9999",
    ]
    data = AlignmentReport((result,)).to_dict()
    json.dumps(data)  # JSON-ready
    dim = data["dimensions"][0]
    assert (dim["missingCount"], dim["unknownCount"], dim["renamedCount"], dim["extraCount"]) == (2, 1, 1, 1)
    assert dim["missing"][0] == {
        "code": "6100",
        "name": "Rent",
        "usage": {
            "records": 3,
            "amount": "130.50",
            "perFlow": {
                "gl_postings": {"records": 1, "amount": "-20.00"},
                "supplier_invoices": {"records": 2, "amount": "150.50"},
            },
        },
    }


def test_long_lists_are_cut_in_the_report() -> None:
    source = [Member(f"{n:04d}", f"A{n}") for n in range(120)]
    result = align("account", source, [], list_name="GL Accounts", policy="Add")
    lines = result.lines(limit=5)
    assert lines[1:] == [
        "  missing in Anaplan (120, will be added):",
        *(f"    {n:04d}  A{n}  not used by the records read" for n in range(5)),
        "    ... and 115 more",
    ]
    assert len(result.to_dict(limit=5)["missing"]) == 5
    assert result.to_dict(limit=5)["missingCount"] == 120


def test_member_check_says_which_rows_would_be_rejected() -> None:
    counter = usage()
    accounts = align("account", SOURCE_ACCOUNTS, TARGET_ACCOUNTS, list_name="GL Accounts", policy="Add", usage=counter)
    centers = align(
        "cost_center", [Member("CC1", "P1")], [Member("CC1", "P1")], list_name="Cost Centers", usage=counter
    )
    check = MemberCheck((accounts, centers))
    assert check.reasons(invoice(1, "6100", "CC1", "1")) == []  # 6100 will be added first
    assert check.reasons(invoice(2, "7777", "CC9", "1")) == [
        "account 7777 is not in Anaplan list 'GL Accounts'",
        "cost center CC9 is not in Anaplan list 'Cost Centers'",
    ]
    before = MemberCheck((accounts,), after_additions=False)
    assert before.reasons(gl(1, "6100", "CC1", "1")) == ["account 6100 is not in Anaplan list 'GL Accounts'"]


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="Add or Stop"):
        align("account", [], [], list_name="GL Accounts", policy="Ignore")  # type: ignore[arg-type]
