"""Throughput and peak memory of the streaming CSV/gzip chunker for 100k and 1M GL postings.

    .venv/bin/python benchmarks/csv_chunker.py [--sizes 100000,1000000] [--chunk-mb 10] [--level 6]

Each measurement runs in a fresh subprocess so its peak RSS is its own. Wall time depends on what else
the machine runs; CPU time (all threads of the process, gzip included) is the steadier figure. Paths:

* ``generate``   — only generating the records (the baseline the others include);
* ``detail``     — one CSV row per posting (a custom layout: code, account, cost center, period,
                   currency, amount, text) through CsvChunker with gzip and the line -> record map;
* ``gl_actuals`` — the default model's aggregated file (postings summed per account x cost center x
                   period, posting keys kept per cell) through CsvChunker with gzip.

Records are generated on the fly (never held in a list), as an extract would stream them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from ml_connector.records import GLPosting
from ml_connector.sync.csvfile import MB, CsvChunker
from ml_connector.sync.layouts import GL_ACTUALS, Layout, number, text

DETAIL: Layout[GLPosting] = Layout(
    "gl_detail",
    "gl_detail.csv",
    "gl_postings",
    (
        text("Code", lambda r: r.natural_key),
        text("Account", lambda r: r.account),
        text("Cost Center", lambda r: r.cost_center),
        text("Period", lambda r: r.period),
        text("Currency", lambda r: r.currency),
        number("Amount", lambda r: r.amount),
        text("Text", lambda r: r.text),
    ),
)


async def postings(count: int) -> AsyncIterator[GLPosting]:
    base = dt.date(2024, 1, 1)
    for n in range(count):
        day = base + dt.timedelta(days=n % 365)
        yield GLPosting(
            company="100",
            division="AAA",
            year=2024,
            journal=f"J{n // 8:07d}",
            line=n % 8 + 1,
            account=f"{4000 + (n * 7) % 240}",
            cost_center=f"CC{(n * 13) % 40:02d}",
            accounting_date=day,
            period=f"{day.year:04d}-{day.month:02d}",
            currency="EUR",
            amount=Decimal(((n * 7919) % 2_000_000) - 1_000_000) / 100,
            text=f"posting {n} for invoice INV-{n // 3}",
        )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(path: str, count: int, chunk_mb: int, level: int) -> dict[str, Any]:
    start_rss = rss_mb()
    started = time.perf_counter()
    cpu_started = time.process_time()
    raw = sent = chunks = 0
    if path == "generate":
        async for _ in postings(count):
            pass
        rows = count
    else:
        layout = DETAIL if path == "detail" else GL_ACTUALS
        chunker = CsvChunker(layout.csv_columns, chunk_size=chunk_mb * MB, compresslevel=level)
        async with chunker.refs:
            async for chunk in chunker.chunks(layout.rows(postings(count))):
                chunks += 1
                raw += chunk.raw_size
                sent += len(chunk.data)
            rows = chunker.stats.rows
            refs = len(chunker.refs)
            spilled = chunker.refs.spilled
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    out: dict[str, Any] = {
        "path": path,
        "postings": count,
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(cpu, 2),
        "postings_per_s": round(count / elapsed),
        "postings_per_cpu_s": round(count / cpu),
        "peak_rss_mb": round(rss_mb(), 1),
        "rss_before_mb": round(start_rss, 1),
    }
    if path != "generate":
        out |= {
            "rows": rows,
            "chunks": chunks,
            "raw_mb": round(raw / MB, 1),
            "gzip_mb": round(sent / MB, 2),
            "raw_mb_per_s": round(raw / MB / elapsed, 1),
            "ratio": round(raw / sent, 1) if sent else None,
            "line_refs": refs,
            "refs_spilled": spilled,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--paths", default="generate,detail,gl_actuals")
    parser.add_argument("--chunk-mb", type=int, default=10)
    parser.add_argument("--level", type=int, default=6)
    parser.add_argument("--one", nargs=2, metavar=("PATH", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = asyncio.run(measure(args.one[0], int(args.one[1]), args.chunk_mb, args.level))
        print(json.dumps(result))
        return
    print(f"chunk size {args.chunk_mb} MB, gzip level {args.level}, Python {sys.version.split()[0]}")
    header = f"{'path':<11} {'postings':>9} {'wall s':>7} {'cpu s':>7} {'postings/s':>11} {'per cpu s':>10}"
    header += f" {'rows':>9} {'chunks':>6} {'raw MB':>7}"
    header += f" {'gzip MB':>8} {'MB/s':>6} {'ratio':>6} {'peak RSS MB':>11}"
    print(header)
    for count in (int(s) for s in args.sizes.split(",")):
        for path in args.paths.split(","):
            command = [sys.executable, __file__, "--one", path, str(count), "--chunk-mb", str(args.chunk_mb)]
            command += ["--level", str(args.level)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout)
            print(
                f"{r['path']:<11} {r['postings']:>9} {r['seconds']:>7} {r['cpu_seconds']:>7} {r['postings_per_s']:>11}"
                f" {r['postings_per_cpu_s']:>10}"
                f" {r.get('rows', '-'):>9} {r.get('chunks', '-'):>6} {r.get('raw_mb', '-'):>7}"
                f" {r.get('gzip_mb', '-'):>8} {r.get('raw_mb_per_s', '-'):>6} {r.get('ratio', '-'):>6}"
                f" {r['peak_rss_mb']:>11}",
                flush=True,
            )


if __name__ == "__main__":
    main()
