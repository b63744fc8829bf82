"""``ml-connector replay --run ID [--only-failed] -f connection.yaml``: re-send what an earlier run sent."""

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


@click.command("replay")
@click.option("--run", "replay_of", required=True, help="The run whose stored payloads are sent again.")
@click.option("--only-failed", is_flag=True, help="Only the records that run had rejected.")
@connection_option()
@click.option("--flow", "flows", multiple=True, help="Replay only this flow; repeatable.")
@click.option("--run-id", default=None, help="Id of the replay run (generated when not given).")
@secrets_option
@audit_option
@poll_option
@json_option
def command(
    replay_of: str,
    only_failed: bool,
    connection_file: Path,
    flows: tuple[str, ...],
    run_id: str | None,
    secrets_dir: Path | None,
    audit_url: str | None,
    poll_interval: float,
    as_json: bool,
) -> None:
    """Rebuild the files of a past run from the audit store's payloads and load them again (a new run)."""

    async def main() -> None:
        await run_connection(
            load(connection_file),
            command="replay",
            secrets_dir=secrets_dir,
            audit_url=audit_url,
            poll_interval=poll_interval,
            as_json=as_json,
            flows=list(flows) or None,
            run_id=run_id,
            replay_of=replay_of,
            only_failed=only_failed,
        )

    run(main, as_json=as_json)
