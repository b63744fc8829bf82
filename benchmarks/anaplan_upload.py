"""Upload throughput and client memory of the Anaplan client against the emulator on loopback.

    .venv/bin/python benchmarks/anaplan_upload.py                  # 10k, 100k and 1M rows
    .venv/bin/python benchmarks/anaplan_upload.py --rows 250000 --repeat 3

The emulator runs in this process (on a background event loop); every measured upload runs in a
fresh child process that only runs the client, so the peak-memory figure is the client's, never the
emulator's. Variants, all sending the same CSV bytes to the same file of the same emulator:

* ``chunked``  : ``upload_file`` from an async stream (8 MiB line-aligned chunks, gzip level 1, 4 in parallel)
* ``raw``      : the same without gzip
* ``single``   : one plain ``PUT files/{id}`` of the whole file (needs the whole file in memory)

Figures: seconds, MB/s (uncompressed MB = 10^6 bytes), records/s, bytes on the wire, and the peak
RSS growth of the child (peak RSS, VmHWM, minus the RSS before the data is generated: the single
request needs the whole file in memory, the stream holds one 10,000-row block).
The ratio column is throughput / single-request throughput (n/a above 50 MB, the most one PUT may
carry). Loopback has no bandwidth limit, so gzip only costs CPU here; over a WAN link the compressed
bytes are what matters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROW_BLOCK = 10_000
SINGLE_LIMIT = 50_000_000  # a single PUT is one "chunk": at most 50 MB
HEADER = b"Account,Cost Center,Period,Amount,Postings\n"


def block() -> bytes:
    """10,000 GL-actual rows (about 33 bytes each); the stream repeats this block."""
    accounts = [f"{6000 + 10 * i}" for i in range(10)]
    centers = ["CC100", "CC101", "CC102"]
    return b"".join(
        f"{accounts[i % 10]},{centers[i % 3]},2025-{1 + i % 12:02d},{(i * 7919) % 100000 / 100:.2f},{i % 7}\n".encode()
        for i in range(ROW_BLOCK)
    )


def file_size(rows: int, rows_block: bytes) -> int:
    full, rest = divmod(rows, ROW_BLOCK)
    tail = b"".join(rows_block.splitlines(keepends=True)[:rest])
    return len(HEADER) + full * len(rows_block) + len(tail)


async def stream(rows: int, rows_block: bytes) -> AsyncIterator[bytes]:
    yield HEADER
    full, rest = divmod(rows, ROW_BLOCK)
    for _ in range(full):
        yield rows_block
    if rest:
        yield b"".join(rows_block.splitlines(keepends=True)[:rest])


def whole(rows: int, rows_block: bytes) -> bytes:
    full, rest = divmod(rows, ROW_BLOCK)
    return HEADER + rows_block * full + b"".join(rows_block.splitlines(keepends=True)[:rest])


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS, and return that RSS in KiB.

    ``ru_maxrss`` would not do: it survives ``execve`` and so includes the parent's (the emulator's) peak.
    """
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _status_kb("VmRSS")


def peak_rss_kb() -> int:
    return _status_kb("VmHWM")


# ----------------------------------------------------------------------------------------- child


