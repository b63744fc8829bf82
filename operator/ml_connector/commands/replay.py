"""``ml-connector replay --run ID [--only-failed] -f connection.yaml``: re-send what an earlier run sent."""

from __future__ import annotations

from pathlib import Path

import click

from ml_connector.commands._shared import (
    audit_location,
    audit_option,
    connection_option,
    echo_result,
    json_option,
    load,
    poll_option,
    quiet_libraries,
    run,
    secrets_option,
    tuning,
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
    from ml_connector.audit import create_store
    from ml_connector.sync.credentials import load_credentials
    from ml_connector.sync.locks import InProcessLock
    from ml_connector.sync.pipeline import run_sync
    from ml_connector.sync.progress import Progress

    async def main() -> None:
        connection = load(connection_file)
        credentials = load_credentials(connection, secrets_dir)
        progress = Progress.for_terminal()
        quiet_libraries(verbose=not progress.interactive)
        async with create_store(audit_location(connection, audit_url, secrets_dir)) as store:
            result = await run_sync(
                connection,
                flows=list(flows) or None,
                run_id=run_id,
                replay_of=replay_of,
                only_failed=only_failed,
                credentials=credentials,
                audit=store,
                lock=InProcessLock(f"ml-connector replay ({connection.metadata.name})"),
                progress=progress,
                tuning=tuning(poll_interval),
            )
        echo_result(result, as_json)

    run(main, as_json=as_json)
