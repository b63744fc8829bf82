"""The readable report of a run (what ``ml-connector sync``, ``replay`` and ``demo`` print)."""

from __future__ import annotations

from collections.abc import Sequence

from ml_connector.sync.result import FlowResult, RejectedRecord, RunResult

_MASTER = ("gl_accounts", "cost_centers", "suppliers")


def _table(heads: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(heads)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(heads), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def flows_table(flows: Sequence[FlowResult], *, dry_run: bool = False) -> list[str]:
    loaded, rejected = ("would load", "would reject") if dry_run else ("loaded", "rejected")
    heads = ["flow", "import action", "read", loaded, rejected, "skipped", "file rows"]
    rows = []
    for f in flows:
        if dry_run:
            shown_loaded, shown_rejected = f"{f.would_load:,}", f"{f.would_reject:,}"
        else:
            shown_loaded, shown_rejected = f"{f.loaded:,}", f"{f.rejected:,}"
        read = f"{f.extracted:,}" + (f" (+{f.replayed:,} replayed)" if f.replayed else "")
        rows.append(
            [f.flow, f.import_action or "-", read, shown_loaded, shown_rejected, f"{f.skipped:,}", f"{f.rows:,}"]
        )
    return _table(heads, rows, right=[2, 3, 4, 5, 6])


def rejections_lines(rejections: Sequence[RejectedRecord], *, limit: int = 10, indent: str = "    ") -> list[str]:
    out = []
    for r in rejections[:limit]:
        row = f" (file row {r.file_row})" if r.file_row is not None else ""
        out.append(f"{indent}{r.natural_key}{row}: {r.reason}")
    if len(rejections) > limit:
        out.append(f"{indent}... and {len(rejections) - limit} more (see the audit store)")
    return out


def render(result: RunResult, *, limit: int = 10) -> str:
    """The whole report of ``result``: status, alignment, flows, rejections, reconciliation, write-back, ids."""
    title = "Dry run" if result.dry_run else ("Replay" if result.replay_of else result.direction)
    lines = [f"{title} {result.run_id} of {result.connection}: {result.status}", f"  {result.message}", ""]
    if result.alignment is not None:
        lines += [result.alignment.text(limit=limit), ""]
    transactional = [f for f in result.flows if f.flow not in _MASTER]
    master = [f for f in result.flows if f.flow in _MASTER]
    if master:
        lines.append("Members added to Anaplan lists" + (" (dry run: would add)" if result.dry_run else ""))
        for f in master:
            verb = "would add" if result.dry_run else "added"
            count = f.skipped if result.dry_run else f.loaded
            lines.append(f"  {f.flow}: {count:,} {verb}" + (f", {f.rejected:,} failed" if f.rejected else ""))
            lines += rejections_lines(f.rejections, limit=limit)
        lines.append("")
    if transactional:
        lines.append("Flows" + (" (dry run: nothing uploaded, imported or added)" if result.dry_run else ""))
        lines += ["  " + line for line in flows_table(transactional, dry_run=result.dry_run)]
        for f in transactional:
            if f.message:
                lines.append(f"  {f.flow}: {f.message}")
            if f.periods:
                shown = ", ".join(f.periods[:8]) + (f" ... ({len(f.periods)} periods)" if len(f.periods) > 8 else "")
                lines.append(f"  {f.flow}: periods {shown}")
        rejected = [f for f in transactional if f.rejections]
        if rejected:
            lines += [
                "",
                "Rejected records" + (" (would be)" if result.dry_run else "") + ", traced back to the source:",
            ]
            for f in rejected:
                lines.append(f"  {f.flow}:")
                lines += rejections_lines(f.rejections, limit=limit)
        lines.append("")
    if result.reconciliation is not None:
        lines += [result.reconciliation.text(dry_run=result.dry_run), ""]
    if result.writeback is not None:
        w = result.writeback
        lines.append(
            f"Write-back of export {w.export_action!r} ({w.version}) into {w.target}"
            + (" (dry run)" if w.dry_run else "")
        )
        lines.append(
            f"  {w.rows:,} row(s) exported: {w.added:,} added, {w.updated:,} updated, {w.unchanged:,} unchanged,"
            f" {w.failed:,} failed; {w.rejected_rows:,} row(s) unreadable, {w.skipped_rows:,} of another version"
        )
        lines += [f"  {note}" for note in w.notes[:limit]]
        lines += rejections_lines(w.rejections, limit=limit, indent="  ")
        lines.append("")
    if result.problems:
        lines += [f"PROBLEM: {p}" for p in result.problems] + [""]
    extras = []
    if result.lock_wait_seconds >= 0.01:
        extras.append(f"waited {result.lock_wait_seconds:.1f}s for the model lock")
    errors = ", ".join(
        f"{side} {status} x{count}" for side, counts in result.api_errors.items() for status, count in counts.items()
    )
    if errors:
        extras.append(f"HTTP error answers (retried, or expected such as 'not found'): {errors}")
    if result.discovered is not None and result.discovered.model_id:
        extras.append(f"Anaplan model {result.discovered.model_id} in workspace {result.discovered.workspace_id}")
    lines += extras
    return "\n".join(lines).rstrip() + "\n"
