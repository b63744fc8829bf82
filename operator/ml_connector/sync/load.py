"""The load path of one file: rows -> CSV -> gzip chunks -> (model lock) upload -> import -> the task's result
and failure dump mapped back onto the records -> audit and reconciliation. The lock covers the upload too: the
import's data source file is shared by every run that imports into the model.

:class:`FileSender` sends one file through one import action. Memory stays flat: rows stream into chunks,
chunks stream into the upload, and the file-line -> record map (:class:`~ml_connector.sync.spill.RowRefs`)
spills to disk. Rejected lines come back from the failure dump as Anaplan's ``_Line_``; every record behind a
rejected line is audited ``rejected`` with the dump's reason and its file row (an aggregated GL row rejects
all its postings), every other record ``loaded``. A task that fails as a whole rejects every record of the
file with the task's message. In a dry run nothing is uploaded or imported: each row is checked against the
list members Anaplan will have (:class:`~ml_connector.sync.align.KnownMembers`) and audited ``skipped`` with
"would load" or "would be rejected: <why>".

:func:`add_members` adds missing dimension members: through the list's import action (the same
:class:`FileSender`), or the transactional list API when the mapping names no import.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ml_connector.anaplan import ListWriteResult, Rejection
from ml_connector.audit.store import AuditStore, EventStatus, RecordEvent
from ml_connector.records import Record
from ml_connector.sync.align import DimensionState, KnownMembers, master_event
from ml_connector.sync.anaplan_target import AnaplanTarget, ImportOutcome, ImportTarget
from ml_connector.sync.csvfile import CsvChunker, KeyedRow
from ml_connector.sync.errors import SyncConfigError
from ml_connector.sync.layouts import AggregateLayout, AnyLayout, Layout, LayoutColumn, layout_for
from ml_connector.sync.locks import ModelLock
from ml_connector.sync.mapping import Member
from ml_connector.sync.options import Tuning
from ml_connector.sync.progress import Progress
from ml_connector.sync.reconcile import Reconciler, Stage
from ml_connector.sync.result import RejectedRecord
from ml_connector.sync.spill import RowRef, RowRefs
from ml_connector.sync.timing import StageClock

_EVENT_BATCH = 1000
#: Result detail types of an import that failed as a whole because of its definition (the user's to fix).
_CONFIG_FAILURES = frozenset({"headerMismatch", "mappingParameterMissing", "mappingParameterInvalid", "fileNotFound"})


@dataclasses.dataclass
class RunContext:
    """What every file of one run shares."""

    run_id: str
    connection: str
    audit: AuditStore
    anaplan: AnaplanTarget | None
    lock: ModelLock
    progress: Progress
    stages: StageClock
    reconciler: Reconciler
    tuning: Tuning
    dry_run: bool = False
    known: KnownMembers | None = None
    lock_wait: float = 0.0


@dataclasses.dataclass
class FileTally:
    """Counts of one flow (several files may add to it)."""

    loaded: int = 0
    rejected: int = 0
    skipped: int = 0
    rows: int = 0
    chunks: int = 0
    bytes_sent: int = 0
    #: dry run: records that would load / would be rejected (all of them are counted as skipped)
    would_load: int = 0
    would_reject: int = 0
    rejections: list[RejectedRecord] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    config_problems: list[str] = dataclasses.field(default_factory=list)
    #: natural key -> reason of rejected records, kept only when asked (dimension members: few)
    rejected_keys: dict[str, str] = dataclasses.field(default_factory=dict)

    def note_rejection(self, record: RejectedRecord, limit: int) -> None:
        if len(self.rejections) < limit:
            self.rejections.append(record)


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if value is None or value == "":
        return Decimal(0)
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return Decimal(0)


def row_tally(layout: AnyLayout, values: Mapping[str, object]) -> tuple[str, str, Decimal, int]:
    """(account, period, amount, records) of one file row, from its column values (a row or a dump echo)."""
    if isinstance(layout, AggregateLayout):
        amount = _decimal(values.get(layout.amount_column))
        try:
            count = int(str(values.get(layout.count_column, "1")).strip() or "1")
        except ValueError:
            count = 1
    else:
        amount = _decimal(values.get("Amount"))
        count = 1
    return str(values.get("Account", "") or ""), str(values.get("Period", "") or ""), amount, count


def _reason(rejection: Rejection) -> str:
    where = f" (column {rejection.column!r})" if rejection.column else ""
    return f"{rejection.message}{where}"


class FileSender:
    """Sends one file of ``layout`` rows through ``target`` (an import action and its data source file)."""

    def __init__(
        self,
        ctx: RunContext,
        *,
        flow: str,
        layout: AnyLayout,
        target: ImportTarget | None,
        tally: FileTally,
        reconcile: bool = True,
        keep_rejected: bool = False,
    ) -> None:
        self.ctx = ctx
        self.flow = flow
        self.layout = layout
        self.target = target
        self.tally = tally
        self.reconcile = reconcile
        self.keep_rejected = keep_rejected
        self.entity = layout.entity
        self.header = layout.header
        #: (account, period) -> (amount, records) sent: moves everything to "rejected" if the task fails whole
        self._sent: dict[tuple[str, str], tuple[Decimal, int]] = {}
        self._events: list[RecordEvent] = []

    async def _event(self, event: RecordEvent) -> None:
        self._events.append(event)
        if len(self._events) >= _EVENT_BATCH:
            await self._flush_events()

    async def _flush_events(self) -> None:
        if self._events:
            events, self._events = self._events, []
            await self.ctx.audit.record(events)

    async def _observed(self, rows: AsyncIterable[KeyedRow]) -> AsyncIterator[KeyedRow]:
        ctx = self.ctx
        header = self.header
        async for row in rows:
            values = row.values if isinstance(row.values, Mapping) else dict(zip(header, row.values, strict=False))
            account, period, amount, count = row_tally(self.layout, values)
            self.tally.rows += 1
            ctx.progress.advance(self.flow, "rows")
            if ctx.dry_run:
                reasons = ctx.known.reasons(self.layout.name, values) if ctx.known is not None else []
                await self._dry_outcome(row.refs, reasons, account, period, amount, count)
            elif self.reconcile:
                ctx.reconciler.add(self.flow, "loaded", account=account, period=period, amount=amount, count=count)
                sent_amount, sent_count = self._sent.get((account, period), (Decimal(0), 0))
                self._sent[(account, period)] = (sent_amount + amount, sent_count + count)
            yield row

    async def _dry_outcome(
        self, refs: Any, reasons: list[str], account: str, period: str, amount: Decimal, count: int
    ) -> None:
        stage: Stage = "rejected" if reasons else "loaded"
        if self.reconcile:
            self.ctx.reconciler.add(self.flow, stage, account=account, period=period, amount=amount, count=count)
        reason = "dry run: would be rejected: " + "; ".join(reasons) if reasons else "dry run: would load"
        for ref in refs:
            self.tally.skipped += 1
            if reasons:
                self.tally.would_reject += 1
            else:
                self.tally.would_load += 1
            if reasons:
                self.tally.note_rejection(RejectedRecord(ref.natural_key, reason), self.ctx.tuning.sample_rejections)
            await self._event(self._outcome(ref, EventStatus.SKIPPED, None, reason))

    def _outcome(self, ref: RowRef, status: EventStatus, line: int | None, reason: str | None) -> RecordEvent:
        return RecordEvent(
            self.ctx.run_id,
            self.flow,
            self.entity,
            ref.natural_key,
            ref.content_hash,
            status,
            file_row=line,
            reason=reason,
        )

    async def send(self, rows: AsyncIterable[KeyedRow]) -> None:
        """Write, upload and import the file; audit and reconcile every record's outcome."""
        ctx, tuning = self.ctx, self.ctx.tuning
        refs = RowRefs(threshold=tuning.spill_threshold, directory=tuning.spill_dir)
        chunker = CsvChunker(
            self.layout.csv_columns,
            chunk_size=tuning.chunk_size,
            compress=True,
            compresslevel=tuning.compresslevel,
            refs=refs,
        )
        observed = self._observed(rows)
        with ctx.stages.stage("transform"):
            first = await anext(observed, None)
        if first is None:  # nothing to send (everything skipped): no upload, no task, no lock
            await refs.close()
            return

        async def all_rows() -> AsyncIterator[KeyedRow]:
            yield first
            async for row in observed:
                yield row

        chunks = ctx.stages.iterate(chunker.chunks(all_rows()), "transform")
        try:
            if ctx.dry_run or ctx.anaplan is None or self.target is None:
                async for _ in chunks:
                    pass
                await self._flush_events()
                return
            anaplan, target = ctx.anaplan, self.target
            # The data source file is shared by every run importing into this model: it is written and imported
            # under the model lock, or another run's upload would change it under this run's import.
            async with hold_model(ctx, self.flow):
                await ctx.progress.step(f"uploading {target.file_name}", flow=self.flow, stage="upload")
                with ctx.stages.stage("upload"):
                    stats = await anaplan.upload(target.file_id, chunks, concurrency=tuning.upload_concurrency)
                self.tally.chunks += stats.chunks
                self.tally.bytes_sent += stats.sent_bytes
                await ctx.progress.step(f"running import {target.name!r}", flow=self.flow, stage="import")
                with ctx.stages.stage("import"):
                    outcome = await anaplan.run_import(target.import_id)
            await self._outcomes(chunker, outcome)
        finally:
            await refs.close()

    async def _outcomes(self, chunker: CsvChunker, outcome: ImportOutcome) -> None:
        ctx, tally = self.ctx, self.tally
        limit = ctx.tuning.sample_rejections
        target = self.target
        assert target is not None
        whole: str | None = None
        if outcome.failed_whole:
            summary = outcome.result.summary() or "failed without details"
            whole = f"import {target.name!r} failed as a whole: {summary}"
            kinds = {d.type for d in outcome.result.details if d.type}
            (tally.config_problems if kinds & _CONFIG_FAILURES else tally.problems).append(f"flow {self.flow}: {whole}")
        elif outcome.result.dump_error is not None:
            error = outcome.result.dump_error
            whole = f"import {target.name!r} rejected rows but its failure dump could not be read ({error})"
            tally.problems.append(f"flow {self.flow}: {whole}; outcome of its records unknown, they will be sent again")
        elif outcome.result.failure_dump_available and not outcome.rejections and not outcome.warnings:
            whole = f"import {target.name!r} announced a failure dump, but the dump holds no readable row"
            tally.problems.append(f"flow {self.flow}: {whole}; outcome of its records unknown, they will be sent again")
        rejected = {r.row: r for r in outcome.rejections}
        warned = {r.row: r for r in outcome.warnings}
        untraceable = [r for r in outcome.rejections if r.row <= 1]
        if untraceable and whole is None:
            # A dump that does not say which lines it rejected (corrupt, or not a dump at all): no record of the
            # file can be called loaded. They are all rejected with this reason, and sent again by the next run.
            first = _reason(untraceable[0])
            whole = (
                f"import {target.name!r}: {len(untraceable)} rejection(s) of its failure dump without a usable file"
                f" line ({first})"
            )
            tally.problems.append(f"flow {self.flow}: {whole}; outcome of its records unknown, they will be sent again")
        if self.reconcile:
            if whole is not None:
                for (account, period), (amount, count) in self._sent.items():
                    ctx.reconciler.move(
                        self.flow, "loaded", "rejected", account=account, period=period, amount=amount, count=count
                    )
            else:
                for rejection in rejected.values():
                    account, period, amount, count = row_tally(self.layout, rejection.values)
                    ctx.reconciler.move(
                        self.flow, "loaded", "rejected", account=account, period=period, amount=amount, count=count
                    )
        async for line, ref in chunker.refs.items():
            rejection = rejected.get(line)
            if whole is not None or rejection is not None:
                reason = whole if whole is not None else _reason(rejection)  # type: ignore[arg-type]
                tally.rejected += 1
                tally.note_rejection(RejectedRecord(ref.natural_key, reason, line), limit)
                if self.keep_rejected:
                    tally.rejected_keys[ref.natural_key] = reason
                await self._event(self._outcome(ref, EventStatus.REJECTED, line, reason))
            else:
                warning = warned.get(line)
                tally.loaded += 1
                await self._event(
                    self._outcome(
                        ref, EventStatus.LOADED, line, f"loaded with a warning: {_reason(warning)}" if warning else None
                    )
                )
        await self._flush_events()


