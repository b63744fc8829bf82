"""Write-back: an Anaplan export of approved budget (or forecast) figures, parsed and posted to Infor GL budgets.

Run the export (holding the model lock), download its chunks, parse the rows as they arrive
(``Account,Cost Center,Period,Version,Amount`` in any order; other or missing columns stop the run with
both lists named), turn each row into a :class:`~ml_connector.records.BudgetLine` and hand the stream to
the product line's ``write_budget``, which queries before it posts (added / updated / unchanged / failed):
a second run posts nothing. A row with a bad number or period is rejected in the audit (the others go on);
rows of another version than the configured one are skipped. Every line's outcome is audited under the
flow ``budget_lines``.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ml_connector.audit.store import EventStatus, RecordEvent
from ml_connector.infor import BudgetWriteReport, ProductLine
from ml_connector.records import BudgetLine
from ml_connector.spec import WritebackSpec
from ml_connector.sync.errors import SyncConfigError
from ml_connector.sync.load import RunContext, run_task
from ml_connector.sync.result import RejectedRecord, WritebackResult

FLOW = "budget_lines"
EXPECTED_COLUMNS: tuple[str, ...] = ("Account", "Cost Center", "Period", "Version", "Amount")
_MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
_ISO = re.compile(r"^(\d{4})-(\d{2})(?:-\d{2})?$")
_NAMED = re.compile(r"^([A-Za-z]{3})[ -](\d{2}|\d{4})$")


class ExportFormatError(SyncConfigError):
    """The export's columns are not the expected ones."""


def parse_period(text: str) -> str:
    """``2025-01``, ``2025-01-31``, ``Jan 25`` or ``Jan 2025`` -> ``2025-01``; ValueError otherwise."""
    value = text.strip()
    iso = _ISO.match(value)
    if iso:
        year, month = int(iso.group(1)), int(iso.group(2))
    else:
        named = _NAMED.match(value)
        if not named or named.group(1).lower() not in _MONTHS:
            raise ValueError(f"period {value!r} is not YYYY-MM or a month such as 'Jan 25'")
        month = _MONTHS[named.group(1).lower()]
        year = int(named.group(2))
        year = year + 2000 if year < 100 else year
    if not 1 <= month <= 12:
        raise ValueError(f"period {value!r} has no month {month}")
    return f"{year:04d}-{month:02d}"


def parse_amount(text: str) -> Decimal:
    value = text.strip().replace(",", "")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"amount {text.strip()!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"amount {text.strip()!r} is not a finite number")
    return amount


@dataclass(frozen=True)
class ExportRow:
    line: int  # line of the export file (the header is line 1)
    values: dict[str, str]


