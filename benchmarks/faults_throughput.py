"""Throughput under throttling: a GL load with 5% of the calls on both sides answered 429, as a ratio of the
same load without faults.

For each size (default 100k and 1M GL postings) the same first full load of the ``gl_postings`` flow runs
twice through the real pipeline (:func:`ml_connector.sync.pipeline.run_sync`, production retry policy): once
against clean emulators, once against emulators whose fault injectors answer every call (Infor: token endpoint
and API; Anaplan: auth and API) 429 with probability ``--probability`` (fixed seeds) and
``Retry-After: --retry-after`` seconds. Each measurement gets fresh emulators in their own process and a fresh
pipeline process, so both runs do exactly the same work; ``--repeat`` runs of each kind alternate, and the
medians are compared. Both runs must succeed with the same outcome (postings loaded,
cells written); the figures are records/s of each and their ratio, with the 429s each side answered and the
client retried. Usage::

    .venv/bin/python benchmarks/faults_throughput.py [--sizes 100000,1000000] [--probability 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

PAGE = 2_000  # rows per EXPORTMI batch: the demo connection's pageSize
SEED = 7
FAULT_SEEDS = (1, 2)  # Anaplan, Infor


# ------------------------------------------------------------------------------------------------ emulators


def serve(gl_postings: int, probability: float, retry_after: float, conn: Connection) -> None:
    asyncio.run(_serve(gl_postings, probability, retry_after, conn))


async def _serve(gl_postings: int, probability: float, retry_after: float, conn: Connection) -> None:
    from ml_connector.sandbox.faults import FaultInjector, FaultRule
    from ml_connector.sandbox.server import start_sandbox

    async with await start_sandbox(scale=0, seed=SEED, infor_postings=gl_postings) as sandbox:
        assert sandbox.infor is not None
        # each injector draws from a generator with a fixed seed: the same faults for the same sequence of calls
        injectors: list[FaultInjector] = [sandbox.anaplan.injector, sandbox.infor.state.faults]
        for injector, seed in zip(injectors, FAULT_SEEDS, strict=True):
            injector.reseed(seed)
            if probability > 0:
                injector.add(FaultRule(status=429, retry_after=retry_after, probability=probability))
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
        conn.send(
            {
                side: {"calls": sum(r["seen"] for r in i.describe()), "429": i.injected.get("status:429", 0)}
                for side, i in (("anaplan", injectors[0]), ("infor", injectors[1]))
            }
        )


# ------------------------------------------------------------------------------------------------ the pipeline


def measure(info: dict[str, Any], directory: str, page: int, conn: Connection) -> None:
    conn.send(asyncio.run(_measure(info, Path(directory), page)))


async def _measure(info: dict[str, Any], directory: Path, page: int) -> dict[str, Any]:
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
    tuning = Tuning(  # the production retry policy (RetryPolicy defaults) on both sides
        infor_client=ClientOptions(rate_limit=0, concurrency=4),
        anaplan_rate_limit=0,
        poll=PollPolicy(initial=0.05, multiplier=1.5, maximum=1.0),
        infor_page_size=page,
        spill_dir=directory,
        dedupe_batch=5_000,
    )
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
        "rejected": gl.rejected,
        "cells": gl.rows,
        "seconds": elapsed,
        "api_errors": {side: dict(codes) for side, codes in result.api_errors.items()},
    }


def run_once(size: int, probability: float, retry_after: float, page: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(size, probability, retry_after, child), daemon=True)
    server.start()
    injected: dict[str, Any] = {}
    try:
        info = parent.recv()
        with tempfile.TemporaryDirectory(prefix="ml-connector-bench-") as directory:
            here, there = ctx.Pipe()
            worker = ctx.Process(target=measure, args=(info, directory, page, there))
            worker.start()
            figures: dict[str, Any] = here.recv()
            worker.join()
        parent.send("stop")
        injected = parent.recv()
    finally:
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
    figures["injected"] = injected
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="GL postings per run, comma-separated")
    parser.add_argument("--probability", type=float, default=0.05, help="share of calls answered 429 on each side")
    parser.add_argument("--retry-after", type=float, default=0.2, help="Retry-After of the 429s, in seconds")
    parser.add_argument("--page", type=int, default=PAGE, help="rows per Infor page (EXPORTMI batch)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind, alternating; medians are shown")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(
        f"GL load (flow gl_postings, first full load), Infor M3 emulator -> pipeline -> Anaplan emulator;"
        f" faulted: {args.probability:.0%} of the calls on both sides answered 429, Retry-After {args.retry_after:g}s"
    )
    print(
        f"{'postings':>10} {'clean s':>8} {'clean rec/s':>12} {'faulted s':>10} {'faulted rec/s':>14} {'ratio':>6}"
        f"  calls and 429s of the median faulted run (Infor; Anaplan); medians of {max(1, args.repeat)} runs each"
    )
    for size in sizes:
        cleans, faulteds = [], []
        for _ in range(max(1, args.repeat)):  # alternating, so that a busy moment of the machine hits both kinds
            cleans.append(run_once(size, 0.0, args.retry_after, args.page))
            faulteds.append(run_once(size, args.probability, args.retry_after, args.page))
        for run in cleans + faulteds:
            for key in ("records", "loaded", "rejected", "cells"):
                assert run[key] == cleans[0][key], (key, run[key], cleans[0][key])  # the same outcome, only slower
        clean = sorted(cleans, key=lambda r: r["seconds"])[len(cleans) // 2]
        faulted = sorted(faulteds, key=lambda r: r["seconds"])[len(faulteds) // 2]
        clean_rate = clean["records"] / clean["seconds"]
        faulted_rate = faulted["records"] / faulted["seconds"]
        seen, injected = faulted["api_errors"], faulted["injected"]
        sides = "; ".join(
            f"{side}: {injected[side]['calls']} calls, {injected[side]['429']} answered 429"
            f" ({seen.get(side, {}).get('429', 0)} seen by the client)"
            for side in ("infor", "anaplan")
        )
        print(
            f"{clean['records']:>10,} {clean['seconds']:>8.1f} {clean_rate:>12,.0f} {faulted['seconds']:>10.1f}"
            f" {faulted_rate:>14,.0f} {faulted_rate / clean_rate:>6.2f}  {sides}"
        )


if __name__ == "__main__":
    main()
