"""The deterministic finance dataset of "Northwind Industrial", a mid-sized manufacturer with three plants.

Every emulator (Infor M3, SyteLine, FSM; Anaplan) and the demo seed from it, so it is neutral: plain
rows with canonical meaning, which each emulator renders in its own product's field names. The same
``(seed, gl_postings)`` always yields the same data.

Shape (company ``100``; plants = M3 divisions = SyteLine sites):

* ``P10`` Dayton (USD), ``P20`` Monterrey (MXN), ``P30`` Stuttgart (EUR);
* a chart of ~120 accounts with types, 15 cost centers per plant (``CC1010`` ... ``CC3150``);
* ~500 suppliers, customers, items; purchase orders, supplier invoices, payments and GL postings
  over 2024-01 .. 2026-12; monthly budgets per account and cost center.

GL postings scale to millions without one Python object per posting: the ledger is cut into
*segments* (plant x year), each holding ``journals`` two-line journals numbered ``1..journals`` in
date order; journal ``n`` of a segment is derived on the fly from ``(seed, segment, n)``. Journals
come in blocks of 8: positions 0-2 are supplier invoices (position 0 backed by the block's purchase
order), 3-5 are payments of the invoices ``lag`` blocks earlier (general journals while there are
none), 6-7 are general journals (revenue, production, payroll, depreciation). Line 1 of a journal
carries the P&L side (account + cost center), line 2 the balance-sheet counter entry, so every
journal balances and every supplier invoice has its expense line. Seeking to journal ``n`` or
posting index ``i`` is arithmetic, never a scan.

Amounts are integer cents in the plant currency; dates are :class:`datetime.date`; ``changed`` is the
record's last-change time (UTC), never later than :attr:`Dataset.max_stamp`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from ml_connector import records

COMPANY = "100"
COMPANY_NAME = "Northwind Industrial"
YEARS: tuple[int, ...] = (2024, 2025, 2026)
BLOCK = 8  # journals per block: 3 invoices, 3 payments, 2 general
PAYMENT_LAG_DAYS = 35
_MASK = (1 << 64) - 1
_JOURNAL_CACHE = 32_768
UTC = dt.UTC


class Plant(NamedTuple):
    code: str  # M3 division / SyteLine site
    name: str
    currency: str
    country: str
    digit: int  # used in cost center codes and document numbers
    weight: float  # share of the company's postings


PLANTS: tuple[Plant, ...] = (
    Plant("P10", "Dayton, Ohio", "USD", "US", 1, 0.5),
    Plant("P20", "Monterrey, Nuevo Leon", "MXN", "MX", 2, 0.3),
    Plant("P30", "Stuttgart, Baden-Wuerttemberg", "EUR", "DE", 3, 0.2),
)
_CURRENCY_FACTOR = {"USD": 100, "MXN": 1700, "EUR": 92}  # local amount = USD amount * factor / 100

AccountType = str  # Revenue | COGS | Expense | Asset | Liability | Equity


class Account(NamedTuple):
    code: str
    name: str
    type: AccountType
    changed: dt.datetime


class CostCenter(NamedTuple):
    code: str
    name: str
    plant: str
    changed: dt.datetime


class Party(NamedTuple):
    """A supplier or a customer. ``status`` is ``active`` or ``inactive``."""

    id: str
    name: str
    country: str
    currency: str
    status: str
    changed: dt.datetime


class Item(NamedTuple):
    id: str
    description: str
    type: str  # FG finished good, PP purchased part, RM raw material, SP spare part
    status: str
    standard_cost_cents: int
    changed: dt.datetime


class Segment(NamedTuple):
    number: int  # position in Dataset.segments
    plant: Plant
    year: int
    journals: int  # base journals 1..journals
    first_posting: int  # company-wide index of the segment's first posting
    site_offset: int  # journals of the same plant in earlier years (site-wide serials)
    lag_blocks: int  # payment at block b pays the invoices of block b - lag_blocks


class Posting(NamedTuple):
    """One GL transaction line. ``amount`` in cents, debit positive; ``serial`` is the site-wide line number."""

    division: str
    year: int
    journal: int
    line: int
    account: str
    cost_center: str
    date: dt.date
    amount: int
    currency: str
    trcd: str  # M3 transaction code: 40/41 AP invoice, 50/51 AP payment, 10/11 revenue, 00 general
    vser: str  # voucher series
    text: str
    serial: int
    changed: dt.datetime


class Invoice(NamedTuple):
    """A posted supplier invoice (voucher = GL journal number in its segment)."""

    division: str
    year: int
    journal: int
    serial: int  # site-wide voucher number
    supplier: str
    number: str
    invoice_date: dt.date
    date: dt.date  # accounting / distribution date
    due_date: dt.date
    account: str
    cost_center: str
    amount: int
    currency: str
    po_number: str
    changed: dt.datetime


class Payment(NamedTuple):
    """A supplier payment of one invoice (voucher = its own GL journal number)."""

    division: str
    year: int
    journal: int
    serial: int  # site-wide check number
    supplier: str
    invoice_journal: int
    invoice_serial: int
    invoice_number: str
    date: dt.date
    amount: int
    currency: str
    changed: dt.datetime


class POLine(NamedTuple):
    division: str
    year: int
    block: int
    po_number: str
    line: int
    supplier: str
    item: str
    order_date: dt.date
    quantity: int
    unit_price: int  # cents
    amount: int  # cents
    currency: str
    status: str  # M3 PUSL-like lowest status: 85 = invoiced
    changed: dt.datetime


class BudgetCell(NamedTuple):
    division: str
    account: str
    cost_center: str
    year: int
    month: int
    amount: int  # cents
    currency: str


@dataclass(frozen=True)
class DatasetConfig:
    """Knobs. ``gl_postings`` is rounded down to an even number (journals have two lines)."""

    seed: int = 7
    gl_postings: int = 20_000
    suppliers: int = 500
    customers: int = 300
    items: int = 400

    def __post_init__(self) -> None:
        if self.gl_postings < 2 * BLOCK * len(PLANTS) * len(YEARS):
            raise ValueError(f"gl_postings={self.gl_postings} is too small: use at least {2 * BLOCK * 9}")
        for name in ("suppliers", "customers", "items"):
            if getattr(self, name) < 10:
                raise ValueError(f"{name}={getattr(self, name)} is too small: use at least 10")


# --------------------------------------------------------------------------------------------- helpers


def mix(*values: int) -> int:
    """A fast, well-spread deterministic 64-bit hash of several integers (FNV-style fold + SplitMix64 finish)."""
    x = 0x243F6A8885A308D3
    for v in values:
        x = ((x ^ v) * 0x100000001B3) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def cents_to_decimal(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def format_cents(cents: int, places: int = 2) -> str:
    """``12345`` -> ``"123.45"`` (``places`` >= 2 pads with zeros, e.g. 8 for SyteLine)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}{'0' * (places - 2)}"


