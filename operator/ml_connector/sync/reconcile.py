"""Reconciliation after each load: counts and amount totals per flow and per (account, period), for
what the source gave, what loaded, what Anaplan rejected and what was skipped.

:class:`Reconciler` is a streaming accumulator: one small entry per (flow, account, period) cell —
bounded by the chart of accounts times the periods, not by the number of records. Typical use: add
every extracted record as ``source``, every skipped one as ``skipped``, every row sent as ``loaded``,
then :meth:`Reconciler.move` the rejected ones from ``loaded`` to ``rejected`` once the failure dump is
parsed. A dry run does the same with "would load" / "would be rejected".

:meth:`Reconciler.summary` gives a typed :class:`ReconciliationSummary`: per-flow totals, the check
``extracted == loaded + rejected + skipped`` (counts and amounts) with a clear message when it does
not balance, and the top-N cells where loaded differs from the source. ``to_dict()`` is the small JSON
kept in the SyncRun status; ``text()`` is the table the CLI prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from ml_connector.audit.store import FlowCounts
from ml_connector.records import Record

Stage = Literal["source", "loaded", "rejected", "skipped"]
STAGES: tuple[Stage, ...] = ("source", "loaded", "rejected", "skipped")
_INDEX: Mapping[Stage, int] = {stage: i for i, stage in enumerate(STAGES)}
_ZERO = Decimal(0)


@dataclasses.dataclass(frozen=True, slots=True)
class Tally:
    count: int = 0
    amount: Decimal = _ZERO

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.count + other.count, self.amount + other.amount)

    def __sub__(self, other: Tally) -> Tally:
        return Tally(self.count - other.count, self.amount - other.amount)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "amount": _plain(self.amount)}


def _plain(amount: Decimal) -> str:
    text = format(amount, "f")
    return text[1:] if text.startswith("-") and amount.is_zero() else text


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


@dataclasses.dataclass(frozen=True, slots=True)
class StageTallies:
    source: Tally = Tally()
    loaded: Tally = Tally()
    rejected: Tally = Tally()
    skipped: Tally = Tally()

    @property
    def accounted(self) -> Tally:
        return self.loaded + self.rejected + self.skipped

    @property
    def unexplained(self) -> Tally:
        """What the source has that no outcome accounts for (zero when it balances)."""
        return self.source - self.accounted

    @property
    def difference(self) -> Decimal:
        """Source amount minus loaded amount (explained by rejections and skips when balanced)."""
        return self.source.amount - self.loaded.amount

    def to_dict(self) -> dict[str, Any]:
        return {stage: getattr(self, stage).to_dict() for stage in STAGES}


@dataclasses.dataclass(frozen=True, slots=True)
class FlowSummary:
    flow: str
    tallies: StageTallies

    def imbalance(self) -> str | None:
        """None when ``extracted == loaded + rejected + skipped`` in count and amount, else what is wrong."""
        t = self.tallies
        problems = []
        if t.unexplained.count:
            what = (
                f"{t.unexplained.count} record(s) without an outcome"
                if t.unexplained.count > 0
                else f"{-t.unexplained.count} outcome(s) more than records"
            )
            problems.append(
                f"extracted {t.source.count} != loaded {t.loaded.count} + rejected {t.rejected.count}"
                f" + skipped {t.skipped.count} ({what})"
            )
        if t.unexplained.amount:
            problems.append(
                f"source amount {_plain(t.source.amount)} != loaded {_plain(t.loaded.amount)} + rejected"
                f" {_plain(t.rejected.amount)} + skipped {_plain(t.skipped.amount)}"
                f" (difference {_plain(t.unexplained.amount)})"
            )
        return f"flow {self.flow!r} does not balance: " + "; ".join(problems) if problems else None


@dataclasses.dataclass(frozen=True, slots=True)
class CellSummary:
    flow: str
    account: str
    period: str
    tallies: StageTallies

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "account": self.account,
            "period": self.period,
            **self.tallies.to_dict(),
            "difference": _plain(self.tallies.difference),
            "unexplained": self.tallies.unexplained.to_dict(),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ReconciliationSummary:
    flows: tuple[FlowSummary, ...]
    differences: tuple[CellSummary, ...]
    cells: int
    cells_with_differences: int
    cells_unbalanced: int

    @property
    def problems(self) -> list[str]:
        return [m for m in (f.imbalance() for f in self.flows) if m is not None]

    @property
    def balanced(self) -> bool:
        return not self.problems and not self.cells_unbalanced

    def flow(self, name: str) -> FlowSummary | None:
        return next((f for f in self.flows if f.flow == name), None)

    def to_dict(self) -> dict[str, Any]:
        """Small JSON for the SyncRun status and the audit store: per-flow totals and the top differences."""
        return {
            "balanced": self.balanced,
            "problems": self.problems,
            "flows": {f.flow: f.tallies.to_dict() for f in self.flows},
            "cells": self.cells,
            "cellsWithDifferences": self.cells_with_differences,
            "cellsUnbalanced": self.cells_unbalanced,
            "topDifferences": [c.to_dict() for c in self.differences],
        }

    def text(self, *, dry_run: bool = False) -> str:
        """A readable report (``dry_run``: "would load" / "would be rejected")."""
        loaded, rejected = ("would load", "would reject") if dry_run else ("loaded", "rejected")
        heads = ["flow", "source", loaded, rejected, "skipped", "balance"]
        rows = [
            [
                f.flow,
                *(_cell(getattr(f.tallies, s)) for s in STAGES),
                "ok" if f.imbalance() is None else f"OFF by {_cell(f.tallies.unexplained)}",
            ]
            for f in self.flows
        ]
        out = ["Reconciliation" + (" (dry run)" if dry_run else ""), *_table(heads, rows, right=range(1, 5))]
        if self.differences:
            out.append("")
            out.append(
                f"Differences per account and period (source - {loaded}), top {len(self.differences)}"
                f" of {self.cells_with_differences}:"
            )
            heads = ["flow", "account", "period", "source", loaded, rejected, "skipped", "difference"]
            rows = [
                [
                    c.flow,
                    c.account or "-",
                    c.period or "-",
                    *(_cell(getattr(c.tallies, s)) for s in STAGES),
                    _money(c.tallies.difference),
                ]
                for c in self.differences
            ]
            out += _table(heads, rows, right=range(3, 8))
        out += ["", *(f"PROBLEM: {p}" for p in self.problems)] if self.problems else []
        return "\n".join(out)


def _cell(tally: Tally) -> str:
    return f"{tally.count:,} / {_money(tally.amount)}"


def _table(heads: Sequence[str], rows: Sequence[Sequence[str]], *, right: range) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(heads)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(heads), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


class Reconciler:
    """Streaming accumulator of counts and amounts per (flow, account, period) and stage."""

    def __init__(self, *, top: int = 10) -> None:
        self.top = top
        self._cells: dict[tuple[str, str, str], list[Tally]] = {}

    def add(
        self,
        flow: str,
        stage: Stage,
        *,
        account: str = "",
        period: str = "",
        amount: Decimal = _ZERO,
        count: int = 1,
    ) -> None:
        key = (flow, account, period)
        tallies = self._cells.get(key)
        if tallies is None:
            tallies = self._cells[key] = [Tally(), Tally(), Tally(), Tally()]
        i = _INDEX[stage]
        tallies[i] = tallies[i] + Tally(count, amount)

    def add_record(self, flow: str, stage: Stage, record: Record) -> None:
        """Add one record, using its ``account``, ``period`` and ``amount`` where it has them."""
        amount = getattr(record, "amount", _ZERO)
        self.add(
            flow,
            stage,
            account=str(getattr(record, "account", "")),
            period=str(getattr(record, "period", "")),
            amount=amount if isinstance(amount, Decimal) else _ZERO,
        )

    def move(
        self,
        flow: str,
        from_stage: Stage,
        to_stage: Stage,
        *,
        account: str = "",
        period: str = "",
        amount: Decimal = _ZERO,
        count: int = 1,
    ) -> None:
        """Move records from one outcome to another (e.g. ``loaded`` -> ``rejected`` after the dump)."""
        self.add(flow, from_stage, account=account, period=period, amount=-amount, count=-count)
        self.add(flow, to_stage, account=account, period=period, amount=amount, count=count)

    def move_record(self, flow: str, from_stage: Stage, to_stage: Stage, record: Record) -> None:
        amount = getattr(record, "amount", _ZERO)
        self.move(
            flow,
            from_stage,
            to_stage,
            account=str(getattr(record, "account", "")),
            period=str(getattr(record, "period", "")),
            amount=amount if isinstance(amount, Decimal) else _ZERO,
        )

    def summary(self) -> ReconciliationSummary:
        per_flow: dict[str, list[Tally]] = {}
        cells: list[CellSummary] = []
        for (flow, account, period), tallies in self._cells.items():
            totals = per_flow.setdefault(flow, [Tally(), Tally(), Tally(), Tally()])
            for i, tally in enumerate(tallies):
                totals[i] = totals[i] + tally
            cells.append(CellSummary(flow, account, period, StageTallies(*tallies)))
        differing = [c for c in cells if c.tallies.difference or c.tallies.source.count != c.tallies.loaded.count]
        unbalanced = sum(1 for c in cells if c.tallies.unexplained != Tally())
        differing.sort(
            key=lambda c: (
                -abs(c.tallies.unexplained.amount),
                -abs(c.tallies.unexplained.count),
                -abs(c.tallies.difference),
                -abs(c.tallies.source.count - c.tallies.loaded.count),
                c.flow,
                c.account,
                c.period,
            )
        )
        return ReconciliationSummary(
            flows=tuple(FlowSummary(flow, StageTallies(*per_flow[flow])) for flow in sorted(per_flow)),
            differences=tuple(differing[: self.top]),
            cells=len(cells),
            cells_with_differences=len(differing),
            cells_unbalanced=unbalanced,
        )


def check_against_audit(summary: ReconciliationSummary, counts: Mapping[str, FlowCounts]) -> list[str]:
    """Where the reconciliation and the audit trail disagree on record counts (empty: they agree)."""
    problems: list[str] = []
    for flow in sorted({f.flow for f in summary.flows} | set(counts)):
        mine = summary.flow(flow)
        audit = counts.get(flow, FlowCounts(flow))
        ours = mine.tallies if mine is not None else StageTallies()
        pairs = (
            ("extracted", ours.source.count, audit.source),
            ("loaded", ours.loaded.count, audit.loaded),
            ("rejected", ours.rejected.count, audit.rejected),
            ("skipped", ours.skipped.count, audit.skipped),
        )
        for label, reconciled, audited in pairs:
            if reconciled != audited:
                problems.append(
                    f"flow {flow!r}: {label} {reconciled} in the reconciliation but {audited} in the audit trail"
                )
        if (message := audit.imbalance()) is not None:
            problems.append(message)
    return problems
