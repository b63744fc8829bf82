"""How fast does the Infor emulator serve GL postings? (rows/s for the loops a client runs; server peak memory)

    .venv/bin/python benchmarks/infor_emulator_serve.py [--postings 1000000] [--batch 10000] [--limit 0]

The emulator runs in a child process (so the client's JSON parsing does not share its GIL); the
client runs the two extraction loops of the pinned contract over all postings of the company:

* M3 ``EXPORTMI/Select`` on ``FGLEDG`` per division and year with ``EGJRNO >= <last>`` cursor batches;
* SyteLine ``SLLedgers`` ``load`` per site with ``loadtype=NEXT`` bookmark pages;
* FSM ``GLTransactionDetail`` offset pages.

Printed: rows, seconds, rows/s per loop, and the emulator process' peak RSS (VmHWM).
``--limit N`` stops each loop after N rows (quick runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx


def _serve(postings: int, conn: Connection) -> None:
    from ml_connector.sandbox.dataset import DatasetConfig
    from ml_connector.sandbox.infor import launch_infor

    async def main() -> None:
        infor = await launch_infor(dataset=DatasetConfig(gl_postings=postings))
        conn.send({"url": infor.url, "files": {k: str(v) for k, v in infor.ionapi_files.items()}})
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # wait for "stop"
        await infor.stop()

    asyncio.run(main())


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _token(client: httpx.Client, ionapi: str) -> dict[str, str]:
    doc = json.loads(Path(ionapi).read_text())
    r = client.post(
        doc["pu"] + doc["ot"],
        data={"grant_type": "password", "username": doc["saak"], "password": doc["sask"]},
        auth=(doc["ci"], doc["cs"]),
    )
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}", "_base": doc["iu"] + "/" + doc["ti"]}


def exportmi_loop(client: httpx.Client, auth: dict[str, str], batch: int, limit: int) -> int:
    base = auth["_base"] + "/M3/m3api-rest/v2/execute/EXPORTMI/Select"
    headers = {"Authorization": auth["Authorization"]}
    total = 0
    for divi in ("P10", "P20", "P30"):
        for year in (2024, 2025, 2026):
            cursor, seen = 0, set()
            while True:
                q = (f"EGDIVI,EGYEA4,EGJRNO,EGJSNO,EGACDT,EGAIT1,EGAIT2,EGACAM,EGCUCD,EGLMDT from FGLEDG "
                     f"where EGDIVI = '{divi}' and EGYEA4 = {year} and EGJRNO >= {cursor}")  # fmt: skip
                r = client.get(f"{base};maxrecs={batch}", params={"QERY": q, "SEPC": ";"}, headers=headers)
                r.raise_for_status()
                records = r.json()["results"][0]["records"]
                last = cursor
                for rec in records:
                    f = rec["REPL"].split(";")
                    key = (f[2], f[3])
                    if key not in seen:
                        seen.add(key)
                        total += 1
                    last = int(f[2])
                if len(records) < batch or (limit and total >= limit):
                    break
                if last == cursor:
                    raise RuntimeError("cursor did not advance")
                cursor = last
                seen = {k for k in seen if int(k[0]) >= cursor}
            if limit and total >= limit:
                return total
    return total


def bookmark_loop(client: httpx.Client, auth: dict[str, str], batch: int, limit: int) -> int:
    url = auth["_base"] + "/CSI/IDORequestService/ido/load/SLLedgers"
    total = 0
    for site in ("P10", "P20", "P30"):
        headers = {"Authorization": auth["Authorization"], "X-Infor-MongooseConfig": f"NORTHWIND_CSI_TST_{site}"}
        params: dict[str, Any] = {
            "properties": "Site,TransNum,Acct,AcctUnit1,TransDate,DomAmount,CurrCode,RecordDate",
            "recordcap": batch,
        }
        while True:
            body = client.get(url, params=params, headers=headers).json()
            if not body["Success"]:
                raise RuntimeError(body["Message"])
            total += len(body["Items"])
            if not body["MoreRowsExist"] or (limit and total >= limit):
                break
            params = {**params, "loadtype": "NEXT", "bookmark": body["Bookmark"]}
        if limit and total >= limit:
            break
    return total


def fsm_loop(client: httpx.Client, auth: dict[str, str], batch: int, limit: int) -> int:
    url = auth["_base"] + "/FSM/fsm/soap/classes/GLTransactionDetail/lists/_generic"
    headers = {"Authorization": auth["Authorization"]}
    total = 0
    while True:
        rows = client.get(url, params={"_fields": "_all", "_limit": batch, "_start": total, "_out": "JSON"},
                          headers=headers).json()  # fmt: skip
        total += len(rows)
        if len(rows) < batch or (limit and total >= limit):
            return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=0, help="stop each loop after this many rows (0: all)")
    args = parser.parse_args()

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    started = time.perf_counter()
    proc = ctx.Process(target=_serve, args=(args.postings, child), daemon=True)
    proc.start()
    info = parent.recv()
    print(f"emulator with {args.postings:,} GL postings ready in {time.perf_counter() - started:.2f} s "
          f"(peak RSS {_peak_rss_mb(proc.pid or 0):.0f} MB)")  # fmt: skip
    try:
        with httpx.Client(timeout=300) as client:
            for name, loop, product in (
                ("M3 EXPORTMI FGLEDG batches", exportmi_loop, "M3"),
                ("SyteLine SLLedgers bookmarks", bookmark_loop, "SyteLine"),
                ("FSM GLTransactionDetail offsets", fsm_loop, "FSM"),
            ):
                auth = _token(client, info["files"][product])
                t0 = time.perf_counter()
                rows = loop(client, auth, args.batch, args.limit)
                seconds = time.perf_counter() - t0
                print(f"{name:34s} {rows:>10,} rows  {seconds:7.1f} s  {rows / seconds:>9,.0f} rows/s  "
                      f"(emulator peak RSS {_peak_rss_mb(proc.pid or 0):.0f} MB)")  # fmt: skip
    finally:
        parent.send("stop")
        proc.join(timeout=10)


if __name__ == "__main__":
    main()
