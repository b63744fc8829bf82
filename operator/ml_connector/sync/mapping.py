"""Dimension alignment (pure): Infor's accounts, cost centers and suppliers against the Anaplan lists.

Members are matched by code. For each dimension :func:`align` reports

* **missing** — in Infor's master data, not in the Anaplan list: added before any actual is loaded
  (policy ``Add``), or the run stops before loading and lists them (policy ``Stop``);
* **unknown** — used by transactions but in neither Infor's master data nor the list: they cannot be
  added (there is no name), so rows that use them will be rejected;
* **renamed** — same code, another name (a list import of the master data renames them);
* **extra** — only in the Anaplan list (never deleted: Anaplan list imports do not delete).

:class:`UsageCounter` streams over the transactions to say where members are used (records and
amounts per flow); :class:`MemberCheck` tells, record by record, whether it would be rejected for a
member the list lacks — what a dry run reports as "rows that would be rejected".
Memory is bounded by the dimension sizes, not by the number of records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

from ml_connector.records import Record

Dimension = Literal["account", "cost_center", "supplier"]
MissingMemberPolicy = Literal["Add", "Stop"]

DIMENSION_LABELS: Mapping[Dimension, str] = {"account": "account", "cost_center": "cost center", "supplier": "supplier"}

#: Which record field holds which dimension, per entity.
DIMENSION_FIELDS: Mapping[Dimension, Mapping[str, str]] = {
    "account": {"supplier_invoices": "account", "gl_postings": "account", "budget_lines": "account"},
    "cost_center": {"supplier_invoices": "cost_center", "gl_postings": "cost_center", "budget_lines": "cost_center"},
    "supplier": {"supplier_invoices": "supplier_id", "payments": "supplier_id", "purchase_orders": "supplier_id"},
}
_REPORT_LINES = 50


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    code: str
    name: str = ""


@dataclasses.dataclass(slots=True)
class MemberUsage:
    """How many records use a member, and their amounts, in total and per flow."""

    records: int = 0
    amount: Decimal = Decimal(0)
    per_flow: dict[str, tuple[int, Decimal]] = dataclasses.field(default_factory=dict)

    def add(self, flow: str, amount: Decimal) -> None:
        self.records += 1
        self.amount += amount
        count, total = self.per_flow.get(flow, (0, Decimal(0)))
        self.per_flow[flow] = (count + 1, total + amount)

    def describe(self) -> str:
        flows = ", ".join(f"{flow} {count}" for flow, (count, _) in sorted(self.per_flow.items()))
        return f"used by {self.records} record(s), amount {_money(self.amount)}" + (f" ({flows})" if flows else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "amount": format(self.amount, "f"),
            "perFlow": {f: {"records": c, "amount": format(a, "f")} for f, (c, a) in sorted(self.per_flow.items())},
        }


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _amount(record: Record) -> Decimal:
    value = getattr(record, "amount", None)
    return value if isinstance(value, Decimal) else Decimal(0)


class UsageCounter:
    """Streams over transaction records and counts, per dimension member, the records and amounts using it."""

    def __init__(self) -> None:
        self._usage: dict[Dimension, dict[str, MemberUsage]] = {d: {} for d in DIMENSION_FIELDS}

    def add(self, record: Record, flow: str | None = None) -> None:
        flow_name = flow or record.entity
        amount = _amount(record)
        for dimension, fields in DIMENSION_FIELDS.items():
            field = fields.get(record.entity)
            if field is None:
                continue
            code = str(getattr(record, field))
            usage = self._usage[dimension].get(code)
            if usage is None:
                usage = self._usage[dimension][code] = MemberUsage()
            usage.add(flow_name, amount)

    def used(self, dimension: Dimension) -> Mapping[str, MemberUsage]:
        return self._usage[dimension]


@dataclasses.dataclass(frozen=True, slots=True)
class Renamed:
    code: str
    source_name: str
    target_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class DimensionAlignment:
    dimension: Dimension
    list_name: str
    policy: MissingMemberPolicy
    source_count: int
    target_count: int
    missing: tuple[Member, ...]
    unknown: tuple[str, ...]
    renamed: tuple[Renamed, ...]
    extra: tuple[Member, ...]
    usage: Mapping[str, MemberUsage]  # of missing and unknown members only

    @property
    def to_add(self) -> tuple[Member, ...]:
        """Members to add to the list before loading (policy Add)."""
        return self.missing if self.policy == "Add" else ()

    @property
    def blocking(self) -> bool:
        """Policy Stop and something is missing from the list."""
        return self.policy == "Stop" and bool(self.missing or self.unknown)

    @property
    def unmapped(self) -> tuple[str, ...]:
        """Codes that are not in the list now (missing and unknown)."""
        return tuple(m.code for m in self.missing) + self.unknown

    def _label(self) -> str:
        return DIMENSION_LABELS[self.dimension]

    def _usage_of(self, code: str) -> str:
        usage = self.usage.get(code)
        return usage.describe() if usage is not None else "not used by the records read"

    def lines(self, limit: int = _REPORT_LINES) -> list[str]:
        out = [
            f"{self._label()}s -> Anaplan list {self.list_name!r} (policy {self.policy}):"
            f" {self.source_count} in Infor, {self.target_count} in Anaplan"
        ]
        if self.missing:
            action = "will be added" if self.policy == "Add" else "the run stops before loading"
            out.append(f"  missing in Anaplan ({len(self.missing)}, {action}):")
            out += [f"    {m.code}  {m.name}  {self._usage_of(m.code)}" for m in self.missing[:limit]]
            out += _more(len(self.missing), limit)
        if self.unknown:
            out.append(f"  used but unknown to Infor and Anaplan ({len(self.unknown)}, their rows will be rejected):")
            out += [f"    {code}  {self._usage_of(code)}" for code in self.unknown[:limit]]
            out += _more(len(self.unknown), limit)
        if self.renamed:
            out.append(f"  renamed (same code, other name) ({len(self.renamed)}):")
            out += [
                f"    {r.code}  {r.source_name!r} in Infor, {r.target_name!r} in Anaplan" for r in self.renamed[:limit]
            ]
            out += _more(len(self.renamed), limit)
        if self.extra:
            shown = ", ".join(m.code for m in self.extra[:limit])
            out.append(f"  only in Anaplan ({len(self.extra)}): {shown}" + (", ..." if len(self.extra) > limit else ""))
        if not (self.missing or self.unknown or self.renamed or self.extra):
            out.append("  aligned")
        return out

    def to_dict(self, limit: int = _REPORT_LINES) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "list": self.list_name,
            "policy": self.policy,
            "source": self.source_count,
            "target": self.target_count,
            "blocking": self.blocking,
            "missingCount": len(self.missing),
            "missing": [
                {
                    "code": m.code,
                    "name": m.name,
                    **({"usage": self.usage[m.code].to_dict()} if m.code in self.usage else {}),
                }
                for m in self.missing[:limit]
            ],
            "unknownCount": len(self.unknown),
            "unknown": [
                {"code": c, **({"usage": self.usage[c].to_dict()} if c in self.usage else {})}
                for c in self.unknown[:limit]
            ],
            "renamedCount": len(self.renamed),
            "renamed": [dataclasses.asdict(r) for r in self.renamed[:limit]],
            "extraCount": len(self.extra),
        }


def _more(total: int, limit: int) -> list[str]:
    return [f"    ... and {total - limit} more"] if total > limit else []


def align(
    dimension: Dimension,
    source: Iterable[Member],
    target: Iterable[Member],
    *,
    list_name: str,
    policy: MissingMemberPolicy = "Stop",
    usage: UsageCounter | None = None,
) -> DimensionAlignment:
    """Compare Infor's members (``source``) with the Anaplan list's (``target``) by code."""
    if policy not in ("Add", "Stop"):
        raise ValueError(f"policy for missing {DIMENSION_LABELS[dimension]}s must be Add or Stop, not {policy!r}")
    src: dict[str, Member] = {}
    for member in source:
        src.setdefault(member.code, member)
    tgt: dict[str, Member] = {}
    for member in target:
        tgt.setdefault(member.code, member)
    missing = tuple(src[c] for c in sorted(src) if c not in tgt)
    renamed = tuple(
        Renamed(c, src[c].name, tgt[c].name)
        for c in sorted(src)
        if c in tgt and src[c].name.strip() and src[c].name.strip() != tgt[c].name.strip()
    )
    extra = tuple(tgt[c] for c in sorted(tgt) if c not in src)
    used = usage.used(dimension) if usage is not None else {}
    unknown = tuple(sorted(c for c in used if c not in src and c not in tgt))
    relevant = {m.code for m in missing} | set(unknown)
    return DimensionAlignment(
        dimension=dimension,
        list_name=list_name,
        policy=policy,
        source_count=len(src),
        target_count=len(tgt),
        missing=missing,
        unknown=unknown,
        renamed=renamed,
        extra=extra,
        usage={c: u for c, u in used.items() if c in relevant},
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AlignmentReport:
    dimensions: tuple[DimensionAlignment, ...]

    @property
    def blocking(self) -> bool:
        return any(d.blocking for d in self.dimensions)

    def stop_message(self) -> str | None:
        """Why the run must stop before loading (policy Stop with members missing), or None."""
        parts = []
        for d in self.dimensions:
            if not d.blocking:
                continue
            codes = list(d.unmapped)
            shown = ", ".join(codes[:20]) + (f", ... ({len(codes) - 20} more)" if len(codes) > 20 else "")
            parts.append(
                f"{len(codes)} {DIMENSION_LABELS[d.dimension]}(s) missing from Anaplan list {d.list_name!r}: {shown}"
            )
        if not parts:
            return None
        return "run stopped before loading (missing-member policy Stop): " + "; ".join(parts)

    def text(self, limit: int = _REPORT_LINES) -> str:
        lines = ["Dimension alignment"]
        for d in self.dimensions:
            lines += ["  " + line for line in d.lines(limit)]
        return "\n".join(lines)

    def to_dict(self, limit: int = _REPORT_LINES) -> dict[str, Any]:
        return {"blocking": self.blocking, "dimensions": [d.to_dict(limit) for d in self.dimensions]}


class MemberCheck:
    """Would a record be rejected for a member missing from an Anaplan list (after the planned additions)?"""

    def __init__(self, alignments: Iterable[DimensionAlignment], *, after_additions: bool = True) -> None:
        self._absent: dict[Dimension, tuple[str, frozenset[str]]] = {}
        for a in alignments:
            absent = set(a.unknown) | {m.code for m in a.missing}
            if after_additions:
                absent -= {m.code for m in a.to_add}
            self._absent[a.dimension] = (a.list_name, frozenset(absent))

    def reasons(self, record: Record) -> list[str]:
        """Why Anaplan would reject the record's row (empty: it would load)."""
        out: list[str] = []
        for dimension, (list_name, absent) in self._absent.items():
            field = DIMENSION_FIELDS[dimension].get(record.entity)
            if field is None or not absent:
                continue
            code = str(getattr(record, field))
            if code in absent:
                out.append(f"{DIMENSION_LABELS[dimension]} {code} is not in Anaplan list {list_name!r}")
        return out