async def child(variant: str, rows: int, target: dict[str, str]) -> dict[str, Any]:
    from ml_connector.anaplan import AnaplanClient, BasicAuth

    auth = BasicAuth(target["user"], target["password"], auth_url=target["url"])
    async with AnaplanClient(auth, api_url=target["url"] + "/2/0", rate_limit=0) as client:
        model = client.model(target["workspace"], target["model"])
        file_id = (await model.find_file("gl_actuals.csv")).id
        await client.me()  # authenticate before measuring
        baseline = reset_peak_rss()
        rows_block = block()
        expected = file_size(rows, rows_block)
        data = whole(rows, rows_block) if variant == "single" else None  # the single request needs it all
        started = time.perf_counter()
        if variant == "single":
            assert data is not None
            await model.files.upload_single(file_id, data)
            sent, chunks = len(data), 1
        else:
            result = await model.upload_file(file_id, stream(rows, rows_block), compress=variant == "chunked")
            assert result.raw_bytes == expected, (result.raw_bytes, expected)
            sent, chunks = result.sent_bytes, result.chunks
        seconds = time.perf_counter() - started
        peak = peak_rss_kb()
        # check what arrived: the emulator's chunk list adds up to the file
        listed = await model.files.chunks(file_id)
        assert len(listed) == chunks, (len(listed), chunks)
    return {
        "variant": variant,
        "rows": rows,
        "bytes": expected,
        "sent": sent,
        "chunks": chunks,
        "seconds": seconds,
        "peak_growth_mb": max(0, peak - baseline) / 1024,
        "data_held_mb": (len(data) / 1e6) if data is not None else 0.0,
    }


# ----------------------------------------------------------------------------------------- parent


def run_child(variant: str, rows: int, target: dict[str, str]) -> dict[str, Any]:
    env = dict(os.environ, ANAPLAN_BENCH_TARGET=json.dumps(target))
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--rows", str(rows)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"child {variant} {rows} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="row counts (repeatable); default 10k, 100k, 1M")
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; the best time is reported")
    parser.add_argument("--variant", choices=["chunked", "raw", "single"], action="append", help="default: all")
    parser.add_argument("--child", choices=["chunked", "raw", "single"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.rows or [10_000, 100_000, 1_000_000]

    if args.child:
        target = json.loads(os.environ["ANAPLAN_BENCH_TARGET"])
        print(json.dumps(asyncio.run(child(args.child, sizes[0], target))))
        return

    from ml_connector.sandbox.anaplan import EmulatorConfig
    from ml_connector.sandbox.runtime import ThreadedServers
    from ml_connector.sandbox.server import start_anaplan

    servers = ThreadedServers()
    handle = servers.call(lambda: start_anaplan(config=EmulatorConfig(), scale=1))
    target = {
        "url": handle.url,
        "user": handle.user,
        "password": handle.password,
        "workspace": handle.workspace,
        "model": handle.model,
    }
    try:
        print(f"emulator at {handle.url}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
        header = (
            f"{'rows':>9} {'variant':>8} {'MB':>7} {'chunks':>6} {'wire MB':>8} {'s':>7} {'MB/s':>7} "
            f"{'records/s':>10} {'peak MB':>8} {'ratio':>6}"
        )
        print(header)
        print("-" * len(header))
        for rows in sizes:
            variants = [v for v in ("chunked", "raw") if not args.variant or v in args.variant]
            if file_size(rows, block()) <= SINGLE_LIMIT and (not args.variant or "single" in args.variant):
                variants.append("single")
            best: dict[str, dict[str, Any]] = {}
            for _ in range(max(1, args.repeat)):
                for variant in variants:
                    figures = run_child(variant, rows, target)
                    if variant not in best or figures["seconds"] < best[variant]["seconds"]:
                        best[variant] = figures
            if not variants:
                continue
            single = best.get("single")
            single_rate = single["bytes"] / single["seconds"] if single else None
            for variant in variants:
                f = best[variant]
                rate = f["bytes"] / f["seconds"]
                ratio = f"{rate / single_rate:>6.2f}" if single_rate else f"{'n/a':>6}"
                print(
                    f"{rows:>9,} {variant:>8} {f['bytes'] / 1e6:>7.1f} {f['chunks']:>6} {f['sent'] / 1e6:>8.2f} "
                    f"{f['seconds']:>7.3f} {rate / 1e6:>7.1f} {rows / f['seconds']:>10,.0f} "
                    f"{f['peak_growth_mb']:>8.1f} {ratio}"
                )
    finally:
        servers.call(handle.server.stop)
        servers.close()


if __name__ == "__main__":
    main()
