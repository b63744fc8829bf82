"""Extraction throughput and client-side peak memory of the Infor client, against the emulator.

For each size (default 100k and 1M GL postings) and product line:

* **M3**: ``gl_postings`` through ``EXPORTMI`` cursor batching (``FGLEDG`` per division x year);
* **SyteLine**: ``gl_postings`` through Mongoose ``SLLedgers`` bookmark paging (per site);

it runs the real client (records parsed into canonical ``GLPosting`` objects) and a *bare loop* that
fetches the same pages with plain httpx (same queries, same concurrency, JSON decoded, nothing mapped),
and prints records/s, the client/bare throughput ratio and the client's peak RSS.

The emulator runs in its own process; every measurement runs in a fresh process, so the peak RSS
(``ru_maxrss``) is the client's alone. Usage::

    .venv/bin/python benchmarks/infor_extract.py [--sizes 100000,1000000] [--products M3,SyteLine]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

M3_BATCH = 10_000
CSI_PAGE = 2_000
CONCURRENCY = 4
SITES = ("P10", "P20", "P30")


# ------------------------------------------------------------------------------------------------ emulator


def serve(gl_postings: int, directory: str, conn: Connection) -> None:
    asyncio.run(_serve(gl_postings, directory, conn))


async def _serve(gl_postings: int, directory: str, conn: Connection) -> None:
    from ml_connector.sandbox.dataset import DatasetConfig
    from ml_connector.sandbox.infor import start_infor

    dataset = DatasetConfig(gl_postings=gl_postings)
    async with start_infor(dataset=dataset, ionapi_dir=directory, products=("M3", "SyteLine"),
                           token_lifetime=7200.0) as infor:  # fmt: skip
        conn.send({"url": infor.url, "files": {p: str(f) for p, f in infor.ionapi_files.items()},
                   "count": infor.state.dataset.gl_count})  # fmt: skip
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)


# ------------------------------------------------------------------------------------------------ measurements


def rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(mode: str, product: str, ionapi: str, conn: Connection) -> None:
    import gc

    gc.collect()
    base = rss_kb()
    started = time.perf_counter()
    count = asyncio.run(CASES[(mode, product)](ionapi))
    elapsed = time.perf_counter() - started
    conn.send({"count": count, "seconds": elapsed, "peak_kb": rss_kb(), "base_kb": base})


async def client_m3(ionapi: str) -> int:
    from ml_connector.infor import ClientOptions, IonApiCredentials, M3Options, open_product_line
    from ml_connector.records import GLPosting

    options = M3Options(company="100", divisions=SITES, export_batch_size=M3_BATCH,
                        client=ClientOptions(rate_limit=0, concurrency=CONCURRENCY))  # fmt: skip
    count = 0
    async with open_product_line("M3", IonApiCredentials.load(ionapi), options) as m3:
        async for item in m3.read("gl_postings"):
            if not isinstance(item, GLPosting):
                raise SystemExit(f"unexpected {item!r}")
            count += 1
    return count


async def client_syteline(ionapi: str) -> int:
    from ml_connector.infor import ClientOptions, IonApiCredentials, SyteLineOptions, open_product_line
    from ml_connector.records import GLPosting

    creds = IonApiCredentials.load(ionapi)
    options = SyteLineOptions(sites=SyteLineOptions.configs_for(creds.ti, SITES), page_size=CSI_PAGE,
                              client=ClientOptions(rate_limit=0, concurrency=CONCURRENCY))  # fmt: skip
    count = 0
    async with open_product_line("SyteLine", creds, options) as sl:
        async for item in sl.read("gl_postings"):
            if not isinstance(item, GLPosting):
                raise SystemExit(f"unexpected {item!r}")
            count += 1
    return count


async def _token(http: Any, doc: dict[str, str]) -> str:
    response = await http.post(doc["pu"] + doc["ot"], data={
        "grant_type": "password", "username": doc["saak"], "password": doc["sask"], "client_id": doc["ci"],
        "client_secret": doc["cs"]})  # fmt: skip
    response.raise_for_status()
    return str(response.json()["access_token"])


async def bare_m3(ionapi: str) -> int:
    """The same EXPORTMI batches as the client, decoded from JSON and counted, nothing else."""
    import json

    import httpx

    doc = json.loads(open(ionapi).read())  # noqa: ASYNC230, SIM115 - once, before any request
    base = f"{doc['iu']}/{doc['ti']}/M3/m3api-rest/v2/execute/EXPORTMI/Select"
    fields = "EGCONO,EGDIVI,EGYEA4,EGJRNO,EGJSNO,EGACDT,EGAIT1,EGAIT2,EGACAM,EGCUCD,EGVSER,EGVONO,EGTRCD,EGLMDT,EGVTXT"
    limits = httpx.Limits(max_connections=CONCURRENCY + 2)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        headers = {"Authorization": f"Bearer {await _token(http, doc)}"}
        slots = asyncio.Semaphore(CONCURRENCY)

        async def select(where: str, maxrecs: int) -> list[str]:
            async with slots:
                query = f"{fields} from FGLEDG where {where}"
                params = {"QERY": query, "SEPC": "|", "maxrecs": maxrecs, "cono": "100"}
                response = await http.get(base, headers=headers, params=params)
            response.raise_for_status()
            return [r["REPL"] for r in response.json()["results"][0]["records"]]

        async def partition(division: str, year: str) -> int:
            count, cursor, seen = 0, None, set()
            while True:
                bound = f" and EGJRNO >= {cursor}" if cursor else ""
                rows = await select(f"EGDIVI = '{division}' and EGYEA4 = {year}{bound}", M3_BATCH)
                for row in rows:
                    parts = row.split("|", 5)
                    if cursor is not None and parts[3] == cursor and parts[4] in seen:
                        continue
                    count += 1
                if len(rows) < M3_BATCH:
                    return count
                cursor = rows[-1].split("|", 5)[3]
                seen = {r.split("|", 5)[4] for r in rows if r.split("|", 5)[3] == cursor}

        partitions = []
        for division in SITES:
            last = None
            while True:  # the same year skip-scan as the client
                bound = f" and EGYEA4 > {last}" if last else ""
                rows = await select(f"EGDIVI = '{division}'{bound}", 1)
                if not rows:
                    break
                last = rows[0].split("|", 3)[2]
                partitions.append((division, last))
        return sum(await asyncio.gather(*(partition(d, y) for d, y in partitions)))


async def bare_syteline(ionapi: str) -> int:
    """The same SLLedgers bookmark pages as the client, decoded from JSON and counted."""
    import json

    import httpx

    doc = json.loads(open(ionapi).read())  # noqa: ASYNC230, SIM115
    url = f"{doc['iu']}/{doc['ti']}/CSI/IDORequestService/ido/load/SLLedgers"
    props = "Site,TransNum,Acct,AcctUnit1,TransDate,DomAmount,CurrCode,Ref,RecordDate"
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY + 2), timeout=120) as http:
        token = await _token(http, doc)

        async def site(code: str) -> int:
            headers = {"Authorization": f"Bearer {token}", "X-Infor-MongooseConfig": f"{doc['ti']}_{code}"}
            count, bookmark = 0, None
            while True:
                params = {"properties": props, "recordcap": CSI_PAGE, "loadtype": "NEXT" if bookmark else "FIRST"}
                if bookmark:
                    params["bookmark"] = bookmark
                response = await http.get(url, headers=headers, params=params)
                response.raise_for_status()
                body = response.json()
                count += len(body["Items"])
                if not body["MoreRowsExist"]:
                    return count
                bookmark = body["Bookmark"]

        return sum(await asyncio.gather(*(site(s) for s in SITES)))


CASES = {
    ("client", "M3"): client_m3,
    ("bare", "M3"): bare_m3,
    ("client", "SyteLine"): client_syteline,
    ("bare", "SyteLine"): bare_syteline,
}


def run_case(ctx: Any, mode: str, product: str, ionapi: str) -> dict[str, Any]:
    parent, child = ctx.Pipe()
    process = ctx.Process(target=measure, args=(mode, product, ionapi, child))
    process.start()
    result: dict[str, Any] = parent.recv()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="GL postings per run, comma-separated")
    parser.add_argument("--products", default="M3,SyteLine")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    print(f"{'product':9} {'postings':>9} {'mode':6} {'records':>9} {'seconds':>8} {'records/s':>10} "
          f"{'peak RSS':>9} {'growth':>8}  ratio client/bare")  # fmt: skip
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-ionapi-") as directory:
            parent, child = ctx.Pipe()
            server = ctx.Process(target=serve, args=(size, directory, child), daemon=True)
            server.start()
            info = parent.recv()
            try:
                for product in args.products.split(","):
                    results = {
                        mode: run_case(ctx, mode, product, info["files"][product]) for mode in ("bare", "client")
                    }
                    for mode in ("bare", "client"):
                        r = results[mode]
                        if r["count"] != info["count"]:
                            raise SystemExit(f"{product} {mode}: {r['count']} records, expected {info['count']}")
                        rate = r["count"] / r["seconds"]
                        ratio = ""
                        if mode == "client":
                            bare_rate = results["bare"]["count"] / results["bare"]["seconds"]
                            ratio = f"{rate / bare_rate:.2f}"
                        print(f"{product:9} {size:>9} {mode:6} {r['count']:>9} {r['seconds']:>8.2f} {rate:>10,.0f} "
                              f"{r['peak_kb'] / 1024:>7.1f}MB {(r['peak_kb'] - r['base_kb']) / 1024:>6.1f}MB  {ratio}",
                              flush=True)  # fmt: skip
            finally:
                parent.send("stop")
                server.join(timeout=30)


if __name__ == "__main__":
    main()
