"""One sync run, the same for the CLI and the Kubernetes Job: :func:`run_sync`.

A **Load** run:

1. opens both sides (one token per side for the whole run) and finds the Anaplan objects by name: the
   workspace and model, each flow's import action and its data source file, the dimension lists;
2. aligns dimensions *before* any actual is loaded: Infor's accounts and cost centers (and suppliers when a
   supplier-keyed flow runs) against the Anaplan lists; missing members are added (policy ``Add``: through
   the list's import action, or the transactional API) or the run stops and lists them with the records and
   amounts that use them (policy ``Stop``);
3. loads each flow: watermark (``changed_since = watermark - overlap``) -> extract -> content-hash dedupe
   against the last loaded hash per natural key -> layout -> CSV -> gzip chunks -> upload -> model lock ->
   import -> the failure dump mapped back onto the records -> audit -> the watermark advances to the latest
   source change stamp seen (never the wall clock), only once the import succeeded.
   GL postings load as aggregates per (account, cost center, period) into a module whose cells an import
   *replaces*; an incremental GL run therefore reloads every affected cell whole: a probe reads the postings
   changed since the watermark, the periods where one of them differs from what was loaded are read again in
   full, aggregated and loaded (so a rerun neither doubles nor drops anything);
4. reconciles counts and amounts per flow, account and period (source vs loaded vs rejected vs skipped) and
   checks them against the audit trail.

A **dry run** extracts and aligns, uploads, imports, adds and posts nothing, and reports the unmapped members,
the rows that would be rejected and the totals that would load. A **replay** (``replay_of``) re-sends the
payloads an earlier run stored (``only_failed``: just its rejected records) through the same load path. A
**WriteBack** run exports approved figures from Anaplan and posts them to Infor budgets
(:mod:`ml_connector.sync.writeback`).

Errors that are the user's raise :class:`~ml_connector.sync.errors.SyncConfigError` (with the partial
:class:`~ml_connector.sync.result.RunResult`); transient ones bubble as raised. Either way the run is recorded
as failed in the audit store first. Nothing here logs, stores or raises a credential.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any, Literal

from ml_connector.anaplan import AnaplanError
from ml_connector.audit.replay import replay_records, replayed_event
from ml_connector.audit.store import AuditError, AuditStore, RecordEvent, RunInfo, RunStatus, utcnow
from ml_connector.infor import ProductLine, SourceRecordError
from ml_connector.records import Record, content_hash
from ml_connector.spec import FlowSpec, PeriodRange, SyncConnection
from ml_connector.sync.align import (
    DimensionState,
    KnownMembers,
    dimensions_for,
    read_dimension,
    source_error_event,
    summarize,
)
from ml_connector.sync.anaplan_target import AnaplanTarget, ImportTarget
from ml_connector.sync.credentials import Credentials
from ml_connector.sync.dedupe import Deduplicator, WatermarkTracker, read_window
from ml_connector.sync.errors import SyncConfigError, SyncError, SyncRunError, as_config_error
from ml_connector.sync.extract import open_infor, read_records, window_periods
from ml_connector.sync.layouts import AnyLayout, Hashed, LayoutError, layout_for
from ml_connector.sync.load import FileSender, FileTally, RunContext, add_members
from ml_connector.sync.locks import ModelLock
from ml_connector.sync.mapping import DIMENSION_FIELDS, DIMENSION_LABELS, UsageCounter
from ml_connector.sync.options import Tuning
from ml_connector.sync.progress import Progress
from ml_connector.sync.reconcile import Reconciler, check_against_audit
from ml_connector.sync.result import FlowResult, RejectedRecord, RunResult, WritebackResult
from ml_connector.sync.spill import SeenHashes
from ml_connector.sync.timing import StageClock, TimedAuditStore
from ml_connector.sync.writeback import FLOW as WRITEBACK_FLOW
from ml_connector.sync.writeback import run_writeback

log = logging.getLogger(__name__)

Direction = Literal["Load", "WriteBack"]
_PROBE_BATCH = 1000


def connection_key(connection: SyncConnection) -> str:
    """How the audit store names a connection (watermarks and last loaded hashes are kept per connection)."""
    return f"{connection.metadata.namespace or 'default'}/{connection.metadata.name}"


def new_run_id(connection: SyncConnection, now: dt.datetime) -> str:
    return f"{connection.metadata.name}-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclasses.dataclass
class _FlowState:
    """What a flow got done, while it runs (turned into a FlowResult at the end)."""

    spec: FlowSpec | None
    entity: str
    tally: FileTally = dataclasses.field(default_factory=FileTally)
    target: ImportTarget | None = None
    extracted: int = 0
    replayed: int = 0
    dedupe_skipped: int = 0
    watermark: dt.datetime | None = None
    periods: tuple[str, ...] = ()
    message: str = ""

    def result(self) -> FlowResult:
        t = self.tally
        return FlowResult(
            flow=self.entity,
            entity=self.entity,
            import_action=self.target.name if self.target else "",
            file=self.target.file_name if self.target else "",
            extracted=self.extracted,
            replayed=self.replayed,
            loaded=t.loaded,
            rejected=t.rejected,
            skipped=t.skipped + self.dedupe_skipped,
            rows=t.rows,
            chunks=t.chunks,
            bytes_sent=t.bytes_sent,
            would_load=t.would_load,
            would_reject=t.would_reject,
            watermark=self.watermark,
            periods=self.periods,
            rejections=tuple(t.rejections),
            message=self.message,
        )


class _Run:
    """The state of one run and its steps (see the module docstring)."""

    def __init__(
        self,
        connection: SyncConnection,
        *,
        direction: Direction,
        flows: Sequence[str] | None,
        dry_run: bool,
        run_id: str,
        replay_of: str | None,
        only_failed: bool,
        period: PeriodRange | None,
        credentials: Credentials,
        audit: AuditStore,
        lock: ModelLock,
        progress: Progress,
        clock: Callable[[], dt.datetime],
        tuning: Tuning,
    ) -> None:
        self.connection = connection
        self.spec = connection.spec
        self.direction = direction
        self.requested_flows = flows
        self.dry_run = dry_run
        self.run_id = run_id
        self.replay_of = replay_of
        self.only_failed = only_failed
        self.period = period
        self.credentials = credentials
        self.lock = lock
        self.progress = progress
        self.clock = clock
        self.tuning = tuning
        self.key = connection_key(connection)
        self.stages = StageClock()
        self.audit = TimedAuditStore(audit, self.stages)
        self.reconciler = Reconciler()
        self.usage = UsageCounter()
        self.flows: dict[str, _FlowState] = {}
        self.dimensions: list[DimensionState] = []
        self.writeback: WritebackResult | None = None
        self.anaplan: AnaplanTarget | None = None
        self.product: ProductLine | None = None
        self.ctx: RunContext | None = None
        self.step = "starting"
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.started_at = clock()

    # ------------------------------------------------------------------ selection

    def selected_flows(self, replayed: Sequence[str] = ()) -> list[FlowSpec]:
        known: dict[str, FlowSpec] = {f.entity: f for f in self.spec.flows}
        wanted = list(self.requested_flows or replayed or known)
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise SyncConfigError(
                f"flow(s) {', '.join(unknown)} not in SyncConnection {self.connection.metadata.name!r}"
                f" (it has {', '.join(known)})"
            )
        return [known[name] for name in wanted]

    # ------------------------------------------------------------------ result

    def result(self, status: Literal["Succeeded", "Failed"], message: str) -> RunResult:
        summary = self.reconciler.summary()
        flows = tuple(state.result() for state in self.flows.values())
        api: dict[str, dict[str, int]] = {}
        if self.product is not None:
            attempts = getattr(getattr(self.product, "client", None), "attempts", None)
            api["infor"] = _errors(attempts if isinstance(attempts, Counter) else Counter())
        if self.anaplan is not None:
            api["anaplan"] = _errors(self.anaplan.statuses)
        alignment = summarize(self.dimensions, self.usage) if self.dimensions else None
        return RunResult(
            run_id=self.run_id,
            connection=self.key,
            direction=self.direction,
            status=status,
            dry_run=self.dry_run,
            replay_of=self.replay_of,
            started_at=self.started_at,
            finished_at=self.clock(),
            flows=flows,
            alignment=alignment,
            alignment_added={s.entity: len(s.added) for s in self.dimensions if s.added},
            reconciliation=summary if summary.flows else None,
            writeback=self.writeback,
            discovered=self.anaplan.discovered if self.anaplan is not None else None,
            lock_wait_seconds=self.ctx.lock_wait if self.ctx is not None else 0.0,
            api_errors=api,
            timings=self.stages.snapshot(),
            problems=tuple(self.problems),
            message=message,
        )

    def summary_message(self) -> str:
        totals = Counter[str]()
        for state in self.flows.values():
            r = state.result()
            totals.update(extracted=r.extracted + r.replayed, loaded=r.loaded, rejected=r.rejected, skipped=r.skipped)
        verb = "dry run of" if self.dry_run else ("replay of run " + self.replay_of + ":" if self.replay_of else "")
        if self.direction == "WriteBack" and self.writeback is not None:
            w = self.writeback
            return (
                f"{'dry run: ' if w.dry_run else ''}write-back of {w.rows} row(s) from export {w.export_action!r}: "
                f"{w.added} added, {w.updated} updated, {w.unchanged} unchanged, {w.failed + w.rejected_rows} failed"
            )
        added = ", ".join(f"{n} {entity}" for entity, n in ((s.entity, len(s.added)) for s in self.dimensions) if n)
        text = (
            f"{verb + ' ' if verb else ''}{len([f for f in self.flows if f not in _MASTER])} flow(s):"
            f" {totals['extracted']:,} record(s) read, {totals['loaded']:,} loaded, {totals['rejected']:,} rejected,"
            f" {totals['skipped']:,} skipped"
        )
        if added:
            text += f"; alignment added {added}"
        return text

    # ------------------------------------------------------------------ the run

    async def execute(self) -> RunResult:
        flows_for_record: list[str] = []
        replayed_flows: list[str] = []
        if self.replay_of is not None:
            original = await self.audit.get_run(self.replay_of)
            if original is None:
                raise SyncConfigError(f"replay: there is no run {self.replay_of!r} in the audit store")
            if original.connection != self.key:
                raise SyncConfigError(
                    f"replay: run {self.replay_of!r} belongs to connection {original.connection!r}, not {self.key!r}"
                )
            if original.direction != "Load":
                raise SyncConfigError(
                    f"replay: run {self.replay_of!r} is a {original.direction} run; only loads replay"
                )
            replayed_flows = [f for f in original.flows if f in {s.entity for s in self.spec.flows}]
        if self.direction == "Load":
            flows_for_record = [f.entity for f in self.selected_flows(replayed_flows)]
        elif self.spec.writeback is None:
            raise SyncConfigError(
                f"SyncConnection {self.connection.metadata.name!r} has no spec.writeback: nothing to write back"
            )
        else:
            flows_for_record = [WRITEBACK_FLOW]
        await self.audit.start_run(
            RunInfo(
                self.run_id,
                self.key,
                self.direction,
                tuple(flows_for_record),
                started_at=self.started_at,
                replay_of=self.replay_of,
                dry_run=self.dry_run,
            )
        )
        what = "write-back" if self.direction == "WriteBack" else ("replay" if self.replay_of else "load")
        await self.progress.started(
            self.run_id,
            f"{'dry-run ' if self.dry_run else ''}{what} run {self.run_id} of {self.key}",
            direction=self.direction,
            dryRun=self.dry_run,
        )
        try:
            result = await self._execute()
        except BaseException as exc:
            await self._fail(exc)
            raise AssertionError("unreachable") from None  # _fail always raises
        return result

    async def _execute(self) -> RunResult:
        self.step = "opening the Infor product line"
        async with open_infor(self.spec, self.credentials.infor, self.tuning) as product:
            self.product = product
            self.step = "authenticating to Anaplan and finding the workspace and model"
            async with await AnaplanTarget.open(self.spec.anaplan, self.credentials.anaplan, self.tuning) as anaplan:
                self.anaplan = anaplan
                self.ctx = RunContext(
                    self.run_id,
                    self.key,
                    self.audit,
                    anaplan,
                    self.lock,
                    self.progress,
                    self.stages,
                    self.reconciler,
                    self.tuning,
                    self.dry_run,
                )
                await self.progress.step(
                    f"Anaplan model {anaplan.model.info.name if anaplan.model.info else ''} ({anaplan.model_id})"
                )
                if self.direction == "WriteBack":
                    await self._writeback(product)
                else:
                    await self._load(product, anaplan)
        return await self._finish()

    async def _finish(self) -> RunResult:
        self.step = "reconciling"
        summary = self.reconciler.summary()
        if not self.dry_run and summary.flows:
            counts = await self.audit.counts(self.run_id)
            transactional = {f: c for f, c in counts.items() if f not in _MASTER}
            self.problems += check_against_audit(summary, transactional)
        config = [p for s in self.flows.values() for p in s.tally.config_problems]
        flow_problems = [p for s in self.flows.values() for p in s.tally.problems]
        self.problems = config + flow_problems + self.problems
        failed = bool(config or flow_problems)
        message = self.summary_message()
        if failed:
            message += "; FAILED: " + "; ".join((config + flow_problems)[:3])
        result = self.result("Failed" if failed else "Succeeded", message)
        await self.audit.finish_run(
            self.run_id,
            status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
            reconciliation=_stored(result),
            error=message if failed else None,
        )
        await self.progress.finished(message, status=result.status, **result.counts().to_wire())
        if config:
            raise SyncConfigError(message, result=result)
        if failed:
            raise SyncRunError(message, result=result)
        return result

    async def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, SyncError) and exc.result is not None:
            raise exc  # _finish recorded it already
        if isinstance(exc, asyncio.CancelledError):
            message = f"cancelled while {self.step}"
        else:
            config = as_config_error(exc, self.step)
            message = config.message if config is not None else f"failed while {self.step}: {type(exc).__name__}: {exc}"
        result = self.result("Failed", message)
        try:
            await asyncio.shield(
                self.audit.finish_run(
                    self.run_id, status=RunStatus.FAILED, reconciliation=_stored(result), error=message
                )
            )
            await self.progress.finished(message, status="Failed")
        except Exception as audit_exc:  # the audit store may be what failed
            log.error("could not record the failure of run %s in the audit store: %s", self.run_id, audit_exc)
        if isinstance(exc, asyncio.CancelledError):
            raise exc
        config = as_config_error(exc, self.step)
        if config is not None:
            raise SyncConfigError(config.message, result=result) from exc
        if isinstance(exc, SyncError):
            exc.result = result
        raise exc

    # ------------------------------------------------------------------ load

    async def _load(self, product: ProductLine, anaplan: AnaplanTarget) -> None:
        assert self.ctx is not None
        replayed_flows: list[str] = []
        if self.replay_of is not None:
            run = await self.audit.get_run(self.replay_of)
            replayed_flows = list(run.flows) if run is not None else []
        flow_specs = self.selected_flows(replayed_flows)
        layouts: dict[str, AnyLayout] = {}
        for flow in flow_specs:
            self.step = f"finding import action {flow.import_action!r} of flow {flow.entity}"
            try:
                layouts[flow.entity] = layout_for(flow.entity)
            except LayoutError as exc:
                raise SyncConfigError(f"flow {flow.entity}: {exc}") from None
            state = self.flows.setdefault(flow.entity, _FlowState(flow, flow.entity))
            state.target = await anaplan.find_import(flow.import_action, file=flow.file, flow=flow.entity)
        await self._align(product, anaplan, [f.entity for f in flow_specs], flow_specs)
        self.ctx.known = KnownMembers(self.dimensions)
        for flow in flow_specs:
            state = self.flows[flow.entity]
            layout = layouts[flow.entity]
            self.step = f"loading flow {flow.entity}"
            await self.progress.step(f"loading {flow.entity} with import {flow.import_action!r}", flow=flow.entity)
            if self.replay_of is not None:
                await self._replay_flow(state, layout)
            elif layout.aggregated:
                await self._load_aggregated(product, flow, state, layout)
            else:
                await self._load_records(product, flow, state, layout)
            r = state.result()
            await self.progress.flow_done(
                flow.entity,
                f"{r.extracted + r.replayed:,} read, {r.loaded:,} loaded, "
                f"{r.rejected:,} rejected, {r.skipped:,} skipped",
                extracted=r.extracted,
                loaded=r.loaded,
                rejected=r.rejected,
                skipped=r.skipped,
            )

    async def _align(
        self, product: ProductLine, anaplan: AnaplanTarget, flows: list[str], flow_specs: list[FlowSpec]
    ) -> None:
        assert self.ctx is not None
        policy = self.spec.mappings.missing_members
        for dimension, list_name, import_action in dimensions_for(self.spec, flows):
            self.step = f"aligning {DIMENSION_LABELS[dimension]}s with Anaplan list {list_name!r}"
            await self.progress.step(self.step, stage="align")
            try:
                state = await read_dimension(product, anaplan, dimension, list_name, import_action, policy)
            except AnaplanError as exc:
                if dimension == "supplier" and exc.status in (None, 404):
                    self.notes.append(f"suppliers not aligned: {exc.message}")
                    continue
                raise
            self.dimensions.append(state)
            if state.source_errors:
                tally = self._flow(state.entity).tally
                events = []
                for n, error in enumerate(state.source_errors):
                    events += source_error_event(error, run_id=self.run_id, flow=state.entity, number=n)
                    tally.rejected += 1
                self._flow(state.entity).extracted += len(state.source_errors)
                await self.audit.record(events)
        missing = {s.dimension: s for s in self.dimensions if s.alignment().missing}
        if policy == "Stop" and missing:
            self.step = "counting the records that use the missing members"
            await self._usage_pass(product, flow_specs)
            report = summarize(self.dimensions, self.usage)
            message = report.stop_message() or "run stopped before loading: members missing from Anaplan lists"
            self.problems.append(message)
            result = self.result("Failed", message)
            await self.audit.finish_run(
                self.run_id, status=RunStatus.FAILED, reconciliation=_stored(result), error=message
            )
            await self.progress.finished(message, status="Failed")
            raise SyncConfigError(message, result=result)
        if policy == "Add":
            for state in self.dimensions:
                self.step = f"adding missing {DIMENSION_LABELS[state.dimension]}s to Anaplan list {state.list_name!r}"
                flow_state = self._flow(state.entity)
                before = flow_state.tally.loaded + flow_state.tally.rejected + flow_state.tally.skipped
                await add_members(self.ctx, state, flow_state.tally)
                flow_state.extracted += (
                    flow_state.tally.loaded + flow_state.tally.rejected + flow_state.tally.skipped - before
                )
                if flow_state.extracted == 0 and not state.source_errors:
                    del self.flows[state.entity]

    def _flow(self, entity: str) -> _FlowState:
        return self.flows.setdefault(entity, _FlowState(None, entity))

    async def _usage_pass(self, product: ProductLine, flow_specs: list[FlowSpec]) -> None:
        """Read what the flows would load (nothing audited) to count the records and amounts using each member."""
        for flow in flow_specs:
            window = await read_window(self.audit, self.key, flow.entity, overlap=flow.overlap_delta)
            periods = self._window(flow)
            async for record in read_records(product, flow.entity, changed_since=window.changed_since, periods=periods):
                self.usage.add(record, flow.entity)

    def _window(self, flow: FlowSpec) -> tuple[str, ...] | None:
        return window_periods(
            flow.period_from, flow.period_to, flow.lookback_months, today=self.clock().date(), override=self.period
        )

    def _source(
        self, product: ProductLine, flow: FlowSpec, state: _FlowState, errors: list[SourceRecordError], **read: Any
    ) -> AsyncIterator[Record]:
        """The flow's records, counted into the reconciliation, the usage and the progress as they stream."""
        entity = flow.entity
        stream = self.stages.iterate(read_records(product, entity, on_error=errors.append, **read), "extract")

        checks = self._absent_checks(entity)

        async def counted() -> AsyncIterator[Record]:
            async for record in stream:
                self.reconciler.add_record(entity, "source", record)
                if any(str(getattr(record, name)) not in codes for name, codes in checks):
                    self.usage.add(record, entity)  # the report shows usage of members the lists lacked only
                self.progress.advance(entity, "extract")
                yield record

        return counted()

    def _absent_checks(self, entity: str) -> list[tuple[str, frozenset[str]]]:
        """(record field, codes the Anaplan list held before this run) per aligned dimension of ``entity``."""
        checks = []
        for state in self.dimensions:
            name = DIMENSION_FIELDS[state.dimension].get(entity)
            if name is not None:
                checks.append((name, frozenset(m.code for m in state.target)))
        return checks

    def _dedupe(self, flow: FlowSpec, tracker: WatermarkTracker, *, skip_unchanged: bool) -> Deduplicator[Record]:
        entity = flow.entity

        def skipped(record: Record, kind: str, reason: str) -> None:
            self.reconciler.add_record(entity, "skipped", record)

        return Deduplicator(
            self.audit,
            run_id=self.run_id,
            connection=self.key,
            flow=entity,
            skip_unchanged=skip_unchanged,
            tracker=tracker,
            batch_size=self.tuning.dedupe_batch,
            seen=SeenHashes(threshold=self.tuning.spill_threshold, directory=self.tuning.spill_dir),
            on_skip=skipped,
        )

    async def _source_errors(
        self, state: _FlowState, errors: Sequence[SourceRecordError], already: set[str] | None = None
    ) -> None:
        events: list[RecordEvent] = []
        for n, error in enumerate(errors):
            if already is not None:
                if str(error) in already:
                    continue
                already.add(str(error))
            events += source_error_event(error, run_id=self.run_id, flow=state.entity, number=n)
            self.reconciler.add(state.entity, "source")
            self.reconciler.add(state.entity, "rejected")
            state.extracted += 1
            state.tally.rejected += 1
            key = error.natural_key or f"?{error.entity}#{n}"
            reason = f"source row could not be read: {error}"
            state.tally.note_rejection(RejectedRecord(key, reason), self.tuning.sample_rejections)
        if events:
            await self.audit.record(events)

    async def _commit(self, state: _FlowState, tracker: WatermarkTracker) -> None:
        if self.dry_run or state.tally.problems or state.tally.config_problems:
            return
        state.watermark = await tracker.commit(self.audit, run_id=self.run_id)

    async def _load_records(self, product: ProductLine, flow: FlowSpec, state: _FlowState, layout: AnyLayout) -> None:
        assert self.ctx is not None
        window = await read_window(self.audit, self.key, flow.entity, overlap=flow.overlap_delta)
        periods = self._window(flow)
        state.periods = periods or ()
        tracker = WatermarkTracker(window)
        errors: list[SourceRecordError] = []
        dedupe = self._dedupe(flow, tracker, skip_unchanged=True)
        source = self._source(product, flow, state, errors, changed_since=window.changed_since, periods=periods)
        sender = FileSender(self.ctx, flow=flow.entity, layout=layout, target=state.target, tally=state.tally)
        await sender.send(layout.rows(dedupe.filter(source)))
        state.extracted += dedupe.stats.extracted
        state.dedupe_skipped += dedupe.stats.skipped
        await self._source_errors(state, errors)
        await self._commit(state, tracker)

    async def _load_aggregated(
        self, product: ProductLine, flow: FlowSpec, state: _FlowState, layout: AnyLayout
    ) -> None:
        """GL postings: reload every (account, cost center, period) cell touched since the watermark, whole."""
        assert self.ctx is not None
        window = await read_window(self.audit, self.key, flow.entity, overlap=flow.overlap_delta)
        window_p = self._window(flow)
        tracker = WatermarkTracker(window)
        probe_errors: set[str] = set()
        if window.changed_since is None:
            periods = window_p
        else:
            self.step = f"finding the periods of flow {flow.entity} changed since {window.changed_since:%Y-%m-%d %H:%M}"
            await self.progress.step(
                f"probing changes since {window.changed_since.isoformat()}", flow=flow.entity, stage="probe"
            )
            touched = await self._touched_periods(
                product, flow, state, window.changed_since, window_p, tracker, probe_errors
            )
            periods = tuple(sorted(touched))
            if not periods:
                state.message = "no posting changed since the last load: nothing to reload"
                await self._commit(state, tracker)
                return
        state.periods = periods or ()
        if periods:
            await self.progress.step(
                f"reloading {len(periods)} period(s) whole: {_periods_text(periods)}", flow=flow.entity
            )
        errors: list[SourceRecordError] = []
        dedupe = self._dedupe(flow, tracker, skip_unchanged=False)
        source = self._source(product, flow, state, errors, periods=periods)
        sender = FileSender(self.ctx, flow=flow.entity, layout=layout, target=state.target, tally=state.tally)
        rows = layout.rows(
            dedupe.filter(source),
            threshold=self.tuning.spill_threshold,  # type: ignore[call-arg]
            directory=self.tuning.spill_dir,
        )
        await sender.send(rows)
        state.extracted += dedupe.stats.extracted
        state.dedupe_skipped += dedupe.stats.skipped
        await self._source_errors(state, errors, probe_errors)
        await self._commit(state, tracker)

    async def _touched_periods(
        self,
        product: ProductLine,
        flow: FlowSpec,
        state: _FlowState,
        since: dt.datetime,
        window_p: tuple[str, ...] | None,
        tracker: WatermarkTracker,
        reported: set[str],
    ) -> set[str]:
        """Periods holding a posting changed since ``since`` whose content differs from what was last loaded."""
        touched: set[str] = set()
        batch: list[Record] = []
        errors: list[SourceRecordError] = []

        async def check() -> None:
            keys = [r.natural_key for r in batch]
            loaded = await self.audit.last_loaded(self.key, flow.entity, keys)
            for record in batch:
                last = loaded.get(record.natural_key)
                if last is None or last.content_hash != content_hash(record):
                    touched.add(str(getattr(record, "period", "")))
            batch.clear()

        stream = read_records(product, flow.entity, changed_since=since, periods=window_p, on_error=errors.append)
        async for record in self.stages.iterate(stream, "extract"):
            tracker.observe(record)
            batch.append(record)
            if len(batch) >= _PROBE_BATCH:
                await check()
        if batch:
            await check()
        await self._source_errors(state, errors, reported)
        touched.discard("")
        return touched

    async def _replay_flow(self, state: _FlowState, layout: AnyLayout) -> None:
        assert self.ctx is not None
        assert self.replay_of is not None
        entity = state.entity
        events: list[RecordEvent] = []

        async def records() -> AsyncIterator[Hashed[Record]]:
            nonlocal events
            items = replay_records(self.audit, self.replay_of or "", only_failed=self.only_failed, flow=entity)
            async for item in self.stages.iterate(items, "extract"):
                events.append(replayed_event(item, run_id=self.run_id))
                if len(events) >= 1000:
                    await self.audit.record(events)
                    events = []
                state.replayed += 1
                self.reconciler.add_record(entity, "source", item.record)
                self.usage.add(item.record, entity)
                self.progress.advance(entity, "replay")
                yield Hashed(item.record, item.event.content_hash)
            await self.audit.record(events)
            events = []

        sender = FileSender(self.ctx, flow=entity, layout=layout, target=state.target, tally=state.tally)
        try:
            rows: AsyncIterable[Any] = (
                layout.rows(
                    records(),
                    threshold=self.tuning.spill_threshold,  # type: ignore[call-arg]
                    directory=self.tuning.spill_dir,
                )
                if layout.aggregated
                else layout.rows(records())
            )
            await sender.send(rows)
        except AuditError as exc:
            raise SyncConfigError(f"replay of run {self.replay_of}, flow {entity}: {exc}") from None
        state.message = f"replay of {'the rejected records of ' if self.only_failed else ''}run {self.replay_of}"

    # ------------------------------------------------------------------ write-back

    async def _writeback(self, product: ProductLine) -> None:
        assert self.ctx is not None
        assert self.spec.writeback is not None
        wb = self.spec.writeback
        target = wb.target
        if target.m3 is not None:
            where = f"M3 budget {target.m3.division}/{target.m3.budget_number}/{target.m3.budget_version}"
        else:
            assert target.syteline is not None
            where = f"SyteLine SLChartBps ({target.syteline.config})"
        self.step = f"writing back export {wb.export_action!r} to {where}"
        self.writeback = await run_writeback(self.ctx, product, wb, dry_run=self.dry_run or wb.dry_run, target=where)
        if self.writeback.dry_run:
            self.dry_run = True


