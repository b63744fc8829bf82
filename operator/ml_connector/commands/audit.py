"""``ml-connector audit``: ask the audit trail what happened.

* ``--key INV-42`` — every event of the records whose natural key is (or ends in ``/``) ``INV-42``, across runs;
* ``--run ID`` — a run's outcome and counts per flow; with ``--failed`` its rejected records and why;
* ``--runs`` — the latest runs.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from ml_connector.commands._shared import audit_location, audit_option, connection_option, load, run, secrets_option


def _table(heads: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(heads)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in [heads, *rows]]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


@click.command("audit")
@click.option("--key", default=None, help="A natural key, or its last part (an invoice number, a journal...).")
@click.option("--flow", default=None, help="With --key or --run: only this flow.")
@click.option("--run", "run_id", default=None, help="A run id.")
@click.option("--failed", is_flag=True, help="With --run: the run's rejected records and why.")
@click.option("--runs", "list_runs", is_flag=True, help="The latest runs.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Rows to show at most.")
@connection_option(required=False)
@secrets_option
@audit_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(
    key: str | None,
    flow: str | None,
    run_id: str | None,
    failed: bool,
    list_runs: bool,
    limit: int,
    connection_file: Path | None,
    secrets_dir: Path | None,
    audit_url: str | None,
    as_json: bool,
) -> None:
    """What happened to a record, or which records of a run failed."""
    from ml_connector.audit import create_store
    from ml_connector.sync.errors import SyncConfigError

    if sum(bool(x) for x in (key, run_id, list_runs)) != 1:
        raise click.UsageError("give exactly one of --key, --run or --runs")
    if failed and not run_id:
        raise click.UsageError("--failed goes with --run")

    async def main() -> None:
        connection = load(connection_file) if connection_file is not None else None
        location = audit_location(connection, audit_url, secrets_dir)
        if "://" not in location and not await asyncio.to_thread(Path(location.removeprefix("sqlite:///")).exists):
            raise SyncConfigError(f"no audit database at {location} (pass --audit PATH)")
        async with create_store(location) as store:
            if key is not None:
                events = await store.history(key, flow=flow, suffix=True, limit=limit)
                if as_json:
                    click.echo(json.dumps([_event(e) for e in events], indent=2, default=str))
                    return
                if not events:
                    click.echo(f"no record with key {key!r} (or ending in '/{key}') in the audit store")
                    return
                rows = [
                    [
                        e.at.strftime("%Y-%m-%d %H:%M:%S"),
                        e.run_id,
                        e.flow,
                        e.natural_key,
                        e.status.value,
                        "" if e.file_row is None else str(e.file_row),
                        e.reason or "",
                    ]
                    for e in events
                ]
                click.echo(_table(["at", "run", "flow", "natural key", "status", "row", "reason"], rows))
                return
            if run_id is not None:
                info = await store.get_run(run_id)
                if info is None:
                    raise SyncConfigError(f"no run {run_id!r} in the audit store {location}")
                if failed:
                    shown: list[Any] = []
                    async for e in store.failed(run_id, flow=flow):
                        shown.append(e)
                        if len(shown) >= limit:
                            break
                    if as_json:
                        click.echo(json.dumps([_event(e) for e in shown], indent=2, default=str))
                        return
                    if not shown:
                        click.echo(f"run {run_id}: no record was rejected")
                        return
                    rows = [
                        [e.flow, e.natural_key, "" if e.file_row is None else str(e.file_row), e.reason or ""]
                        for e in shown
                    ]
                    click.echo(f"Rejected records of run {run_id} (first {len(shown)}):")
                    click.echo(_table(["flow", "natural key", "file row", "reason"], rows))
                    return
                counts = await store.counts(run_id)
                if as_json:
                    click.echo(
                        json.dumps(
                            _run(info) | {"counts": {f: c.to_dict() for f, c in counts.items()}}, indent=2, default=str
                        )
                    )
                    return
                click.echo(
                    f"run {info.run_id} of {info.connection}: {info.direction}, {info.status.value}"
                    + (" (dry run)" if info.dry_run else "")
                    + (f", replay of {info.replay_of}" if info.replay_of else "")
                )
                finished = f"finished {info.finished_at:%Y-%m-%d %H:%M:%S}" if info.finished_at else "still running"
                click.echo(f"  started {info.started_at:%Y-%m-%d %H:%M:%S}, {finished}")
                if info.error:
                    click.echo(f"  error: {info.error}")
                rows = [
                    [f, str(c.extracted), str(c.replayed), str(c.loaded), str(c.rejected), str(c.skipped)]
                    for f, c in sorted(counts.items())
                ]
                if rows:
                    click.echo(_table(["flow", "extracted", "replayed", "loaded", "rejected", "skipped"], rows))
                return
            runs = await store.list_runs(connection=None, limit=limit)
            if as_json:
                click.echo(json.dumps([_run(r) for r in runs], indent=2, default=str))
                return
            rows = [
                [
                    r.run_id,
                    r.connection,
                    r.direction + (" (dry run)" if r.dry_run else ""),
                    r.status.value,
                    r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                    (r.error or "")[:80],
                ]
                for r in runs
            ]
            click.echo(
                _table(["run", "connection", "direction", "status", "started", "error"], rows)
                if rows
                else "no runs in the audit store"
            )

    run(main)


def _event(e: Any) -> dict[str, Any]:
    return {
        "at": e.at.isoformat(),
        "run": e.run_id,
        "flow": e.flow,
        "entity": e.entity,
        "naturalKey": e.natural_key,
        "contentHash": e.content_hash,
        "status": e.status.value,
        "fileRow": e.file_row,
        "reason": e.reason,
        "payload": e.payload,
    }


def _run(r: Any) -> dict[str, Any]:
    return {
        "runId": r.run_id,
        "connection": r.connection,
        "direction": r.direction,
        "status": r.status.value,
        "dryRun": r.dry_run,
        "replayOf": r.replay_of,
        "startedAt": r.started_at.isoformat(),
        "finishedAt": r.finished_at.isoformat() if r.finished_at else None,
        "error": r.error,
    }
