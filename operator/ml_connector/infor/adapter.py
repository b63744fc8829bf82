"""One interface over the Infor product lines, and the factory that opens one.

``read(entity)`` yields canonical records (:mod:`ml_connector.records`) and, in place of rows that
cannot be mapped, :class:`~ml_connector.infor.mapping.SourceRecordError` values: the stream never
stops for a bad row and never drops one silently. ``write_budget`` posts approved budget lines
(query before post; ``dry_run`` reports the plan).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, Self, runtime_checkable

import httpx

from ml_connector.infor.budgets import BudgetLines, BudgetWriteReport
from ml_connector.infor.client import IonApiClient
from ml_connector.infor.errors import UnsupportedEntityError
from ml_connector.infor.ionapi import IonApiCredentials
from ml_connector.infor.mapping import SourceRecordError
from ml_connector.infor.options import FsmOptions, M3Options, ProductOptions, SyteLineOptions
from ml_connector.records import BudgetLine, Entity, Record, check_period

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

ProductLineKind = Literal["M3", "SyteLine", "FSM", "LN"]
PRODUCT_LINES: tuple[ProductLineKind, ...] = ("M3", "SyteLine", "FSM", "LN")

Extracted = Record | SourceRecordError


@runtime_checkable
class ProductLine(Protocol):
    """What the sync engine needs from an Infor product line."""

    name: ClassVar[ProductLineKind]
    supported: ClassVar[frozenset[Entity]]

    def read(
        self, entity: Entity, *, changed_since: dt.datetime | None = None, periods: Collection[str] | None = None
    ) -> AsyncIterator[Extracted]:
        """Records of ``entity`` (changed at or after ``changed_since`` minus the overlap, when given;
        ``periods``: only records of those ``YYYY-MM`` accounting periods, for entities that have one)."""
        ...

    def read_budget(
        self, version: str, *, periods: Collection[str] | None = None
    ) -> AsyncIterator[BudgetLine | SourceRecordError]:
        """The budget figures of ``version`` held in Infor (``periods``: ``YYYY-MM`` filter)."""
        ...

    async def write_budget(self, lines: BudgetLines, *, version: str, dry_run: bool = False) -> BudgetWriteReport:
        """Add, update or skip each line after querying what is there; ``dry_run`` posts nothing."""
        ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class BaseProductLine:
    """Shared plumbing: the client's lifetime and the supported-entity check."""

    name: ClassVar[ProductLineKind]
    supported: ClassVar[frozenset[Entity]] = frozenset()
    budget_supported: ClassVar[bool] = False

    def __init__(self, client: IonApiClient) -> None:
        self.client = client

    def check(self, entity: Entity) -> None:
        if entity not in self.supported or entity == "budget_lines":
            raise UnsupportedEntityError(self.name, entity, self.supported - {"budget_lines"})

    def read(
        self, entity: Entity, *, changed_since: dt.datetime | None = None, periods: Collection[str] | None = None
    ) -> AsyncGenerator[Extracted, None]:
        self.check(entity)
        wanted = period_filter(entity, periods)
        stream = self._read(entity, changed_since, wanted)
        return stream if wanted is None else _in_periods(stream, wanted)

    def _read(
        self, entity: Entity, changed_since: dt.datetime | None, periods: frozenset[str] | None = None
    ) -> AsyncGenerator[Extracted, None]:
        """The product's read; ``periods`` is a hint it may push down to the server (the base class filters
        the result again, so a product line that ignores it is still correct)."""
        raise NotImplementedError

    def read_budget(
        self, version: str, *, periods: Collection[str] | None = None
    ) -> AsyncIterator[BudgetLine | SourceRecordError]:
        raise UnsupportedEntityError(self.name, "budget_lines (read)", self.supported - {"budget_lines"})

    async def write_budget(self, lines: BudgetLines, *, version: str, dry_run: bool = False) -> BudgetWriteReport:
        raise UnsupportedEntityError(self.name, "budget_lines (write-back)", self.supported - {"budget_lines"})

    async def aclose(self) -> None:
        """Revoke the token and close the connections."""
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


