"""End-to-end throughput of the sync pipeline: GL postings from the Infor emulator to the Anaplan emulator.

For each size (default 100k and 1M GL postings) a first full load of the ``gl_postings`` flow runs through
the real pipeline (:func:`ml_connector.sync.pipeline.run_sync`): alignment (the model starts with empty
lists, so every account and cost center is added), M3 EXPORTMI extraction, content-hash dedupe, aggregation
into ``GL Actuals`` cells, CSV, gzip chunks, upload, import, failure-dump mapping, audit (SQLite, one
``extracted`` event with payload and one outcome event per posting) and reconciliation.

Both emulators run in their own process, and every measurement in a fresh process, so the figures are the
pipeline's: records/s (postings / wall time of the run), peak RSS of the pipeline process (``ru_maxrss``,
and above the process's baseline after imports), and the share of the run's time per stage (extract,
transform/CSV, upload, import task, audit; exclusive of nesting). Usage::

    .venv/bin/python benchmarks/end_to_end.py [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

PAGE = 10_000
SEED = 7


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------ emulators


def serve(gl_postings: int, conn: Connection) -> None:
    asyncio.run(_serve(gl_postings, conn))


async def _serve(gl_postings: int, conn: Connection) -> None:
    from ml_connector.sandbox.server import start_sandbox

    async with await start_sandbox(scale=0, seed=SEED, infor_postings=gl_postings) as sandbox:
        assert sandbox.infor is not None
        anaplan = sandbox.anaplan
        conn.send(
            {
                "anaplan_url": anaplan.url,
                "user": anaplan.user,
                "password": anaplan.password,
                "workspace": anaplan.seeded.model.workspace.name,
                "model": anaplan.seeded.model.name,
                "ionapi": str(sandbox.infor.ionapi("M3")),
                "tenant": sandbox.infor.tenant_id("M3"),
                "count": sandbox.infor.state.dataset.gl_count,
            }
        )
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)


# ------------------------------------------------------------------------------------------------ the pipeline


def measure(info: dict[str, Any], directory: str, conn: Connection) -> None:
    conn.send(asyncio.run(_measure(info, Path(directory))))


async def _measure(info: dict[str, Any], directory: Path) -> dict[str, Any]:
    from ml_connector.anaplan import PollPolicy
    from ml_connector.audit import create_store
    from ml_connector.infor import ClientOptions
    from ml_connector.spec import load_connection
    from ml_connector.sync.credentials import load_credentials
    from ml_connector.sync.demo import DemoTarget, write_demo_files
    from ml_connector.sync.locks import InProcessLock
    from ml_connector.sync.options import Tuning
    from ml_connector.sync.pipeline import run_sync

    target = DemoTarget(
        product_line="M3",
        ionapi_file=Path(info["ionapi"]),
        tenant=info["tenant"],
        company="100",
        sites=("P10", "P20", "P30"),
        anaplan_url=info["anaplan_url"],
        anaplan_user=info["user"],
        anaplan_password=info["password"],
        workspace=info["workspace"],
        model=info["model"],
        budget_division="P10",
    )
    files = write_demo_files(directory, target, name="bench", audit_path=directory / "audit.sqlite3")
    connection = load_connection(files.connection_file)
    credentials = load_credentials(connection, files.secrets_dir)
    tuning = Tuning(
        infor_client=ClientOptions(rate_limit=0, concurrency=4),
        anaplan_rate_limit=0,
        poll=PollPolicy(initial=0.05, multiplier=1.5, maximum=1.0),
        infor_page_size=PAGE,
        spill_dir=directory,
        dedupe_batch=5_000,
    )
    baseline = rss_mb()
    async with create_store(files.audit_path) as store:
        started = time.perf_counter()
        result = await run_sync(connection, flows=["gl_postings"], credentials=credentials, audit=store,
                                lock=InProcessLock("benchmark"), tuning=tuning)  # fmt: skip
        elapsed = time.perf_counter() - started
    gl = result.flow("gl_postings")
    assert gl is not None
    assert result.succeeded, result.problems
    return {
        "records": gl.extracted,
        "loaded": gl.loaded,
        "cells": gl.rows,
        "seconds": elapsed,
        "peak_mb": rss_mb(),
        "baseline_mb": baseline,
        "timings": dict(result.timings),
        "audit_mb": files.audit_path.stat().st_size / 1e6,
    }


def run_size(size: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(size, child), daemon=True)
    server.start()
    try:
        info = parent.recv()
        with tempfile.TemporaryDirectory(prefix="ml-connector-bench-") as directory:
            here, there = ctx.Pipe()
            worker = ctx.Process(target=measure, args=(info, directory, there))
            worker.start()
            figures: dict[str, Any] = here.recv()
            worker.join()
        figures["count"] = info["count"]
        return figures
    finally:
        parent.send("stop")
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="GL postings per run, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print("End-to-end: Infor M3 emulator -> pipeline -> Anaplan emulator, flow gl_postings, first full load")
    print(f"{'postings':>10} {'cells':>7} {'seconds':>8} {'records/s':>10} {'peak RSS':>9} {'above base':>10}  stages")
    for size in sizes:
        f = run_size(size)
        timings: dict[str, float] = f["timings"]
        total = sum(timings.values()) or 1.0
        order = ["extract", "transform", "upload", "import", "audit", "other"]
        stages = ", ".join(f"{k} {timings.get(k, 0.0) / total:.0%}" for k in order if k in timings)
        print(
            f"{f['records']:>10,} {f['cells']:>7,} {f['seconds']:>8.1f} {f['records'] / f['seconds']:>10,.0f}"
            f" {f['peak_mb']:>7.0f}MB {f['peak_mb'] - f['baseline_mb']:>8.0f}MB  {stages}"
            f"  (audit db {f['audit_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