@contextlib.asynccontextmanager
async def hold_model(ctx: RunContext, flow: str) -> AsyncIterator[None]:
    """Hold the model lock for the block; the wait is reported and summed."""
    anaplan = ctx.anaplan
    assert anaplan is not None

    async def on_wait(holder: str) -> None:
        await ctx.progress.waiting_for_lock(holder, flow=flow)

    async with ctx.lock.hold(anaplan.model_id, on_wait=on_wait) as grant:
        ctx.lock_wait += grant.waited
        yield


async def run_task(ctx: RunContext, flow: str, what: str, task: Callable[[], Any]) -> Any:
    """Run one Anaplan task holding the model lock (and only then); the wait is reported and summed."""
    async with hold_model(ctx, flow):
        await ctx.progress.step(what, flow=flow, stage="import")
        with ctx.stages.stage("import"):
            return await task()


def named(layout: AnyLayout, names: Mapping[str, str]) -> Layout[Any]:
    """``layout`` (a member list's) with its ``Name`` column taken from ``names`` (by natural key = code)."""
    if not isinstance(layout, Layout):
        raise SyncConfigError(f"{layout.file_name}: a list import needs a row-per-member layout")

    def name_of(column: LayoutColumn[Any]) -> Callable[[Any], object]:
        return lambda record: names.get(record.natural_key, column.value(record))

    columns = tuple(LayoutColumn(c.name, name_of(c), c.kind) if c.name == "Name" else c for c in layout.columns)
    return dataclasses.replace(layout, columns=columns)


