"""What one run did, typed: per-flow counts, alignment, reconciliation, write-back, ids, lock wait, API errors.

:class:`RunResult` is what :func:`~ml_connector.sync.pipeline.run_sync` returns (and what a
:class:`~ml_connector.sync.errors.SyncError` carries when a run stops). ``counts()`` and
``reconciliation_status()`` give the SyncRun status parts; ``to_dict()`` is JSON for ``--json``; ``text()`` is
the readable report. Nothing in here ever holds a credential.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ml_connector.spec import Discovered, Reconciliation, RunCounts
from ml_connector.sync.mapping import AlignmentReport
from ml_connector.sync.reconcile import ReconciliationSummary

RunStatusName = Literal["Succeeded", "Failed"]


@dataclass(frozen=True)
class RejectedRecord:
    """One record Anaplan (or the source) refused, traced back: natural key, file row, reason."""

    natural_key: str
    reason: str
    file_row: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"naturalKey": self.natural_key, "reason": self.reason, "fileRow": self.file_row}


@dataclass(frozen=True)
class FlowResult:
    """One flow of a run. ``extracted`` counts records read from the source, ``replayed`` those re-sent from the
    audit store; each has exactly one outcome: loaded, rejected or skipped."""

    flow: str
    entity: str
    import_action: str = ""
    file: str = ""
    extracted: int = 0
    replayed: int = 0
    loaded: int = 0
    rejected: int = 0
    skipped: int = 0
    rows: int = 0
    chunks: int = 0
    bytes_sent: int = 0
    would_load: int = 0
    would_reject: int = 0
    watermark: dt.datetime | None = None
    periods: tuple[str, ...] = ()
    rejections: tuple[RejectedRecord, ...] = ()
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "entity": self.entity,
            "importAction": self.import_action,
            "file": self.file,
            "extracted": self.extracted,
            "replayed": self.replayed,
            "loaded": self.loaded,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "rows": self.rows,
            "chunks": self.chunks,
            "bytesSent": self.bytes_sent,
            "wouldLoad": self.would_load,
            "wouldReject": self.would_reject,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "periods": list(self.periods),
            "rejections": [r.to_dict() for r in self.rejections],
            "message": self.message,
        }


@dataclass(frozen=True)
class WritebackResult:
    """A write-back: rows read from the export, and what Infor did with each budget line."""

    export_action: str
    version: str
    target: str
    dry_run: bool
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    rejected_rows: int = 0
    skipped_rows: int = 0
    notes: tuple[str, ...] = ()
    rejections: tuple[RejectedRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "exportAction": self.export_action,
            "version": self.version,
            "target": self.target,
            "dryRun": self.dry_run,
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "rejectedRows": self.rejected_rows,
            "skippedRows": self.skipped_rows,
            "notes": list(self.notes),
            "rejections": [r.to_dict() for r in self.rejections],
        }


@dataclass(frozen=True)
class RunResult:
    run_id: str
    connection: str
    direction: Literal["Load", "WriteBack"]
    status: RunStatusName
    dry_run: bool = False
    replay_of: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    flows: tuple[FlowResult, ...] = ()
    alignment: AlignmentReport | None = None
    alignment_added: Mapping[str, int] = field(default_factory=dict)
    reconciliation: ReconciliationSummary | None = None
    writeback: WritebackResult | None = None
    discovered: Discovered | None = None
    lock_wait_seconds: float = 0.0
    api_errors: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    message: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"

    def flow(self, name: str) -> FlowResult | None:
        return next((f for f in self.flows if f.flow == name), None)

    def counts(self) -> RunCounts:
        """Totals over every flow, as the SyncRun status carries them (replayed records count as extracted; a
        write-back counts export rows: posted = loaded, unchanged or of another version = skipped)."""
        w = self.writeback
        if w is not None:
            return RunCounts(
                extracted=w.rows,
                loaded=0 if w.dry_run else w.added + w.updated,
                rejected=w.failed + w.rejected_rows,
                skipped=w.skipped_rows + w.unchanged + ((w.added + w.updated) if w.dry_run else 0),
            )
        return RunCounts(
            extracted=sum(f.extracted + f.replayed for f in self.flows),
            loaded=sum(f.loaded for f in self.flows),
            rejected=sum(f.rejected for f in self.flows),
            skipped=sum(f.skipped for f in self.flows),
        )

    def reconciliation_status(self) -> Reconciliation | None:
        summary = self.reconciliation
        if summary is None:
            return None
        source = sum((f.tallies.source.amount for f in summary.flows), Decimal(0))
        loaded = sum((f.tallies.loaded.amount for f in summary.flows), Decimal(0))
        top = summary.differences[:3]
        message = "; ".join(
            f"{c.flow} {c.account or '-'} {c.period or '-'}: source {c.tallies.source.amount} loaded"
            f" {c.tallies.loaded.amount}"
            for c in top
        )
        return Reconciliation(
            balanced=summary.balanced,
            source_total=format(source, "f"),
            loaded_total=format(loaded, "f"),
            mismatches=summary.cells_with_differences,
            message=message[:1000],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "connection": self.connection,
            "direction": self.direction,
            "status": self.status,
            "dryRun": self.dry_run,
            "replayOf": self.replay_of,
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "counts": self.counts().to_wire(),
            "flows": [f.to_dict() for f in self.flows],
            "alignment": self.alignment.to_dict() if self.alignment else None,
            "alignmentAdded": dict(self.alignment_added),
            "reconciliation": self.reconciliation.to_dict() if self.reconciliation else None,
            "writeback": self.writeback.to_dict() if self.writeback else None,
            "discovered": self.discovered.to_wire() if self.discovered else None,
            "lockWaitSeconds": round(self.lock_wait_seconds, 3),
            "apiErrors": {k: dict(v) for k, v in self.api_errors.items()},
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "problems": list(self.problems),
            "message": self.message,
        }