def parse_cents(text: str) -> int:
    """``"123.4"`` -> ``12340``; raises ValueError on anything but a plain decimal."""
    value = Decimal(text.strip())
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {text!r}")
    return int((value * 100).to_integral_value())


def _stamp(day: dt.date, seconds: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(seconds=seconds % 86_400)


# --------------------------------------------------------------------------------------------- master data

_ACCOUNTS: tuple[tuple[str, str, str], ...] = (
    ("1000", "Cash - operating account", "Asset"),
    ("1010", "Cash - payroll account", "Asset"),
    ("1020", "Petty cash", "Asset"),
    ("1100", "Short-term investments", "Asset"),
    ("1200", "Trade receivables", "Asset"),
    ("1210", "Allowance for doubtful accounts", "Asset"),
    ("1220", "Other receivables", "Asset"),
    ("1300", "Prepaid expenses", "Asset"),
    ("1400", "Raw materials inventory", "Asset"),
    ("1410", "Work in progress", "Asset"),
    ("1420", "Finished goods inventory", "Asset"),
    ("1430", "Spare parts inventory", "Asset"),
    ("1500", "Land", "Asset"),
    ("1510", "Buildings", "Asset"),
    ("1520", "Machinery and equipment", "Asset"),
    ("1530", "Tooling", "Asset"),
    ("1540", "Vehicles", "Asset"),
    ("1550", "Office equipment", "Asset"),
    ("1560", "IT hardware", "Asset"),
    ("1590", "Accumulated depreciation", "Asset"),
    ("1600", "Intangible assets", "Asset"),
    ("1610", "Software licences", "Asset"),
    ("1700", "Deferred tax assets", "Asset"),
    ("1800", "Intercompany receivables", "Asset"),
    ("1900", "VAT receivable", "Asset"),
    ("2100", "Accounts payable - trade", "Liability"),
    ("2110", "Goods received not invoiced", "Liability"),
    ("2200", "Accrued expenses", "Liability"),
    ("2300", "Accrued payroll", "Liability"),
    ("2310", "Payroll taxes payable", "Liability"),
    ("2320", "Pension liabilities", "Liability"),
    ("2400", "VAT payable", "Liability"),
    ("2410", "Income tax payable", "Liability"),
    ("2500", "Short-term loans", "Liability"),
    ("2600", "Customer advances", "Liability"),
    ("2700", "Long-term debt", "Liability"),
    ("2710", "Lease liabilities", "Liability"),
    ("2800", "Warranty provisions", "Liability"),
    ("2810", "Restructuring provisions", "Liability"),
    ("2900", "Intercompany payables", "Liability"),
    ("3000", "Share capital", "Equity"),
    ("3100", "Additional paid-in capital", "Equity"),
    ("3200", "Retained earnings", "Equity"),
    ("3300", "Current year earnings", "Equity"),
    ("3400", "Currency translation reserve", "Equity"),
    ("4000", "Product sales - industrial pumps", "Revenue"),
    ("4010", "Product sales - valves", "Revenue"),
    ("4020", "Product sales - compressors", "Revenue"),
    ("4030", "Product sales - spare parts", "Revenue"),
    ("4100", "Service revenue - maintenance contracts", "Revenue"),
    ("4110", "Service revenue - field service", "Revenue"),
    ("4200", "Freight recharged to customers", "Revenue"),
    ("4300", "Sales discounts", "Revenue"),
    ("4310", "Sales returns", "Revenue"),
    ("4400", "Other operating income", "Revenue"),
    ("4500", "Intercompany sales", "Revenue"),
    ("4900", "Foreign exchange gains", "Revenue"),
    ("5000", "Cost of goods sold - pumps", "COGS"),
    ("5010", "Cost of goods sold - valves", "COGS"),
    ("5020", "Cost of goods sold - compressors", "COGS"),
    ("5030", "Cost of goods sold - spare parts", "COGS"),
    ("5100", "Raw materials consumed", "COGS"),
    ("5110", "Purchased components", "COGS"),
    ("5120", "Subcontracting", "COGS"),
    ("5200", "Direct labour", "COGS"),
    ("5210", "Overtime - production", "COGS"),
    ("5300", "Manufacturing overhead applied", "COGS"),
    ("5310", "Scrap", "COGS"),
    ("5320", "Rework", "COGS"),
    ("5400", "Inbound freight", "COGS"),
    ("5410", "Customs duties", "COGS"),
    ("5500", "Inventory adjustments", "COGS"),
    ("5600", "Purchase price variance", "COGS"),
    ("5610", "Production variances", "COGS"),
    ("5700", "Warranty costs", "COGS"),
    ("6000", "Salaries", "Expense"),
    ("6010", "Hourly wages", "Expense"),
    ("6020", "Bonuses", "Expense"),
    ("6030", "Social security contributions", "Expense"),
    ("6040", "Pension contributions", "Expense"),
    ("6050", "Health insurance", "Expense"),
    ("6060", "Training", "Expense"),
    ("6070", "Recruitment", "Expense"),
    ("6100", "Travel", "Expense"),
    ("6110", "Meals and entertainment", "Expense"),
    ("6200", "Rent", "Expense"),
    ("6210", "Electricity", "Expense"),
    ("6220", "Natural gas", "Expense"),
    ("6230", "Water", "Expense"),
    ("6240", "Building maintenance", "Expense"),
    ("6250", "Machinery maintenance", "Expense"),
    ("6260", "Cleaning", "Expense"),
    ("6270", "Security services", "Expense"),
    ("6300", "Insurance", "Expense"),
    ("6400", "Software subscriptions", "Expense"),
    ("6410", "IT services", "Expense"),
    ("6420", "Telecommunications", "Expense"),
    ("6500", "Office supplies", "Expense"),
    ("6510", "Postage and courier", "Expense"),
    ("6600", "Marketing", "Expense"),
    ("6610", "Trade fairs", "Expense"),
    ("6620", "Advertising", "Expense"),
    ("6700", "Legal fees", "Expense"),
    ("6710", "Audit fees", "Expense"),
    ("6720", "Consulting", "Expense"),
    ("6730", "Bank charges", "Expense"),
    ("6800", "Vehicle fuel", "Expense"),
    ("6810", "Vehicle leases", "Expense"),
    ("6900", "R&D materials", "Expense"),
    ("6910", "R&D external services", "Expense"),
    ("6920", "Quality testing", "Expense"),
    ("6930", "Certification", "Expense"),
    ("6940", "Safety equipment", "Expense"),
    ("6950", "Waste disposal", "Expense"),
    ("6960", "Licences and permits", "Expense"),
    ("6970", "Memberships", "Expense"),
    ("7000", "Depreciation - buildings", "Expense"),
    ("7010", "Depreciation - machinery", "Expense"),
    ("7020", "Depreciation - vehicles", "Expense"),
    ("7030", "Depreciation - IT hardware", "Expense"),
    ("7040", "Amortisation of intangibles", "Expense"),
    ("7100", "Bad debt expense", "Expense"),
    ("7200", "Foreign exchange losses", "Expense"),
    ("7300", "Interest expense", "Expense"),
    ("7400", "Income tax expense", "Expense"),
)

_COST_CENTERS: tuple[tuple[str, str], ...] = (
    ("010", "Finance and controlling"),
    ("020", "Human resources"),
    ("030", "Information technology"),
    ("040", "Procurement"),
    ("050", "Warehouse and logistics"),
    ("060", "Production - machining"),
    ("070", "Production - assembly"),
    ("080", "Production - paint and finish"),
    ("090", "Maintenance"),
    ("100", "Quality assurance"),
    ("110", "Engineering and R&D"),
    ("120", "Sales"),
    ("130", "Customer service"),
    ("140", "Health, safety and environment"),
    ("150", "Plant management"),
)
_PRODUCTION_CC = ("060", "070", "080")
_FINANCE_CC = "010"
_SALES_CC = "120"

# Accounts a supplier invoice is booked to (P&L side), by cost-center kind.
_PURCHASE_ACCOUNTS = (
    "5120", "5400", "5410", "6060", "6070", "6100", "6110", "6200", "6210", "6220", "6230", "6240", "6250",
    "6260", "6270", "6300", "6400", "6410", "6420", "6500", "6510", "6600", "6610", "6620", "6700", "6710",
    "6720", "6800", "6810", "6900", "6910", "6920", "6930", "6940", "6950", "6960", "6970",
)  # fmt: skip
_PO_ACCOUNT = "5110"
_REVENUE_ACCOUNTS = ("4000", "4010", "4020", "4030", "4100", "4110", "4200")
_PRODUCTION_ACCOUNTS = ("5000", "5010", "5020", "5030", "5100", "5300", "5310", "5320", "5500", "5610")
_PAYROLL_ACCOUNTS = ("6000", "6010", "6020", "6030", "6040", "6050")
_DEPRECIATION_ACCOUNTS = ("7000", "7010", "7020", "7030", "7040")

_NAME_STEMS = (
    "Acme", "Baltic", "Cascade", "Delta", "Evergreen", "Falcon", "Granite", "Harbor", "Ironwood", "Juniper",
    "Keystone", "Lakeside", "Meridian", "Northstar", "Orion", "Pioneer", "Quantum", "Redwood", "Summit",
    "Titan", "Unity", "Vanguard", "Westfield", "Xenon", "Yellowstone", "Zenith", "Atlas", "Beacon", "Crescent",
    "Dynamo",
)  # fmt: skip
_SUPPLIER_TRADES = (
    "Castings", "Steel Works", "Fasteners", "Bearings", "Hydraulics", "Electric Motors", "Seals", "Logistics",
    "Packaging", "Coatings", "Machining", "Plastics", "Electronics", "Tooling", "Facility Services", "IT Solutions",
    "Staffing",
)  # fmt: skip
_CUSTOMER_TRADES = ("Utilities", "Water Authority", "Energy", "Chemicals", "Mining", "Food Processing", "Refining")
_LEGAL = {
    "US": "Inc.",
    "MX": "S.A. de C.V.",
    "DE": "GmbH",
    "CA": "Ltd.",
    "FR": "SAS",
    "IT": "S.p.A.",
    "CN": "Co., Ltd.",
}
_COUNTRY_CURRENCY = {"US": "USD", "MX": "MXN", "DE": "EUR", "CA": "CAD", "FR": "EUR", "IT": "EUR", "CN": "USD"}
_COUNTRY_WEIGHTS = (("US", 40), ("MX", 20), ("DE", 15), ("CA", 5), ("FR", 5), ("IT", 5), ("CN", 10))
_ITEM_KINDS = (
    ("FG", ("Centrifugal pump", "Gear pump", "Ball valve", "Gate valve", "Screw compressor", "Piston compressor")),
    ("PP", ("Bearing", "Mechanical seal", "Motor 7.5 kW", "Pressure sensor", "Impeller", "Coupling", "Gasket set")),
    ("RM", ("Steel bar", "Cast iron housing blank", "Stainless sheet", "Copper wire", "Paint", "Polymer granulate")),
    ("SP", ("Repair kit", "Filter cartridge", "Valve seat", "Shaft sleeve")),
)


def _pick_country(h: int) -> str:
    total = sum(w for _, w in _COUNTRY_WEIGHTS)
    r = h % total
    for country, weight in _COUNTRY_WEIGHTS:
        if r < weight:
            return country
        r -= weight
    return "US"


_GENERAL_KINDS = ("revenue", "revenue", "production", "payroll", "depreciation", "purchase_accrual")


class _Journal(NamedTuple):
    kind: str  # invoice | payment | revenue | production | payroll | depreciation | purchase_accrual
    date: dt.date
    changed: dt.datetime
    account: str
    cost_center: str
    amount: int  # line-1 amount (P&L side), cents, debit positive
    counter: str  # line-2 account
    counter_cc: str
    trcd: str
    vser: str
    text: str
    party: str  # supplier or customer
    ref: str  # invoice number
    invoice_journal: int  # payments: the invoice they pay


@functools.lru_cache(maxsize=64)
def _budget_cells(seed: int, year: int, plant: Plant) -> tuple[BudgetCell, ...]:
    factor = _CURRENCY_FACTOR[plant.currency]
    pool = _PURCHASE_ACCOUNTS + _PAYROLL_ACCOUNTS + _DEPRECIATION_ACCOUNTS
    cells: list[BudgetCell] = []
    for suffix, _ in _COST_CENTERS:
        cc = f"CC{plant.digit}{suffix}"
        h = mix(seed, 97, int(cc[2:]))
        picks: list[str] = []
        k = 0
        while len(picks) < 8:
            account = pool[mix(h, k) % len(pool)]
            if account not in picks:
                picks.append(account)
            k += 1
        for account in sorted(picks):
            base = 100_000 + mix(seed, 101, int(cc[2:]), int(account)) % 2_000_000
            for month in range(1, 13):
                wobble = mix(seed, year, month, int(account), int(cc[2:])) % 200_000
                amount = (base + wobble) * factor // 100 // 100 * 100  # whole currency units
                cells.append(BudgetCell(plant.code, account, cc, year, month, amount, plant.currency))
    return tuple(cells)


# --------------------------------------------------------------------------------------------- the dataset


class Dataset:
    """The immutable base dataset. Emulators layer their writes and late changes on top (``sandbox.infor.state``)."""

    company = COMPANY
    name = COMPANY_NAME
    years = YEARS
    plants = PLANTS

    def __init__(self, config: DatasetConfig | None = None) -> None:
        self.config = config or DatasetConfig()
        self.seed = self.config.seed
        self.plant_by_code = {p.code: p for p in PLANTS}
        self.start = dt.date(YEARS[0], 1, 1)
        self.end = dt.date(YEARS[-1], 12, 31)
        #: Every base change stamp is at or before this moment; late changes are stamped after it.
        self.max_stamp = dt.datetime(YEARS[-1] + 1, 1, 8, tzinfo=UTC)
        master_stamp = dt.datetime(YEARS[0] - 1, 12, 1, tzinfo=UTC)
        self.accounts: tuple[Account, ...] = tuple(Account(c, n, t, master_stamp) for c, n, t in _ACCOUNTS)
        self.account_by_code = {a.code: a for a in self.accounts}
        self.cost_centers: tuple[CostCenter, ...] = tuple(
            CostCenter(f"CC{p.digit}{suffix}", name, p.code, master_stamp)
            for p in PLANTS
            for suffix, name in _COST_CENTERS
        )
        self.cost_center_by_code = {c.code: c for c in self.cost_centers}
        self.suppliers: tuple[Party, ...] = tuple(
            self._party(i, "S", _SUPPLIER_TRADES) for i in range(self.config.suppliers)
        )
        self.customers: tuple[Party, ...] = tuple(
            self._party(i, "C", _CUSTOMER_TRADES) for i in range(self.config.customers)
        )
        self.items: tuple[Item, ...] = tuple(self._item(i) for i in range(self.config.items))
        self._purchased_items = tuple(i for i in self.items if i.type in ("PP", "RM"))
        self.segments: tuple[Segment, ...] = self._segments()
        self._segment_starts = [s.first_posting for s in self.segments]
        self._segment_by_key = {(s.plant.code, s.year): s for s in self.segments}
        #: recently derived journals (a sequential scan meets each invoice again when its payment comes)
        self._journals: dict[tuple[int, int], _Journal] = {}

    # ----------------------------------------------------------------------------------- master data

    def _party(self, i: int, prefix: str, trades: Sequence[str]) -> Party:
        h = mix(self.seed, ord(prefix), i)
        country = _pick_country(h >> 8)
        stem = _NAME_STEMS[i % len(_NAME_STEMS)]
        trade = trades[(i // len(_NAME_STEMS)) % len(trades)]
        name = f"{stem} {trade} {_LEGAL[country]}"
        if i >= len(_NAME_STEMS) * len(trades):
            name = f"{stem} {trade} {i // (len(_NAME_STEMS) * len(trades)) + 1} {_LEGAL[country]}"
        status = "inactive" if (h >> 40) % 50 == 0 else "active"
        changed = _stamp(dt.date(YEARS[0] - 1, 1, 1) + dt.timedelta(days=(h >> 24) % 360), h >> 44)
        return Party(f"{prefix}{i + 1:05d}", name, country, _COUNTRY_CURRENCY[country], status, changed)

    def _item(self, i: int) -> Item:
        h = mix(self.seed, 73, i)
        kind, names = _ITEM_KINDS[h % len(_ITEM_KINDS)]
        base = names[(h >> 8) % len(names)]
        description = f"{base} {kind}-{100 + (h >> 16) % 900}"
        cost = 500 + (h >> 28) % 50_000  # 5.00 .. 505.00 USD
        changed = _stamp(dt.date(YEARS[0] - 1, 1, 1) + dt.timedelta(days=(h >> 40) % 360), h >> 50)
        status = "20" if (h >> 56) % 40 else "90"
        return Item(f"ITM{i + 1:05d}", description, kind, "active" if status == "20" else "inactive", cost, changed)

    def plant(self, code: str) -> Plant:
        try:
            return self.plant_by_code[code]
        except KeyError:
            raise KeyError(f"unknown plant/division {code!r}; known: {', '.join(self.plant_by_code)}") from None

    def plant_cost_centers(self, plant: str) -> list[CostCenter]:
        return [c for c in self.cost_centers if c.plant == plant]

    # ----------------------------------------------------------------------------------- segments

    def _segments(self) -> tuple[Segment, ...]:
        journals_total = self.config.gl_postings // 2
        weights = [(p, y) for p in PLANTS for y in YEARS]
        raw = [journals_total * p.weight / len(YEARS) for p, _ in weights]
        counts = [int(r) for r in raw]
        # hand out the rounding remainder deterministically so the total is exact
        for i in sorted(range(len(raw)), key=lambda k: raw[k] - counts[k], reverse=True)[
            : journals_total - sum(counts)
        ]:
            counts[i] += 1
        segments: list[Segment] = []
        first = 0
        site_offsets: dict[str, int] = {}
        for index, ((plant, year), journals) in enumerate(zip(weights, counts, strict=True)):
            blocks = max(1, journals // BLOCK)
            days = 366 if year % 4 == 0 else 365
            lag = max(1, round(blocks * PAYMENT_LAG_DAYS / days))
            offset = site_offsets.get(plant.code, 0)
            segments.append(Segment(index, plant, year, journals, first, offset, lag))
            site_offsets[plant.code] = offset + journals
            first += 2 * journals
        return tuple(segments)

    @property
    def gl_count(self) -> int:
        """Number of base GL postings (two per journal)."""
        return self.segments[-1].first_posting + 2 * self.segments[-1].journals

    def segment(self, plant: str, year: int) -> Segment:
        try:
            return self._segment_by_key[(plant, year)]
        except KeyError:
            raise KeyError(f"no ledger segment for division {plant!r} year {year}") from None

    def site_segments(self, plant: str) -> list[Segment]:
        return [s for s in self.segments if s.plant.code == plant]

    def site_journals(self, plant: str) -> int:
        return sum(s.journals for s in self.site_segments(plant))

    def journal_date(self, seg: Segment, n: int) -> dt.date:
        days = 366 if seg.year % 4 == 0 else 365
        return dt.date(seg.year, 1, 1) + dt.timedelta(days=(n - 1) * days // seg.journals)

    def first_journal_on_or_after(self, seg: Segment, day: dt.date) -> int:
        """Smallest journal number whose date is >= ``day`` (``journals + 1`` if none): bisect, no scan."""
        lo, hi = 1, seg.journals + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.journal_date(seg, mid) < day:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # ----------------------------------------------------------------------------------- journals

    def _kind(self, seg: Segment, n: int) -> str:
        block, pos = divmod(n - 1, BLOCK)
        if pos < 3:
            return "invoice"
        if pos < 6 and block >= seg.lag_blocks and self._invoice_exists(seg, n - seg.lag_blocks * BLOCK - 3):
            return "payment"
        return "general"

    @staticmethod
    def _invoice_exists(seg: Segment, n: int) -> bool:
        return 1 <= n <= seg.journals and (n - 1) % BLOCK < 3

    def journal(self, seg: Segment, n: int) -> _Journal:
        """Journal ``n`` (1-based) of a segment, derived from ``(seed, segment, n)``."""
        key = (seg.number, n)
        value = self._journals.get(key)
        if value is None:
            if len(self._journals) >= _JOURNAL_CACHE:
                self._journals.clear()
            value = self._journals[key] = self._derive(seg, n)
        return value

    def _derive(self, seg: Segment, n: int) -> _Journal:
        if not 1 <= n <= seg.journals:
            raise IndexError(f"journal {n} outside 1..{seg.journals} of {seg.plant.code}/{seg.year}")
        plant = seg.plant
        h = mix(self.seed, seg.number, n)
        h2 = mix(h)
        date = self.journal_date(seg, n)
        changed = _stamp(date + dt.timedelta(days=(h >> 60) % 4), h2)
        factor = _CURRENCY_FACTOR[plant.currency]
        cc_prefix = f"CC{plant.digit}"
        finance_cc = cc_prefix + _FINANCE_CC
        kind = self._kind(seg, n)
        if kind == "invoice":
            supplier = self.suppliers[h % len(self.suppliers)]
            number = f"INV{plant.digit}{seg.year % 100:02d}{n:07d}"
            if (n - 1) % BLOCK == 0:
                amount = sum(line.amount for line in self.po_lines_of_block(seg, (n - 1) // BLOCK))
                account = _PO_ACCOUNT
                cc = cc_prefix + _PRODUCTION_CC[(h >> 8) % 3]
            else:
                amount = (5_000 + (h >> 16) % 1_500_000) * factor // 100
                account = _PURCHASE_ACCOUNTS[(h >> 8) % len(_PURCHASE_ACCOUNTS)]
                cc = cc_prefix + _COST_CENTERS[(h >> 40) % len(_COST_CENTERS)][0]
            text = f"{supplier.id} {number}"
            return _Journal(kind, date, changed, account, cc, amount, "2100", finance_cc, "40", "AP", text,
                            supplier.id, number, 0)  # fmt: skip
        if kind == "payment":
            inv_n = n - seg.lag_blocks * BLOCK - 3
            inv = self.journal(seg, inv_n)
            text = f"Payment {inv.party} {inv.ref}"
            return _Journal(kind, date, changed, "2100", finance_cc, inv.amount, "1000", finance_cc, "50", "PY", text,
                            inv.party, inv.ref, inv_n)  # fmt: skip
        general = _GENERAL_KINDS[(h >> 4) % len(_GENERAL_KINDS)]
        month = f"{seg.year}-{date.month:02d}"
        if general == "revenue":
            customer = self.customers[(h >> 12) % len(self.customers)]
            amount = -(20_000 + (h >> 20) % 6_000_000) * factor // 100
            account = _REVENUE_ACCOUNTS[(h >> 44) % len(_REVENUE_ACCOUNTS)]
            return _Journal(general, date, changed, account, cc_prefix + _SALES_CC, amount, "1200", finance_cc, "10",
                            "AR", f"Sales {customer.id}", customer.id, "", 0)  # fmt: skip
        if general == "production":
            amount = (10_000 + (h >> 20) % 1_500_000) * factor // 100
            account = _PRODUCTION_ACCOUNTS[(h >> 44) % len(_PRODUCTION_ACCOUNTS)]
            cc = cc_prefix + _PRODUCTION_CC[(h >> 12) % 3]
            return _Journal(general, date, changed, account, cc, amount, "1400", finance_cc, "00", "GL",
                            f"Production consumption {month}", "", "", 0)  # fmt: skip
        if general == "payroll":
            amount = (50_000 + (h >> 20) % 2_000_000) * factor // 100
            account = _PAYROLL_ACCOUNTS[(h >> 44) % len(_PAYROLL_ACCOUNTS)]
            cc = cc_prefix + _COST_CENTERS[(h >> 12) % len(_COST_CENTERS)][0]
            return _Journal(general, date, changed, account, cc, amount, "2300", finance_cc, "00", "PR",
                            f"Payroll {month}", "", "", 0)  # fmt: skip
        if general == "depreciation":
            amount = (20_000 + (h >> 20) % 800_000) * factor // 100
            account = _DEPRECIATION_ACCOUNTS[(h >> 44) % len(_DEPRECIATION_ACCOUNTS)]
            cc = cc_prefix + _COST_CENTERS[(h >> 12) % len(_COST_CENTERS)][0]
            return _Journal(general, date, changed, account, cc, amount, "1590", finance_cc, "00", "GL",
                            f"Depreciation {month}", "", "", 0)  # fmt: skip
        amount = (5_000 + (h >> 20) % 500_000) * factor // 100
        account = _PURCHASE_ACCOUNTS[(h >> 44) % len(_PURCHASE_ACCOUNTS)]
        cc = cc_prefix + _COST_CENTERS[(h >> 12) % len(_COST_CENTERS)][0]
        return _Journal(general, date, changed, account, cc, amount, "2200", finance_cc, "00", "GL",
                        f"Accrual {month}", "", "", 0)  # fmt: skip

    # ----------------------------------------------------------------------------------- GL postings

    def posting(self, seg: Segment, n: int, line: int) -> Posting:
        j = self.journal(seg, n)
        serial = 2 * (seg.site_offset + n - 1) + line
        if line == 1:
            return Posting(seg.plant.code, seg.year, n, 1, j.account, j.cost_center, j.date, j.amount,
                           seg.plant.currency, j.trcd, j.vser, j.text, serial, j.changed)  # fmt: skip
        if line != 2:
            raise IndexError(f"journal line {line} outside 1..2")
        counter_trcd = {"40": "41", "50": "51", "10": "11"}.get(j.trcd, j.trcd)  # [INF] only the expense line is 40
        return Posting(seg.plant.code, seg.year, n, 2, j.counter, j.counter_cc, j.date, -j.amount,
                       seg.plant.currency, counter_trcd, j.vser, j.text, serial, j.changed)  # fmt: skip

    def posting_at(self, index: int) -> Posting:
        """Company-wide posting ``index`` (0-based) in key order (division, year, journal, line)."""
        if not 0 <= index < self.gl_count:
            raise IndexError(f"posting index {index} outside 0..{self.gl_count - 1}")
        seg = self.segments[bisect.bisect_right(self._segment_starts, index) - 1]
        offset = index - seg.first_posting
        return self.posting(seg, offset // 2 + 1, offset % 2 + 1)

    def postings(self, seg: Segment, first_journal: int = 1) -> Iterator[Posting]:
        for n in range(max(1, first_journal), seg.journals + 1):
            yield self.posting(seg, n, 1)
            yield self.posting(seg, n, 2)

    def site_posting(self, plant: str, serial: int) -> Posting:
        """Posting by site-wide serial (SyteLine ``TransNum``), 1-based."""
        journal_index, line0 = divmod(serial - 1, 2)
        for seg in self.site_segments(plant):
            if journal_index < seg.journals:
                return self.posting(seg, journal_index + 1, line0 + 1)
            journal_index -= seg.journals
        raise IndexError(f"no posting with serial {serial} in {plant}")

    def site_locate(self, plant: str, serial: int) -> tuple[Segment, int] | None:
        """(segment, journal) holding site-wide journal serial ``serial`` (1-based), or None past the end."""
        journal_index = serial - 1
        for seg in self.site_segments(plant):
            if journal_index < seg.journals:
                return seg, journal_index + 1
            journal_index -= seg.journals
        return None

    # ----------------------------------------------------------------------------------- AP ledger

    def is_invoice(self, seg: Segment, n: int) -> bool:
        return self._kind(seg, n) == "invoice"

    def is_payment(self, seg: Segment, n: int) -> bool:
        return self._kind(seg, n) == "payment"

    def invoice(self, seg: Segment, n: int) -> Invoice:
        j = self.journal(seg, n)
        if j.kind != "invoice":
            raise KeyError(f"journal {n} of {seg.plant.code}/{seg.year} is not a supplier invoice")
        supplier_terms = (30, 45, 60)[mix(self.seed, 5, int(j.party[1:])) % 3]
        h = mix(self.seed, 11, seg.number, n)
        invoice_date = max(dt.date(seg.year, 1, 1), j.date - dt.timedelta(days=h % 6))
        po = self.po_number(seg, (n - 1) // BLOCK) if (n - 1) % BLOCK == 0 else ""
        return Invoice(seg.plant.code, seg.year, n, seg.site_offset + n, j.party, j.ref, invoice_date, j.date,
                       invoice_date + dt.timedelta(days=supplier_terms), j.account, j.cost_center, j.amount,
                       seg.plant.currency, po, j.changed)  # fmt: skip

    def payment(self, seg: Segment, n: int) -> Payment:
        j = self.journal(seg, n)
        if j.kind != "payment":
            raise KeyError(f"journal {n} of {seg.plant.code}/{seg.year} is not a supplier payment")
        return Payment(seg.plant.code, seg.year, n, seg.site_offset + n, j.party, j.invoice_journal,
                       seg.site_offset + j.invoice_journal, j.ref, j.date, j.amount, seg.plant.currency,
                       j.changed)  # fmt: skip

    def invoices(self, seg: Segment, first_journal: int = 1) -> Iterator[Invoice]:
        for n in range(max(1, first_journal), seg.journals + 1):
            if (n - 1) % BLOCK < 3:
                yield self.invoice(seg, n)

    def payments(self, seg: Segment, first_journal: int = 1) -> Iterator[Payment]:
        for n in range(max(1, first_journal), seg.journals + 1):
            if self._kind(seg, n) == "payment":
                yield self.payment(seg, n)

    # ----------------------------------------------------------------------------------- purchase orders

    def blocks(self, seg: Segment) -> int:
        """Blocks with a purchase order (every block whose first journal exists)."""
        return (seg.journals + BLOCK - 1) // BLOCK

    def po_number(self, seg: Segment, block: int) -> str:
        return f"P{seg.plant.digit}{seg.year % 100:02d}{block + 1:06d}"

    def parse_po_number(self, po_number: str) -> tuple[Segment, int] | None:
        """Inverse of :meth:`po_number`; None when it is not a base PO."""
        if len(po_number) != 10 or po_number[0] != "P" or not po_number[1:].isdigit():
            return None
        digit, yy, block = int(po_number[1]), int(po_number[2:4]), int(po_number[4:]) - 1
        for seg in self.segments:
            if seg.plant.digit == digit and seg.year % 100 == yy and 0 <= block < self.blocks(seg):
                return seg, block
        return None

    def po_lines_of_block(self, seg: Segment, block: int) -> list[POLine]:
        h = mix(self.seed, 29, seg.number, block)
        n = block * BLOCK + 1
        supplier = self.suppliers[mix(self.seed, seg.number, n) % len(self.suppliers)]
        first_date = self.journal_date(seg, n)
        order_date = first_date - dt.timedelta(days=7 + h % 14)
        changed = _stamp(first_date, h >> 20)
        factor = _CURRENCY_FACTOR[seg.plant.currency]
        lines: list[POLine] = []
        for line in range(1, 2 + (h >> 8) % 3):
            hl = mix(h, line)
            item = self._purchased_items[hl % len(self._purchased_items)]
            qty = 1 + (hl >> 16) % 60
            price = item.standard_cost_cents * factor // 100
            lines.append(POLine(seg.plant.code, seg.year, block, self.po_number(seg, block), line, supplier.id,
                                item.id, order_date, qty, price, qty * price, seg.plant.currency, "85",
                                changed))  # fmt: skip
        return lines

    def po_lines(self, seg: Segment, first_block: int = 0) -> Iterator[POLine]:
        for block in range(max(0, first_block), self.blocks(seg)):
            yield from self.po_lines_of_block(seg, block)

    # ----------------------------------------------------------------------------------- budgets

    def budget_accounts(self, cost_center: str) -> list[str]:
        """The accounts a cost center budgets (8, deterministic)."""
        plant = self.plant_by_code[self.cost_center_by_code[cost_center].plant]
        return sorted({c.account for c in _budget_cells(self.seed, YEARS[0], plant) if c.cost_center == cost_center})

    def budget_cells(self, year: int, plant: str | None = None) -> Iterator[BudgetCell]:
        """The approved budget of ``year``: 12 monthly amounts per (cost center, budgeted account)."""
        for p in PLANTS:
            if plant is None or p.code == plant:
                yield from _budget_cells(self.seed, year, p)

    # ----------------------------------------------------------------------------------- canonical records

    def iter_postings(self) -> Iterator[Posting]:
        for seg in self.segments:
            yield from self.postings(seg)

    def iter_invoices(self) -> Iterator[Invoice]:
        for seg in self.segments:
            yield from self.invoices(seg)

    def iter_payments(self) -> Iterator[Payment]:
        for seg in self.segments:
            yield from self.payments(seg)

    def iter_po_lines(self) -> Iterator[POLine]:
        for seg in self.segments:
            yield from self.po_lines(seg)

    def records(self, entity: records.Entity) -> Iterator[records.Record]:
        """The base dataset as canonical records (streamed): what a perfect extraction would yield."""
        if entity == "suppliers":
            yield from (supplier_record(p) for p in self.suppliers)
        elif entity == "customers":
            yield from (customer_record(p) for p in self.customers)
        elif entity == "items":
            yield from (item_record(i) for i in self.items)
        elif entity == "gl_accounts":
            yield from (account_record(a) for a in self.accounts)
        elif entity == "cost_centers":
            yield from (cost_center_record(c) for c in self.cost_centers)
        elif entity == "gl_postings":
            yield from (posting_record(p) for p in self.iter_postings())
        elif entity == "supplier_invoices":
            yield from (invoice_record(i) for i in self.iter_invoices())
        elif entity == "payments":
            yield from (payment_record(p) for p in self.iter_payments())
        elif entity == "purchase_orders":
            yield from (po_line_record(p) for p in self.iter_po_lines())
        elif entity == "budget_lines":
            for year in YEARS:
                yield from (budget_record(c) for c in self.budget_cells(year))
        else:  # pragma: no cover - Entity is a closed Literal
            raise ValueError(f"unknown entity {entity!r}")


# --------------------------------------------------------------------------------------------- to canonical


def supplier_record(p: Party) -> records.Supplier:
    return records.Supplier(supplier_id=p.id, name=p.name, currency=p.currency, country=p.country,
                            status=p.status, changed_at=p.changed)  # fmt: skip


def customer_record(p: Party) -> records.Customer:
    return records.Customer(customer_id=p.id, name=p.name, currency=p.currency, country=p.country,
                            status=p.status, changed_at=p.changed)  # fmt: skip


def item_record(i: Item) -> records.Item:
    return records.Item(item_id=i.id, description=i.description, item_type=i.type, status=i.status,
                        changed_at=i.changed)  # fmt: skip


def account_record(a: Account) -> records.GLAccount:
    return records.GLAccount(account=a.code, name=a.name, account_type=a.type, changed_at=a.changed)


def cost_center_record(c: CostCenter) -> records.CostCenter:
    return records.CostCenter(cost_center=c.code, name=c.name, plant=c.plant, changed_at=c.changed)


def posting_record(p: Posting) -> records.GLPosting:
    return records.GLPosting(company=COMPANY, division=p.division, year=p.year, journal=str(p.journal),
                             line=p.line, account=p.account, cost_center=p.cost_center, accounting_date=p.date,
                             period=records.period_of(p.date), currency=p.currency,
                             amount=cents_to_decimal(p.amount), text=p.text, changed_at=p.changed)  # fmt: skip


def invoice_record(i: Invoice) -> records.SupplierInvoice:
    return records.SupplierInvoice(company=COMPANY, division=i.division, supplier_id=i.supplier,
                                   invoice_number=i.number, invoice_date=i.invoice_date, accounting_date=i.date,
                                   due_date=i.due_date, period=records.period_of(i.date), account=i.account,
                                   cost_center=i.cost_center, currency=i.currency,
                                   amount=cents_to_decimal(i.amount), changed_at=i.changed)  # fmt: skip


def payment_record(p: Payment) -> records.Payment:
    return records.Payment(company=COMPANY, division=p.division, payment_id=f"{p.year}-{p.journal}",
                           supplier_id=p.supplier, invoice_number=p.invoice_number, payment_date=p.date,
                           period=records.period_of(p.date), currency=p.currency,
                           amount=cents_to_decimal(p.amount), changed_at=p.changed)  # fmt: skip


def po_line_record(p: POLine) -> records.PurchaseOrder:
    return records.PurchaseOrder(company=COMPANY, division=p.division, po_number=p.po_number, line=p.line,
                                 supplier_id=p.supplier, item_id=p.item, order_date=p.order_date,
                                 quantity=Decimal(p.quantity), amount=cents_to_decimal(p.amount),
                                 currency=p.currency, status=p.status, changed_at=p.changed)  # fmt: skip


def budget_record(c: BudgetCell, version: str = "Budget") -> records.BudgetLine:
    return records.BudgetLine(version=version, account=c.account, cost_center=c.cost_center,
                              period=f"{c.year}-{c.month:02d}", currency=c.currency,
                              amount=cents_to_decimal(c.amount))  # fmt: skip