async def records_in_order(records: Sequence[Record]) -> AsyncIterator[Record]:
    for record in records:
        yield record


async def add_members(ctx: RunContext, state: DimensionState, tally: FileTally) -> None:
    """Add the members of ``state`` missing from its Anaplan list (policy Add); not in a dry run.

    Audited under the dimension's entity: ``extracted`` (with payload) then ``loaded`` or ``rejected``.
    """
    target_codes = {m.code for m in state.target}
    missing = [state.source[code] for code in sorted(state.source) if code not in target_codes]
    if not missing:
        return
    flow = state.entity
    await ctx.audit.record(master_event(r, run_id=ctx.run_id, status=EventStatus.EXTRACTED) for r in missing)
    if ctx.dry_run or ctx.anaplan is None:
        reason = f"dry run: would be added to Anaplan list {state.list_name!r}"
        tally.skipped += len(missing)
        await ctx.audit.record(
            master_event(r, run_id=ctx.run_id, status=EventStatus.SKIPPED, reason=reason) for r in missing
        )
        return
    anaplan = ctx.anaplan
    if state.import_action:
        try:
            target = await anaplan.find_import(state.import_action, flow=flow)
        except Exception as exc:
            raise SyncConfigError(
                f"mappings: import action {state.import_action!r} for list {state.list_name!r}: {exc}"
            ) from None
        layout = named(layout_for(state.entity), state.names)
        sender = FileSender(
            ctx, flow=flow, layout=layout, target=target, tally=tally, reconcile=False, keep_rejected=True
        )
        await sender.send(layout.rows(records_in_order(missing)))
        state.failed.update(tally.rejected_keys)
        state.added.extend(r.natural_key for r in missing if r.natural_key not in tally.rejected_keys)
        return
    members = [m for m in state.members() if m.code not in target_codes]
    todo: list[Member] = []

    async def add_still_missing() -> ListWriteResult:
        # Read the list again under the lock: another run may have added some of them since alignment read it.
        present = {m.code for m in await anaplan.list_members(state.list_id)}
        todo.extend(m for m in members if m.code not in present)
        return await anaplan.add_list_members(state.list_id, todo) if todo else ListWriteResult()

    result = await run_task(
        ctx, flow, f"adding {len(members)} member(s) to list {state.list_name!r}", add_still_missing
    )
    failures = {f.request_index: f for f in result.failures}
    index_of = {m.code: index for index, m in enumerate(todo)}
    events: list[RecordEvent] = []
    for member, record in zip(members, missing, strict=True):
        if member.code not in index_of:
            tally.skipped += 1
            events.append(
                master_event(
                    record,
                    run_id=ctx.run_id,
                    status=EventStatus.SKIPPED,
                    reason=f"already in Anaplan list {state.list_name!r} (added since alignment read the list)",
                )
            )
            continue
        failure = failures.get(index_of[member.code])
        if failure is None:
            tally.loaded += 1
            state.added.append(member.code)
            events.append(
                master_event(
                    record,
                    run_id=ctx.run_id,
                    status=EventStatus.LOADED,
                    reason=f"added to Anaplan list {state.list_name!r}",
                )
            )
        else:
            reason = f"{failure.failure_type or 'failed'}: {failure.failure_message_details or 'not added'}"
            tally.rejected += 1
            state.failed[member.code] = reason
            tally.note_rejection(RejectedRecord(record.natural_key, reason), ctx.tuning.sample_rejections)
            events.append(master_event(record, run_id=ctx.run_id, status=EventStatus.REJECTED, reason=reason))
    await ctx.audit.record(events)
