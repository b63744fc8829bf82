"""Budget write-back results, shared by the product lines.

Write-back always queries before it posts (add, update or skip), so a rerun posts nothing twice;
``dry_run`` computes the same plan and posts nothing. Per-line failures are reported, not raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from ml_connector.records import BudgetLine

Outcome = Literal["added", "updated", "unchanged", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("added", "updated", "unchanged", "failed")

BudgetLines = Iterable[BudgetLine] | AsyncIterable[BudgetLine]


@dataclass(frozen=True, slots=True)
class BudgetLineOutcome:
    """What happened (or, in a dry run, would happen) to one budget line."""

    line: BudgetLine
    outcome: Outcome
    target: str = ""  # where it goes, e.g. "M3 BUS100MI P10/NWB/1" or "SyteLine SLChartBps NORTHWIND_CSI_TST_P10"
    previous: Decimal | None = None  # the amount found in Infor before writing (None: absent)
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "natural_key": self.line.natural_key,
            "outcome": self.outcome,
            "target": self.target,
            "amount": format(self.line.amount, "f"),
            "previous": None if self.previous is None else format(self.previous, "f"),
            "reason": self.reason,
        }


@dataclass
class BudgetWriteReport:
    """Counts and per-line outcomes of one write-back (``dry_run``: what would change)."""

    product_line: str
    version: str
    dry_run: bool
    outcomes: list[BudgetLineOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, outcome: BudgetLineOutcome) -> None:
        self.outcomes.append(outcome)

    @property
    def counts(self) -> dict[Outcome, int]:
        counted = Counter(o.outcome for o in self.outcomes)
        return {name: counted.get(name, 0) for name in OUTCOMES}

    @property
    def added(self) -> int:
        return self.counts["added"]

    @property
    def updated(self) -> int:
        return self.counts["updated"]

    @property
    def unchanged(self) -> int:
        return self.counts["unchanged"]

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    @property
    def changed(self) -> int:
        return self.added + self.updated

    def failures(self) -> list[BudgetLineOutcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]

    def summary(self) -> str:
        counts = self.counts
        mode = "dry run, nothing posted: " if self.dry_run else ""
        return (
            f"{self.product_line} budget write-back of version {self.version!r} ({mode}"
            f"{counts['added']} added, {counts['updated']} updated, {counts['unchanged']} unchanged, "
            f"{counts['failed']} failed)"
        )


def quantize(amount: Decimal, decimals: int | None) -> Decimal:
    """Round half up to the precision the target stores, so a rerun compares equal."""
    if decimals is None:
        return amount
    return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


async def iterate(lines: BudgetLines) -> AsyncIterator[BudgetLine]:
    """Iterate a sync or async iterable of budget lines."""
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line


def check_version(line: BudgetLine, version: str) -> str | None:
    """A reason to refuse ``line`` when it belongs to another version, else None."""
    if line.version and line.version != version:
        return f"line belongs to version {line.version!r}, not {version!r}"
    return None
