"""Audit store write and read throughput: N records' journeys (extracted with payload + an outcome each).

    .venv/bin/python benchmarks/audit_store.py [--records 200000] [--backends sqlite,postgres] [--pg DSN]

Without ``--pg`` a throwaway PostgreSQL cluster is started from Debian's packages (as the tests do).
Prints events/s written (batches of 5,000 per transaction), the time to count a run per flow, to
stream its failed records, and to look up last-loaded hashes in batches of 1,000 keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from ml_connector.audit.postgres import PostgresAuditStore
from ml_connector.audit.sqlbase import SqlAuditStore
from ml_connector.audit.sqlite import SqliteAuditStore
from ml_connector.audit.store import EventStatus, RecordEvent, RunInfo
from ml_connector.records import GLPosting, content_hash

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "audit"))
from postgres_cluster import running_cluster


def events(count: int) -> Iterator[RecordEvent]:
    for n in range(count):
        record = GLPosting(
            company="100",
            division="AAA",
            year=2024,
            journal=f"J{n // 8:07d}",
            line=n % 8 + 1,
            account=f"{4000 + n % 240}",
            cost_center=f"CC{n % 40:02d}",
            accounting_date=dt.date(2024, 1 + n % 12, 1),
            period=f"2024-{1 + n % 12:02d}",
            currency="EUR",
            amount=Decimal(n % 100_000) / 100,
        )
        hash_ = content_hash(record)
        yield RecordEvent.of(
            record, run_id="r1", flow="gl_actuals", status=EventStatus.EXTRACTED, with_payload=True, hash_=hash_
        )
        failed = n % 50 == 0
        yield RecordEvent.of(
            record,
            run_id="r1",
            flow="gl_actuals",
            status=EventStatus.REJECTED if failed else EventStatus.LOADED,
            hash_=hash_,
            file_row=n + 2,
            reason="Account not found" if failed else None,
        )


async def bench(name: str, store: SqlAuditStore, count: int) -> None:
    async with store:
        await store.start_run(RunInfo("r1", "bench", flows=("gl_actuals",)))
        prepared = list(events(count))  # generating records and hashes is not the store's time
        started = time.perf_counter()
        for start in range(0, len(prepared), 10_000):
            await store.record(prepared[start : start + 10_000])
        await store.flush()
        write = time.perf_counter() - started
        started = time.perf_counter()
        counts = await store.counts("r1")
        count_s = time.perf_counter() - started
        started = time.perf_counter()
        failed = sum([1 async for _ in store.failed("r1")])
        failed_s = time.perf_counter() - started
        keys = [f"100/AAA/2024/J{n // 8:07d}/{n % 8 + 1}" for n in range(0, count, max(1, count // 10_000))][:10_000]
        started = time.perf_counter()
        found = 0
        for i in range(0, len(keys), 1000):
            found += len(await store.last_loaded("bench", "gl_actuals", keys[i : i + 1000]))
        lookup_s = time.perf_counter() - started
    total = 2 * count
    print(
        f"{name:<9} {count:>9} records {total:>9} events  write {write:6.1f}s ({total / write:>8.0f} events/s)"
        f"  counts {count_s:5.2f}s  failed {failed:>6} in {failed_s:5.2f}s"
        f"  last_loaded {found:>5} keys in {lookup_s:5.2f}s  balanced={counts['gl_actuals'].imbalance() is None}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg", help="DSN of an existing PostgreSQL (default: start a throwaway cluster)")
    args = parser.parse_args()
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in backends:
            await bench("sqlite", SqliteAuditStore(Path(tmp) / "audit.db"), args.records)
        if "postgres" in backends:
            cluster = contextlib.nullcontext(args.pg) if args.pg else running_cluster()
            with cluster as dsn:
                await bench("postgres", PostgresAuditStore(dsn), args.records)


if __name__ == "__main__":
    asyncio.run(main())
