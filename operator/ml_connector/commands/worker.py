"""``ml-connector worker``: run one SyncRun (what a Job's pod runs), or check the image offline.

``--run <namespace>/<name>`` runs the SyncRun and exits 0 on success, 2 on an error the user has to fix
(the Job's podFailurePolicy then fails without retrying), 1 otherwise. ``--self-check`` imports everything
a run needs, checks the configured files and the temporary directory, prints the version and exits 0 (1
if something is missing) without touching the network.
"""

from __future__ import annotations

import asyncio
import sys

import click


@click.command("worker")
@click.option("--run", "run_ref", metavar="NAMESPACE/NAME", help="The SyncRun to execute.")
@click.option("--self-check", is_flag=True, help="Check the image and configuration offline, then exit.")
def command(run_ref: str | None, self_check: bool) -> None:
    """Execute a SyncRun inside its Job (credentials from the mounted files, status into the SyncRun)."""
    if self_check:
        from ml_connector.kube.worker import self_check as check

        facts, problems = check()
        for line in facts:
            click.echo(f"ok: {line}")
        for line in problems:
            click.echo(f"problem: {line}", err=True)
        sys.exit(1 if problems else 0)
    if not run_ref:
        raise click.UsageError("give --run <namespace>/<name> (or --self-check)")
    namespace, _, name = run_ref.partition("/")
    if not namespace or not name or "/" in name:
        raise click.UsageError(f"--run {run_ref!r}: expected <namespace>/<name>")
    sys.exit(asyncio.run(_main(namespace, name)))


async def _main(namespace: str, name: str) -> int:
    from ml_connector.kube.api import KubeApi
    from ml_connector.kube.worker import run_worker

    api = KubeApi.from_environment(component="ml-connector-worker")
    try:
        return await run_worker(namespace, name, api=api)
    finally:
        api.close()
