"""What the sync, check, replay, audit and demo commands share: options, the audit store location, exit codes.

Exit codes: 0 success; 1 a failure that may pass (retry); 2 a configuration error (the spec, credentials,
unmapped members under the Stop policy...), the same code the worker uses for the Job's podFailurePolicy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from ml_connector.net.redact import redact
from ml_connector.spec import SpecError, SyncConnection, load_connection
from ml_connector.sync.credentials import load_audit_dsn
from ml_connector.sync.errors import CONFIG_ERROR_EXIT_CODE, SyncConfigError, SyncError
from ml_connector.sync.report import render

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

ENV_AUDIT = "ML_CONNECTOR_AUDIT"
DEFAULT_AUDIT = "ml-connector-audit.sqlite3"
TRANSIENT_EXIT_CODE = 1


def connection_option(required: bool = True) -> Callable[[F], F]:
    return click.option(
        "-f",
        "--file",
        "connection_file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        required=required,
        help="The SyncConnection manifest (the YAML you apply to the cluster).",
    )


def secrets_option(f: F) -> F:
    return click.option(
        "--secrets-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar="ML_CONNECTOR_SECRETS_DIR",
        help="Directory laid out as <dir>/<secret name>/<key>, as Kubernetes mounts Secrets"
        " [env ML_CONNECTOR_SECRETS_DIR].",
    )(f)


def audit_option(f: F) -> F:
    return click.option(
        "--audit",
        "audit_url",
        default=None,
        envvar=ENV_AUDIT,
        help=(
            "Audit store: a SQLite file path (or sqlite:///path) or postgresql://... [env ML_CONNECTOR_AUDIT];"
            f" default: the spec's audit, else ./{DEFAULT_AUDIT}."
        ),
    )(f)


def poll_option(f: F) -> F:
    return click.option(
        "--poll-interval",
        type=click.FloatRange(min=0.01),
        default=1.0,
        show_default=True,
        help="First wait (seconds) between polls of an Anaplan task; it grows to 10 s on long tasks.",
    )(f)


def tuning(poll_interval: float) -> Any:
    from ml_connector.anaplan import PollPolicy
    from ml_connector.sync.options import Tuning

    return Tuning(poll=PollPolicy(initial=poll_interval, maximum=max(10.0, poll_interval)))


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def load(connection_file: Path) -> SyncConnection:
    try:
        return load_connection(connection_file)
    except SpecError as exc:
        raise SyncConfigError(str(exc)) from None


def audit_location(connection: SyncConnection | None, option: str | None, secrets_dir: Path | None) -> str:
    """The audit store to open: ``--audit`` / ``ML_CONNECTOR_AUDIT``, else the spec's, else a local SQLite file."""
    if option:
        return option
    if connection is not None and connection.spec.audit is not None:
        dsn = load_audit_dsn(connection, secrets_dir)
        if dsn is not None:
            return dsn
        if connection.spec.audit.sqlite is not None:
            return connection.spec.audit.sqlite.path
    return DEFAULT_AUDIT


def quiet_libraries(verbose: bool = False) -> None:
    """httpx logs every request at INFO; keep it (and the clients' chatter) out of the terminal output."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not verbose:
        for name in ("ml_connector.anaplan", "ml_connector.infor", "ml_connector.audit"):
            logging.getLogger(name).setLevel(logging.WARNING)


def echo_result(result: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(render(result), nl=False)


def run(main: Callable[[], Coroutine[Any, Any, T]], *, as_json: bool = False) -> T:
    """Run ``main``; map errors to exit codes with a clear, redacted message (and any partial report)."""
    try:
        return asyncio.run(main())
    except SyncError as exc:
        if exc.result is not None:
            echo_result(exc.result, as_json)
        kind = "configuration error" if isinstance(exc, SyncConfigError) else "run failed"
        click.echo(f"error ({kind}): {exc.message}", err=True)
        sys.exit(CONFIG_ERROR_EXIT_CODE if isinstance(exc, SyncConfigError) else TRANSIENT_EXIT_CODE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # transient: a retry may succeed
        click.echo(f"error: {type(exc).__name__}: {redact(str(exc))}", err=True)
        if os.environ.get("ML_CONNECTOR_DEBUG"):
            raise
        sys.exit(TRANSIENT_EXIT_CODE)


async def run_connection(
    connection: SyncConnection,
    *,
    command: str,
    secrets_dir: Path | None,
    audit_url: str | None,
    poll_interval: float,
    as_json: bool,
    **run_options: Any,
) -> None:
    """Run a SyncConnection once from the command line: credentials, audit store, an in-process model lock,
    terminal progress; then print the result. ``run_options`` go to :func:`~ml_connector.sync.pipeline.run_sync`."""
    from ml_connector.audit import create_store
    from ml_connector.sync.credentials import load_credentials
    from ml_connector.sync.locks import InProcessLock
    from ml_connector.sync.pipeline import run_sync
    from ml_connector.sync.progress import Progress

    credentials = load_credentials(connection, secrets_dir)
    progress = Progress.for_terminal()
    quiet_libraries(verbose=not progress.interactive)
    async with create_store(audit_location(connection, audit_url, secrets_dir)) as store:
        result = await run_sync(
            connection,
            credentials=credentials,
            audit=store,
            lock=InProcessLock(f"ml-connector {command} ({connection.metadata.name})"),
            progress=progress,
            tuning=tuning(poll_interval),
            **run_options,
        )
    echo_result(result, as_json)