#: Entities whose records carry an accounting ``period`` (the ``periods`` filter of ``read``).
PERIOD_ENTITIES: frozenset[Entity] = frozenset({"gl_postings", "supplier_invoices", "payments"})


def period_filter(entity: Entity, periods: Collection[str] | None) -> frozenset[str] | None:
    """The checked ``periods`` filter for ``entity`` (None: no filter); ValueError names what is wrong."""
    if periods is None:
        return None
    if entity not in PERIOD_ENTITIES:
        raise ValueError(
            f"a period filter applies to {', '.join(sorted(PERIOD_ENTITIES))}, not to {entity!r} (it has no period)"
        )
    if isinstance(periods, str):
        raise TypeError("periods must be a collection of 'YYYY-MM' strings, not one string")
    return frozenset(check_period(p) for p in periods)


def period_ranges(periods: Collection[str]) -> list[tuple[dt.date, dt.date]]:
    """Contiguous runs of ``YYYY-MM`` periods as (first day, last day) date ranges, in order."""
    months = sorted({int(p[:4]) * 12 + int(p[5:7]) - 1 for p in periods})
    ranges: list[tuple[int, int]] = []
    for month in months:
        if ranges and ranges[-1][1] == month - 1:
            ranges[-1] = (ranges[-1][0], month)
        else:
            ranges.append((month, month))
    out = []
    for first, last in ranges:
        start = dt.date(first // 12, first % 12 + 1, 1)
        after = last + 1
        end = dt.date(after // 12, after % 12 + 1, 1) - dt.timedelta(days=1)
        out.append((start, end))
    return out


async def _in_periods(
    stream: AsyncGenerator[Extracted, None], periods: frozenset[str]
) -> AsyncGenerator[Extracted, None]:
    try:
        async for item in stream:
            if isinstance(item, SourceRecordError) or getattr(item, "period", None) in periods:
                yield item
    finally:
        await stream.aclose()


def open_product_line(
    kind: ProductLineKind,
    credentials: IonApiCredentials,
    options: ProductOptions | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> ProductLine:
    """Open the adapter for ``kind`` on the tenant of ``credentials`` (use ``async with``).

    ``options`` must be the product's options class (:class:`M3Options`, :class:`SyteLineOptions`,
    :class:`FsmOptions`) or None for defaults. LN raises
    :class:`~ml_connector.infor.errors.ProductLineNotSupportedError` (see :mod:`ml_connector.infor.ln`).
    """
    if kind == "LN":
        from ml_connector.infor.ln import open_ln

        open_ln(credentials)
    expected: dict[str, type[ProductOptions]] = {"M3": M3Options, "SyteLine": SyteLineOptions, "FSM": FsmOptions}
    if kind not in expected:
        raise ValueError(f"unknown Infor product line {kind!r}; known: {', '.join(PRODUCT_LINES)}")
    options_type = expected[kind]
    if options is None:
        options = options_type()
    elif not isinstance(options, options_type):
        raise TypeError(f"{kind} needs {options_type.__name__}, got {type(options).__name__}")
    client = IonApiClient(
        credentials, options.client, transport=transport, clock=clock, **({"sleep": sleep} if sleep else {})
    )
    if kind == "M3":
        from ml_connector.infor.m3 import M3ProductLine

        assert isinstance(options, M3Options)
        return M3ProductLine(client, options)
    if kind == "SyteLine":
        from ml_connector.infor.syteline import SyteLineProductLine

        assert isinstance(options, SyteLineOptions)
        return SyteLineProductLine(client, options)
    from ml_connector.infor.fsm import FsmProductLine

    assert isinstance(options, FsmOptions)
    return FsmProductLine(client, options)
