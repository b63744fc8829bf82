"""``ml-connector check -f connection.yaml``: authenticate to both sides and show what is found there.

Reads nothing big and changes nothing: the Infor token and the dimension master data (counts), the Anaplan
workspace, model, every flow's import action and data source file, the mapped lists (member counts) and the
write-back export. Each line says OK or what is wrong; exit 0 when everything is there, 2 when the
configuration must be fixed, 1 when a side could not be reached.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from ml_connector.commands._shared import connection_option, load, quiet_libraries, run, secrets_option


@click.command("check")
@connection_option()
@secrets_option
def command(connection_file: Path, secrets_dir: Path | None) -> None:
    """Ping your real systems: authenticate to Infor and Anaplan and list what the connection would use."""
    from ml_connector.sync.errors import CONFIG_ERROR_EXIT_CODE, as_config_error

    quiet_libraries()
    outcome: dict[str, int] = {"config": 0, "transient": 0}

    async def step(label: str, action: Callable[[], Awaitable[str]]) -> bool:
        started = time.monotonic()
        try:
            detail = await action()
        except Exception as exc:
            config = as_config_error(exc, label)
            outcome["config" if config is not None else "transient"] += 1
            message = config.message if config is not None else f"{type(exc).__name__}: {exc}"
            click.echo(f"  FAIL  {label}: {message}")
            return False
        click.echo(f"  ok    {label}: {detail} ({time.monotonic() - started:.2f}s)")
        return True

    async def main() -> None:
        from ml_connector.infor import SourceRecordError
        from ml_connector.sync.anaplan_target import AnaplanTarget
        from ml_connector.sync.credentials import load_credentials
        from ml_connector.sync.extract import open_infor
        from ml_connector.sync.options import Tuning

        connection = load(connection_file)
        spec = connection.spec
        credentials = load_credentials(connection, secrets_dir)
        tuning = Tuning()
        click.echo(
            f"SyncConnection {connection.metadata.name}: Infor {spec.infor.product_line} -> Anaplan "
            f"{spec.anaplan.workspace!r}/{spec.anaplan.model!r}"
        )
        click.echo(f"Infor tenant {credentials.infor.ti} ({credentials.infor.api_base})")
        async with open_infor(spec, credentials.infor, tuning) as product:

            async def count(entity: Any) -> str:
                records = errors = 0
                async for item in product.read(entity):
                    if isinstance(item, SourceRecordError):
                        errors += 1
                    else:
                        records += 1
                return f"{records} read" + (f", {errors} unreadable" if errors else "") + " (token accepted)"

            await step("Infor GL accounts", lambda: count("gl_accounts"))
            await step("Infor cost centers", lambda: count("cost_centers"))
        click.echo(f"Anaplan ({spec.anaplan.auth.method} authentication as {_who(credentials.anaplan)})")
        holder: dict[str, AnaplanTarget] = {}

        async def open_model() -> str:
            holder["target"] = await AnaplanTarget.open(spec.anaplan, credentials.anaplan, tuning)
            model = holder["target"].model
            return f"workspace {model.workspace_id}, model {model.model_id}"

        if not await step(f"Anaplan model {spec.anaplan.model!r} in workspace {spec.anaplan.workspace!r}", open_model):
            return
        async with holder["target"] as anaplan:
            for flow in spec.flows:

                async def find(flow: Any = flow) -> str:
                    found = await anaplan.find_import(flow.import_action, file=flow.file, flow=flow.entity)
                    return f"import {found.import_id}, data source file {found.file_name!r} ({found.file_id})"

                await step(f"flow {flow.entity}: import {flow.import_action!r}", find)
            lists = [spec.mappings.accounts.list_name, spec.mappings.cost_centers.list_name]
            for name in lists:

                async def members(name: str = name) -> str:
                    found = await anaplan.find_list(name)
                    return f"list {found.id}, {len(await anaplan.list_members(found.id))} member(s)"

                await step(f"list {name!r}", members)
            for imp in filter(None, (spec.mappings.accounts.import_action, spec.mappings.cost_centers.import_action)):

                async def find_list_import(imp: str = imp) -> str:
                    found = await anaplan.find_import(imp)
                    return f"import {found.import_id}, data source file {found.file_name!r}"

                await step(f"list import {imp!r}", find_list_import)
            if spec.writeback is not None:
                export_name = spec.writeback.export_action

                async def export() -> str:
                    found = await anaplan.find_export(export_name)
                    return f"export {found.id} ({found.export_format or 'format unknown'})"

                await step(f"write-back export {export_name!r}", export)

    run(main)
    if outcome["config"]:
        click.echo(f"{outcome['config']} problem(s) to fix in the configuration or the model")
        raise SystemExit(CONFIG_ERROR_EXIT_CODE)
    if outcome["transient"]:
        click.echo(f"{outcome['transient']} check(s) could not reach their system")
        raise SystemExit(1)
    click.echo("All checks passed.")


def _who(credentials: Any) -> str:
    return str(credentials.username or credentials.client_id or "certificate")