_MASTER = frozenset({"gl_accounts", "cost_centers", "suppliers"})


def _periods_text(periods: Sequence[str]) -> str:
    return ", ".join(periods[:6]) + (f" ... (+{len(periods) - 6})" if len(periods) > 6 else "")


def _errors(counter: Counter[int | None]) -> dict[str, int]:
    return {
        ("transport" if status is None else str(status)): count
        for status, count in sorted(counter.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        if status is None or status >= 400
    }


def _stored(result: RunResult) -> dict[str, Any]:
    """What the audit store keeps with the run: the reconciliation plus the run's summary (small JSON)."""
    data: dict[str, Any] = dict(result.reconciliation.to_dict()) if result.reconciliation else {}
    data["run"] = {
        "status": result.status,
        "message": result.message,
        "flows": {f.flow: {"loaded": f.loaded, "rejected": f.rejected, "skipped": f.skipped} for f in result.flows},
        "alignmentAdded": dict(result.alignment_added),
        "writeback": result.writeback.to_dict() if result.writeback else None,
        "lockWaitSeconds": round(result.lock_wait_seconds, 3),
        "apiErrors": {k: dict(v) for k, v in result.api_errors.items()},
    }
    return data


async def run_sync(
    connection: SyncConnection,
    *,
    direction: Direction = "Load",
    flows: Sequence[str] | None = None,
    dry_run: bool = False,
    run_id: str | None = None,
    replay_of: str | None = None,
    only_failed: bool = False,
    period: PeriodRange | None = None,
    credentials: Credentials,
    audit: AuditStore,
    lock: ModelLock,
    progress: Progress | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    tuning: Tuning | None = None,
) -> RunResult:
    """Run ``connection`` once (see the module docstring); ``audit`` must be open.

    ``flows`` selects load flows by entity (all by default); ``replay_of`` re-sends a past run's stored
    payloads (``only_failed``: its rejected records); ``period`` overrides the flows' period windows.
    Raises :class:`SyncConfigError` (the user's to fix, never retried) or the transient error as raised;
    both after the run was recorded as failed. Rejected rows do not fail a run: they are its result.
    """
    now = clock()
    run = _Run(
        connection,
        direction=direction,
        flows=flows,
        dry_run=dry_run,
        run_id=run_id or new_run_id(connection, now),
        replay_of=replay_of,
        only_failed=only_failed,
        period=period,
        credentials=credentials,
        audit=audit,
        lock=lock,
        progress=progress or Progress(),
        clock=clock,
        tuning=tuning or Tuning(),
    )
    return await run.execute()
