"""The seeded demo model ``FP&A Actuals`` in workspace ``Finance`` (used by the demo, the CLI and the tests).

Data-driven: :func:`build_default_model` takes plain tuples/dicts for the members and budget cells, so
callers (the sync engine's seeding from the Infor dataset, tests) decide the content; ``scale > 0``
generates a deterministic synthetic chart of accounts, cost centers, suppliers and an approved budget.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ml_connector.sandbox.anaplan.builder import MONTHS, MemberSpec, ModelBuilder
from ml_connector.sandbox.anaplan.state import AnaplanState, EmulatorConfig, ModelState, PropertyDef, User
from ml_connector.sandbox.canary import secret_token

USER_EMAIL = "integration@ml-connector.example"
OUTSIDER_EMAIL = "outsider@ml-connector.example"
WORKSPACE = "Finance"
MODEL = "FP&A Actuals"
DEVICE_CLIENT_ID = "ml-connector-device"
WEB_CLIENT_ID = "ml-connector-web"

SUPPLIER_INVOICE_HEADERS = [
    "Code",
    "Supplier",
    "Invoice Number",
    "Invoice Date",
    "Period",
    "Account",
    "Cost Center",
    "Currency",
    "Amount",
]
PAYMENT_HEADERS = ["Code", "Supplier", "Invoice Number", "Payment Date", "Period", "Currency", "Amount"]
GL_ACTUALS_HEADERS = ["Account", "Cost Center", "Period", "Amount", "Postings"]
APPROVED_BUDGET_HEADERS = ["Account", "Cost Center", "Period", "Version", "Amount"]


@dataclass
class DefaultModel:
    state: AnaplanState
    user: User
    password: str
    outsider: User
    model: ModelState

    @property
    def workspace_id(self) -> str:
        return self.model.workspace.id

    @property
    def model_id(self) -> str:
        return self.model.id

    def import_id(self, name: str) -> int:
        return next(i.id for i in self.model.imports.values() if i.name == name)

    def export_id(self, name: str) -> int:
        return next(e.id for e in self.model.exports.values() if e.name == name)

    def process_id(self, name: str) -> int:
        return next(p.id for p in self.model.processes.values() if p.name == name)

    def file_id(self, name: str) -> int:
        return next(f.id for f in self.model.files.values() if f.name == name)

    def list_id(self, name: str) -> int:
        lst = self.model.list_by_key(name)
        assert lst is not None
        return lst.id

    def module_id(self, name: str) -> int:
        mod = self.model.module_by_key(name)
        assert mod is not None
        return mod.id


def build_default_model(
    state: AnaplanState | None = None,
    *,
    config: EmulatorConfig | None = None,
    password: str | None = None,
    accounts: Iterable[MemberSpec] = (),
    cost_centers: Iterable[MemberSpec] = (),
    suppliers: Iterable[MemberSpec] = (),
    budget: Iterable[Mapping[str, Any]] = (),
    scale: int = 0,
    seed: int = 0,
) -> DefaultModel:
    """Seed the default users, workspace and model.

    ``accounts``: ``(code, name, type)``; ``cost_centers``: ``(code, name, plant)``; ``suppliers``:
    ``(code, name, currency)`` (or mappings with ``code``, ``name``, ``properties``). ``budget``: mappings
    with ``account``, ``cost_center``, ``period`` (``YYYY-MM`` or ``Jan 24``), ``version`` (default
    ``Budget``), ``amount`` and ``approved`` (default true). With ``scale > 0`` and no explicit data,
    a synthetic dataset of that scale is generated from ``seed``.
    """
    state = state or AnaplanState(config=config or EmulatorConfig())
    password = password or secret_token(15)
    user = state.user_by_email(USER_EMAIL) or state.add_user(
        USER_EMAIL, password, first_name="Integration", last_name="Service"
    )
    user.password = password
    outsider = state.user_by_email(OUTSIDER_EMAIL) or state.add_user(
        OUTSIDER_EMAIL, secret_token(15), first_name="Out", last_name="Sider"
    )

    b = ModelBuilder(state, workspace=WORKSPACE, name=MODEL, users=[user])
    b.list("GL Accounts", properties=["Type"])
    b.list("Cost Centers", properties=["Plant"])
    b.list("Suppliers", properties=["Currency"])
    b.list(
        "Supplier Invoices",
        numbered=True,
        properties=[
            PropertyDef("Supplier", "LIST", "Suppliers"),
            PropertyDef("Invoice Number"),
            PropertyDef("Invoice Date", "DATE"),
            PropertyDef("Period"),
            PropertyDef("Account"),
            PropertyDef("Cost Center"),
            PropertyDef("Currency"),
            PropertyDef("Amount", "NUMBER"),
        ],
    )
    b.list(
        "Payments",
        numbered=True,
        properties=[
            PropertyDef("Supplier", "LIST", "Suppliers"),
            PropertyDef("Invoice Number"),
            PropertyDef("Payment Date", "DATE"),
            PropertyDef("Period"),
            PropertyDef("Currency"),
            PropertyDef("Amount", "NUMBER"),
        ],
    )
    b.time_months((2024, 1), (2026, 12))
    b.versions(("Actual", "Budget", "Forecast"))
    b.module("GL Actuals", ["GL Accounts", "Cost Centers", "Time"], [("Amount", "NUMBER"), ("Postings", "NUMBER")])
    b.module(
        "Budget", ["GL Accounts", "Cost Centers", "Time", "Versions"], [("Amount", "NUMBER"), ("Approved", "BOOLEAN")]
    )

    b.list_import(
        "Load GL Accounts", "gl_accounts.csv", "GL Accounts", {"Code": "code", "Name": "name", "Type": "property:Type"}
    )
    b.list_import(
        "Load Cost Centers",
        "cost_centers.csv",
        "Cost Centers",
        {"Code": "code", "Name": "name", "Plant": "property:Plant"},
    )
    b.list_import(
        "Load Suppliers",
        "suppliers.csv",
        "Suppliers",
        {"Code": "code", "Name": "name", "Currency": "property:Currency"},
    )
    b.list_import(
        "Load Supplier Invoices",
        "supplier_invoices.csv",
        "Supplier Invoices",
        {"Code": "code"} | {h: f"property:{h}" for h in SUPPLIER_INVOICE_HEADERS[1:]},
    )
    b.list_import(
        "Load Payments",
        "payments.csv",
        "Payments",
        {"Code": "code"} | {h: f"property:{h}" for h in PAYMENT_HEADERS[1:]},
    )
    b.module_import(
        "Load GL Actuals",
        "gl_actuals.csv",
        "GL Actuals",
        {
            "Account": "dimension:GL Accounts",
            "Cost Center": "dimension:Cost Centers",
            "Period": "dimension:Time",
            "Amount": "lineitem:Amount",
            "Postings": "lineitem:Postings",
        },
    )
    b.export(
        "Approved Budget",
        "Budget",
        [
            ("Account", "dimension:GL Accounts"),
            ("Cost Center", "dimension:Cost Centers"),
            ("Period", "dimension:Time"),
            ("Version", "dimension:Versions"),
            ("Amount", "lineitem:Amount"),
        ],
        filter_line_item="Approved",
        file_name="Approved Budget.csv",
    )
    b.process("Refresh Actuals", ["Load GL Accounts", "Load Cost Centers", "Load GL Actuals"])
    b.delete_action("Clear Payments", "Payments")

    accounts, cost_centers, suppliers, budget = list(accounts), list(cost_centers), list(suppliers), list(budget)
    if scale > 0 and not (accounts or cost_centers or suppliers or budget):
        accounts, cost_centers, suppliers, budget = synthetic_dataset(scale, seed)
    b.members("GL Accounts", (_with_props(m, "Type") for m in accounts))
    b.members("Cost Centers", (_with_props(m, "Plant") for m in cost_centers))
    b.members("Suppliers", (_with_props(m, "Currency") for m in suppliers))
    b.cells(
        "Budget",
        (
            {
                "GL Accounts": row["account"],
                "Cost Centers": row["cost_center"],
                "Time": row["period"],
                "Versions": row.get("version", "Budget"),
                "Amount": row["amount"],
                "Approved": row.get("approved", True),
            }
            for row in budget
        ),
    )
    model = b.build()
    return DefaultModel(state, user, password, outsider, model)


def _with_props(spec: MemberSpec, prop: str) -> MemberSpec:
    if isinstance(spec, Mapping) or len(spec) < 3:
        return spec
    return (spec[0], spec[1], {prop: spec[2]})


def synthetic_dataset(
    scale: int, seed: int = 0
) -> tuple[list[Sequence[Any]], list[Sequence[Any]], list[Sequence[Any]], list[dict[str, Any]]]:
    """A deterministic chart: ``10*scale`` accounts, ``3*scale`` cost centers, ``5*scale`` suppliers and a
    2025 budget for every account x cost center pair, two thirds of it approved."""
    rng = random.Random(seed)
    types = ("Expense", "Expense", "Expense", "Revenue", "Asset", "Liability")
    accounts = [(f"{6000 + 10 * i}", f"Account {6000 + 10 * i}", types[i % len(types)]) for i in range(10 * scale)]
    plants = ("P100", "P200", "P300")
    cost_centers = [(f"CC{100 + i}", f"Cost Center {100 + i}", plants[i % len(plants)]) for i in range(3 * scale)]
    currencies = ("USD", "EUR", "GBP")
    suppliers = [(f"S{1000 + i}", f"Supplier {1000 + i}", currencies[i % len(currencies)]) for i in range(5 * scale)]
    budget: list[dict[str, Any]] = []
    for code, _, kind in accounts:
        if kind != "Expense":
            continue
        for cc, _, _ in cost_centers:
            for month in range(1, 13):
                budget.append(
                    {
                        "account": code,
                        "cost_center": cc,
                        "period": f"{MONTHS[month - 1]} 25",
                        "version": "Budget",
                        "amount": round(rng.uniform(500, 20000), 2),
                        "approved": rng.random() < 2 / 3,
                    }
                )
    return list(accounts), list(cost_centers), list(suppliers), budget