async def export_rows(chunks: AsyncIterable[bytes], *, source: str) -> AsyncIterator[ExportRow]:
    """Rows of a CSV export streamed chunk by chunk (a chunk may end inside a line or a quoted field).

    The header must hold exactly :data:`EXPECTED_COLUMNS` (any order), else :class:`ExportFormatError`.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    pending = ""
    header: list[str] | None = None
    line = 0

    def records(text: str, final: bool) -> tuple[list[str], str]:
        out: list[str] = []
        start = 0
        parity = 0
        for index, char in enumerate(text):
            if char == '"':
                parity ^= 1
            elif char == "\n" and parity == 0:
                out.append(text[start : index + 1])
                start = index + 1
        rest = text[start:]
        if final and rest.strip():
            out.append(rest)
            rest = ""
        return out, rest

    async def lines() -> AsyncIterator[str]:
        nonlocal pending
        async for chunk in chunks:
            complete, pending = records(pending + decoder.decode(chunk), final=False)
            for record in complete:
                yield record
        complete, pending = records(pending + decoder.decode(b"", final=True), final=True)
        for record in complete:
            yield record

    async for text in lines():
        fields = next(csv.reader([text]), [])
        line += 1
        if not fields or all(not f.strip() for f in fields):
            continue
        if header is None:
            header = [f.strip() for f in fields]
            check_header(header, source)
            continue
        yield ExportRow(line, dict(zip(header, fields, strict=False)))
    if header is None:
        raise ExportFormatError(
            f"{source}: the export is empty (no header row); expected {', '.join(EXPECTED_COLUMNS)}"
        )


def check_header(found: Sequence[str], source: str) -> None:
    missing = [c for c in EXPECTED_COLUMNS if c not in found]
    unexpected = [c for c in found if c not in EXPECTED_COLUMNS]
    if missing or unexpected or len(found) != len(set(found)):
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected {', '.join(unexpected)}")
        if len(found) != len(set(found)):
            problems.append("duplicate column names")
        raise ExportFormatError(
            f"{source}: the export's columns do not fit the write-back ({'; '.join(problems)}): found"
            f" {', '.join(found) or '(none)'}; expected {', '.join(EXPECTED_COLUMNS)}"
        )


def budget_line(row: ExportRow, version: str) -> BudgetLine:
    """The budget line of one export row (``version`` is the configured one); ValueError says what is wrong."""
    values = row.values
    account = values.get("Account", "").strip()
    cost_center = values.get("Cost Center", "").strip()
    if not account:
        raise ValueError("empty Account")
    return BudgetLine(
        version=version,
        account=account,
        cost_center=cost_center,
        period=parse_period(values.get("Period", "")),
        currency="",
        amount=parse_amount(values.get("Amount", "")),
    )


def _row_key(row: ExportRow, version: str) -> str:
    v = row.values
    parts = (version, v.get("Account", "").strip(), v.get("Cost Center", "").strip(), v.get("Period", "").strip())
    return "/".join(parts) if any(parts[1:]) else f"{version}/row-{row.line}"


def _amount_or_zero(row: ExportRow) -> Decimal:
    try:
        return parse_amount(row.values.get("Amount", ""))
    except ValueError:
        return Decimal(0)


def _hash(row: ExportRow) -> str:
    return hashlib.sha256("\x1f".join(f"{k}={row.values[k]}" for k in sorted(row.values)).encode()).hexdigest()


async def run_writeback(
    ctx: RunContext, product: ProductLine, spec: WritebackSpec, *, dry_run: bool, target: str
) -> WritebackResult:
    """Export, parse, post (query before post); every line audited, reconciled, counted."""
    anaplan = ctx.anaplan
    assert anaplan is not None
    export = await anaplan.find_export(spec.export_action)
    await run_task(ctx, FLOW, f"running export {export.name!r}", lambda: anaplan.run_export(export.id))
    version = spec.version
    limit = ctx.tuning.sample_rejections
    rejections: list[RejectedRecord] = []
    counts = {"rows": 0, "rejected": 0, "skipped": 0}
    run_id = ctx.run_id
    await ctx.progress.step(f"reading the output of export {export.name!r}", flow=FLOW, stage="download")

    async def lines() -> AsyncIterator[BudgetLine]:
        rows = export_rows(
            ctx.stages.iterate(anaplan.download(export.id), "download"), source=f"export {export.name!r} ({export.id})"
        )
        async for row in rows:
            counts["rows"] += 1
            ctx.progress.advance(FLOW, "rows")
            row_version = row.values.get("Version", "").strip()
            if row_version and row_version != version:
                counts["skipped"] += 1
                key, digest = _row_key(row, row_version), _hash(row)
                reason = f"version {row_version!r} is not the configured write-back version {version!r}"
                account = row.values.get("Account", "").strip()
                ctx.reconciler.add(FLOW, "source", account=account, amount=_amount_or_zero(row), count=1)
                ctx.reconciler.add(FLOW, "skipped", account=account, amount=_amount_or_zero(row), count=1)
                await ctx.audit.record(
                    [
                        RecordEvent(run_id, FLOW, FLOW, key, digest, EventStatus.EXTRACTED),
                        RecordEvent(
                            run_id, FLOW, FLOW, key, digest, EventStatus.SKIPPED, file_row=row.line, reason=reason
                        ),
                    ]
                )
                continue
            try:
                line = budget_line(row, version)
            except ValueError as exc:
                counts["rejected"] += 1
                key, digest = _row_key(row, version), _hash(row)
                reason = f"export line {row.line}: {exc}"
                if len(rejections) < limit:
                    rejections.append(RejectedRecord(key, reason, row.line))
                ctx.reconciler.add(FLOW, "source", account=row.values.get("Account", "").strip(), count=1)
                ctx.reconciler.add(FLOW, "rejected", account=row.values.get("Account", "").strip(), count=1)
                await ctx.audit.record(
                    [
                        RecordEvent(run_id, FLOW, FLOW, key, digest, EventStatus.EXTRACTED),
                        RecordEvent(
                            run_id, FLOW, FLOW, key, digest, EventStatus.REJECTED, file_row=row.line, reason=reason
                        ),
                    ]
                )
                continue
            ctx.reconciler.add_record(FLOW, "source", line)
            await ctx.audit.record(
                [
                    RecordEvent.of(
                        line,
                        run_id=run_id,
                        flow=FLOW,
                        status=EventStatus.EXTRACTED,
                        with_payload=True,
                        file_row=row.line,
                    )
                ]
            )
            yield line

    await ctx.progress.step(
        ("planning" if dry_run else "posting") + f" budget lines into {target}", flow=FLOW, stage="post"
    )
    with ctx.stages.stage("post"):
        report = await product.write_budget(lines(), version=version, dry_run=dry_run)
    await _audit_outcomes(ctx, report, rejections, limit)
    return WritebackResult(
        export_action=export.name,
        version=version,
        target=target,
        dry_run=dry_run,
        rows=counts["rows"],
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        failed=report.failed,
        rejected_rows=counts["rejected"],
        skipped_rows=counts["skipped"],
        notes=tuple(report.notes),
        rejections=tuple(rejections),
    )


async def _audit_outcomes(
    ctx: RunContext, report: BudgetWriteReport, rejections: list[RejectedRecord], limit: int
) -> None:
    events: list[RecordEvent] = []
    for outcome in report.outcomes:
        line = outcome.line
        previous = "absent" if outcome.previous is None else format(outcome.previous, "f")
        if outcome.outcome == "failed":
            reason = f"{outcome.target}: {outcome.reason or 'failed'}"
            status = EventStatus.REJECTED
            stage = "rejected"
            if len(rejections) < limit:
                rejections.append(RejectedRecord(line.natural_key, reason))
        elif report.dry_run:
            reason = f"dry run: would be {outcome.outcome} in {outcome.target} (now {previous})"
            status, stage = EventStatus.SKIPPED, ("skipped" if outcome.outcome == "unchanged" else "loaded")
        elif outcome.outcome == "unchanged":
            reason = f"unchanged in {outcome.target}"
            status, stage = EventStatus.SKIPPED, "skipped"
        else:
            reason = f"{outcome.outcome} in {outcome.target} (was {previous})"
            status, stage = EventStatus.LOADED, "loaded"
        ctx.reconciler.add_record(FLOW, stage, line)  # type: ignore[arg-type]
        events.append(RecordEvent.of(line, run_id=ctx.run_id, flow=FLOW, status=status, reason=reason))
        if len(events) >= 1000:
            await ctx.audit.record(events)
            events = []
    await ctx.audit.record(events)
