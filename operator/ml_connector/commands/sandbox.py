"""``ml-connector sandbox``: serve the emulators on loopback until SIGINT/SIGTERM.

In a cluster (``examples/sandbox.yaml``) it listens on every address, advertises the Service's URLs
(``--public-url-anaplan``, ``--public-url-infor``) and accepts fixed credentials (``--credentials-file``) so
that the example Secrets match; ``--anaplan-data infor`` seeds the model from the Infor dataset as the demo
does, so write-back has approved budgets for accounts and cost centers Infor knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click


def _public_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise click.BadParameter(f"{value!r} is not an http(s) base URL such as http://ml-connector-sandbox:8080")
    return value.rstrip("/")


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
# ---- reached under another name (a Kubernetes Service), with credentials known in advance
@click.option(
    "--public-url-anaplan",
    callback=_public_url,
    default=None,
    help="Base URL clients use for the Anaplan emulator, when not the one it listens on"
    " (e.g. http://ml-connector-sandbox.ml-connector.svc:8080).",
)
@click.option(
    "--public-url-infor",
    callback=_public_url,
    default=None,
    help="Base URL clients use for the Infor emulator, written into the .ionapi files (iu, pu).",
)
@click.option(
    "--credentials-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML file fixing the credentials the emulators accept (Anaplan password; per product line the .ionapi"
    " keys ci, cs, saak, sask); random when not given.",
)
@click.option(
    "--write-ionapi",
    "ionapi_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the tenants' .ionapi files (<TENANT>.ionapi, mode 0600) into this directory and keep them"
    " (default: a temporary directory removed on exit).",
)
@click.option(
    "--anaplan-data",
    type=click.Choice(["synthetic", "infor"]),
    default="synthetic",
    show_default=True,
    help="Seed the Anaplan model with synthetic members, or from the Infor dataset as `ml-connector demo` does"
    " (about 90% of its members, approved budgets of division P10 for write-back).",
)
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
    public_url_anaplan: str | None,
    public_url_infor: str | None,
    credentials_file: Path | None,
    ionapi_dir: Path | None,
    anaplan_data: str,
) -> None:
    """Serve the emulated Anaplan and Infor APIs until stopped."""
    from ml_connector.sandbox.credentials import CredentialsFileError, load_credentials

    options: dict[str, Any] = {
        "infor": with_infor,
        "port_infor": port_infor,
        "infor_postings": infor_postings,
        "infor_token_lifetime": infor_token_lifetime,
        "anaplan_public_url": public_url_anaplan,
        "infor_public_url": public_url_infor,
        "ionapi_dir": ionapi_dir,
    }
    if credentials_file is not None:
        try:
            options["credentials"] = load_credentials(credentials_file)
        except CredentialsFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--credentials-file") from None
    if anaplan_data == "infor":
        options["anaplan_data"] = _infor_aligned_model(seed, infor_postings, scale)
    asyncio.run(_serve(host, port_anaplan, scale, seed, token_lifetime, task_duration, as_json, options))


def _infor_aligned_model(seed: int, infor_postings: int | None, scale: int) -> dict[str, Any]:
    """The demo's Anaplan seed over the very dataset the Infor emulator serves (same seed and size)."""
    from ml_connector.commands.demo import anaplan_seed
    from ml_connector.sandbox.dataset import Dataset, DatasetConfig

    postings = infor_postings if infor_postings is not None else max(2_000, 20_000 * scale)
    return anaplan_seed(Dataset(DatasetConfig(seed=seed, gl_postings=postings)), budget_division="P10")


async def _serve(
    host: str,
    port_anaplan: int,
    scale: int,
    seed: int,
    token_lifetime: float | None,
    task_duration: float,
    as_json: bool,
    options: dict[str, Any] | None = None,
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
        host, port_anaplan, scale, seed, token_lifetime=token_lifetime, anaplan_config=config, **(options or {})
    ) as sb:
        info = sb.to_json()
        if as_json:
            sys.stdout.write(json.dumps(info) + "\n")
        else:
            a = info["anaplan"]
            sys.stdout.write(
                f"Anaplan emulator: {_urls(a)}\n  user {a['user']}  password {a['password']}\n"
                f"  workspace {a['workspace_name']} ({a['workspace']})  model {a['model_name']} ({a['model']})\n"
            )
            if "infor" in info:
                i = info["infor"]
                tenants = "".join(f"  {p} tenant {t['tenant']}: {t['ionapi']}\n" for p, t in i["tenants"].items())
                sys.stdout.write(f"Infor ION API Gateway emulator: {_urls(i)}\n{tenants}")
            sys.stdout.write("Stop with Ctrl-C.\n")
        sys.stdout.flush()
        await stop.wait()


def _urls(described: dict[str, Any]) -> str:
    url, public = described["url"], described.get("public_url", described["url"])
    return url if public == url else f"{public} (listening on {url})"
