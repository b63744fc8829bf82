"""``ml-connector sandbox``: serve the emulators on loopback until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import click


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port-anaplan", type=int, default=0, show_default=True, help="Port of the Anaplan emulator (0: any free port)."
)
@click.option("--scale", type=click.IntRange(min=0), default=1, show_default=True, help="Size of the seeded dataset.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated dataset.")
@click.option("--token-lifetime", type=float, default=None, help="Anaplan token lifetime in seconds (default 2100).")
@click.option(
    "--task-duration", type=float, default=0.0, show_default=True, help="Minimum seconds every Anaplan task runs."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line with URLs and credentials once ready.")
# ---- Infor emulator options (sandbox/infor/)
@click.option("--infor/--no-infor", "with_infor", default=True, show_default=True, help="Serve the Infor emulator.")
@click.option("--port-infor", type=int, default=0, show_default=True, help="Port of the Infor emulator (0: any).")
@click.option("--infor-postings", type=click.IntRange(min=144), default=None, help="GL postings (default 20000*scale).")
@click.option("--infor-token-lifetime", type=float, default=None, help="Infor access-token lifetime in seconds.")
def command(
    host: str,
    port_anaplan: int,
    scale: int,
    seed: int,
    token_lifetime: float | None,
    task_duration: float,
    as_json: bool,
    with_infor: bool,
    port_infor: int,
    infor_postings: int | None,
    infor_token_lifetime: float | None,
) -> None:
    """Serve the emulated Anaplan and Infor APIs until stopped."""
    infor_options = {
        "infor": with_infor,
        "port_infor": port_infor,
        "infor_postings": infor_postings,
        "infor_token_lifetime": infor_token_lifetime,
    }
    asyncio.run(_serve(host, port_anaplan, scale, seed, token_lifetime, task_duration, as_json, infor_options))


async def _serve(
    host: str,
    port_anaplan: int,
    scale: int,
    seed: int,
    token_lifetime: float | None,
    task_duration: float,
    as_json: bool,
    infor_options: dict[str, Any] | None = None,
) -> None:
    from ml_connector.sandbox.anaplan import EmulatorConfig
    from ml_connector.sandbox.server import start_sandbox

    config = EmulatorConfig(task_duration=task_duration)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with await start_sandbox(
        host, port_anaplan, scale, seed, token_lifetime=token_lifetime, anaplan_config=config, **(infor_options or {})
    ) as sb:
        info = sb.to_json()
        if as_json:
            sys.stdout.write(json.dumps(info) + "\n")
        else:
            a = info["anaplan"]
            sys.stdout.write(
                f"Anaplan emulator: {a['url']}\n  user {a['user']}  password {a['password']}\n"
                f"  workspace {a['workspace_name']} ({a['workspace']})  model {a['model_name']} ({a['model']})\n"
            )
            if "infor" in info:
                i = info["infor"]
                tenants = "".join(f"  {p} tenant {t['tenant']}: {t['ionapi']}\n" for p, t in i["tenants"].items())
                sys.stdout.write(f"Infor ION API Gateway emulator: {i['url']}\n{tenants}")
            sys.stdout.write("Stop with Ctrl-C.\n")
        sys.stdout.flush()
        await stop.wait()
