"""The product-line factory and interface (no I/O: nothing is sent before the first read)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from ml_connector.infor import (
    FsmOptions,
    InforError,
    IonApiCredentials,
    M3Options,
    ProductLine,
    ProductLineNotSupportedError,
    SyteLineOptions,
    UnsupportedEntityError,
    open_product_line,
)
from ml_connector.infor.budgets import BudgetLineOutcome, BudgetWriteReport, quantize
from ml_connector.records import BudgetLine

CREDS = IonApiCredentials.parse(
    json.dumps({"ti": "T1", "ci": "T1~c", "cs": "secret-cs-222222", "iu": "https://ion.example.com",
                "pu": "https://sso.example.com/T1/as/", "ot": "token.oauth2", "saak": "T1#k",
                "sask": "secret-sask-22222"}),
    source="unit",
)  # fmt: skip


async def test_factory_returns_product_lines_that_satisfy_the_protocol() -> None:
    sites = SyteLineOptions.configs_for("T1", ["S1"])
    for kind, options in (("M3", M3Options()), ("SyteLine", SyteLineOptions(sites=sites)), ("FSM", FsmOptions())):
        line = open_product_line(kind, CREDS, options)  # type: ignore[arg-type]
        assert isinstance(line, ProductLine)
        assert line.name == kind
        await line.aclose()  # never authenticated: nothing to revoke


def test_wrong_options_type_and_unknown_kind() -> None:
    with pytest.raises(TypeError, match="M3 needs M3Options, got FsmOptions"):
        open_product_line("M3", CREDS, FsmOptions())
    with pytest.raises(ValueError, match="unknown Infor product line 'Baan'"):
        open_product_line("Baan", CREDS)  # type: ignore[arg-type]


def test_ln_says_what_is_missing() -> None:
    with pytest.raises(ProductLineNotSupportedError) as info:
        open_product_line("LN", CREDS)
    message = str(info.value)
    assert "Infor LN (tenant T1) is not supported yet" in message
    assert "/LN/lnapi" in message
    assert "budget" in message


def test_syteline_needs_sites() -> None:
    with pytest.raises(InforError, match=r"SyteLineOptions.sites.*T1_SITE1"):
        open_product_line("SyteLine", CREDS, SyteLineOptions())


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match=r"cost_center_dimension must be 2\.\.7"):
        M3Options(cost_center_dimension=1)
    with pytest.raises(ValueError, match="master_data_site 'X'"):
        SyteLineOptions(sites={"S1": "C1"}, master_data_site="X")


async def test_unsupported_entities_name_what_is_supported() -> None:
    async with open_product_line("FSM", CREDS, FsmOptions()) as fsm:
        with pytest.raises(UnsupportedEntityError) as info:
            fsm.read("items")
        assert info.value.supported == ("cost_centers", "gl_accounts", "gl_postings", "supplier_invoices", "suppliers")
        with pytest.raises(UnsupportedEntityError, match="budget_lines"):
            fsm.read("budget_lines")
        with pytest.raises(UnsupportedEntityError, match=r"budget_lines \(read\)"):
            fsm.read_budget("Budget")


def test_budget_report_counts_and_quantize() -> None:
    line = BudgetLine(version="Budget", account="6000", cost_center="CC1", period="2025-01", currency="USD",
                      amount=Decimal("10.005"))  # fmt: skip
    report = BudgetWriteReport("M3", "Budget", dry_run=True)
    report.add(BudgetLineOutcome(line, "added"))
    report.add(BudgetLineOutcome(line, "unchanged", previous=Decimal("10.01")))
    report.add(BudgetLineOutcome(line, "failed", reason="locked"))
    assert report.counts == {"added": 1, "updated": 0, "unchanged": 1, "failed": 1}
    assert report.changed == 1
    assert "dry run, nothing posted" in report.summary()
    assert report.failures()[0].to_dict()["reason"] == "locked"
    assert quantize(Decimal("10.005"), 2) == Decimal("10.01")
    assert quantize(Decimal("10.005"), None) == Decimal("10.005")
