"""``ml-connector sync -f connection.yaml``: one run of a SyncConnection from the command line (no cluster)."""

from __future__ import annotations

from pathlib import Path

import click

from ml_connector.commands._shared import (
    audit_option,
    connection_option,
    json_option,
    load,
    poll_option,
    run,
    run_connection,
    secrets_option,
)


@click.command("sync")
@connection_option()
@click.option(
    "--direction",
    type=click.Choice(["load", "writeback"], case_sensitive=False),
    default="load",
    show_default=True,
    help="load: Infor -> Anaplan; writeback: Anaplan approved budget -> Infor.",
)
@click.option("--dry-run", is_flag=True, help="Extract and check; upload, import, add and post nothing.")
@click.option("--flow", "flows", multiple=True, help="Load only this flow (an entity of spec.flows); repeatable.")
@click.option("--period-from", default=None, help="First period (YYYY-MM) to load, overriding the flows' windows.")
@click.option("--period-to", default=None, help="Last period (YYYY-MM) to load (with --period-from).")
@click.option("--run-id", default=None, help="Id of the run in the audit store (generated when not given).")
@secrets_option
@audit_option
@poll_option
@json_option
def command(
    connection_file: Path,
    direction: str,
    dry_run: bool,
    flows: tuple[str, ...],
    period_from: str | None,
    period_to: str | None,
    run_id: str | None,
    secrets_dir: Path | None,
    audit_url: str | None,
    poll_interval: float,
    as_json: bool,
) -> None:
    """Run a SyncConnection once: align, load every flow (or write back), reconcile, audit."""
    from ml_connector.spec import PeriodRange
    from ml_connector.sync.errors import SyncConfigError

    async def main() -> None:
        connection = load(connection_file)
        if (period_from is None) != (period_to is None):
            raise SyncConfigError("--period-from and --period-to go together")
        try:
            period = PeriodRange.model_validate({"from": period_from, "to": period_to}) if period_from else None
        except ValueError as exc:
            raise SyncConfigError(f"--period-from/--period-to: {exc}") from None
        await run_connection(
            connection,
            command="sync",
            secrets_dir=secrets_dir,
            audit_url=audit_url,
            poll_interval=poll_interval,
            as_json=as_json,
            direction="WriteBack" if direction.lower() == "writeback" else "Load",
            flows=list(flows) or None,
            dry_run=dry_run,
            run_id=run_id,
            period=period,
        )

    run(main, as_json=as_json)
