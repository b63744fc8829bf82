"""FSM (Landmark) behind the gateway: the minimal generic list API of the pinned contract (all [INF]).

``GET /{TI}/FSM/fsm/soap/classes/{BC}/lists/_generic?_fields=a,b|_all&_limit=N&_start=OFFSET&_out=JSON[&_fts=ms]``
answers a JSON array of flat objects, in a stable order; ``_start`` is a 0-based offset into the
(filtered) list; ``_fts`` keeps records modified at or after that epoch-millisecond time. Read-only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ml_connector.sandbox.dataset import Posting, format_cents
from ml_connector.sandbox.infor.gateway import STATE_KEY
from ml_connector.sandbox.infor.overlay import LiveData

DEFAULT_LIMIT = 100  # [INF]

Obj = dict[str, Any]


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


def _posting(p: Posting) -> Obj:
    digit = p.division[1]
    return {"GLTransactionDetail": f"{digit}{p.serial:010d}", "AccountingEntity": p.division,
            "GeneralLedgerChartAccount": p.account, "AccountingUnit": p.cost_center,
            "PostingDate": p.date.isoformat(), "TransactionAmount": format_cents(p.amount), "Currency": p.currency,
            "Description": p.text, "LastModified": str(_ms(p.changed))}  # fmt: skip


@dataclass(frozen=True)
class BusinessClass:
    name: str
    fields: tuple[str, ...]
    rows: Callable[[LiveData, int], Iterator[Obj]]  # (data, start offset) -> objects from that offset on
    changed: Callable[[LiveData], list[Obj]] | None = None


def _gl_rows(data: LiveData, start: int) -> Iterator[Obj]:
    for plant in data.ds.plants:
        base = 2 * data.ds.site_journals(plant.code)
        added = sum(len(j.postings) for j in data.site_added.get(plant.code, []))
        if start >= base + added:
            start -= base + added
            continue
        for p in data.gl_site(plant.code, start + 1):
            yield _posting(p)
        start = 0


def _gl_changed(data: LiveData) -> list[Obj]:
    changed = data.changed_gl()
    order = {p.code: i for i, p in enumerate(data.ds.plants)}
    return [_posting(p) for p in sorted(changed, key=lambda p: (order[p.division], p.serial))]


def _vendors(data: LiveData, start: int) -> Iterator[Obj]:
    rows = ({"Vendor": p.id, "VendorName": p.name, "Currency": p.currency, "LastModified": str(_ms(p.changed))}
            for p in data.suppliers.scan())  # fmt: skip
    return itertools.islice(rows, start, None)


def _invoices(data: LiveData, start: int) -> Iterator[Obj]:
    def gen() -> Iterator[Obj]:
        for plant in data.ds.plants:
            for i in data.invoices_site(plant.code):
                yield {"Vendor": i.supplier, "Invoice": i.number, "InvoiceDate": i.invoice_date.isoformat(),
                       "DistributionDate": i.date.isoformat(), "DueDate": i.due_date.isoformat(),
                       "InvoiceAmount": format_cents(i.amount), "Currency": i.currency,
                       "GeneralLedgerChartAccount": i.account, "AccountingUnit": i.cost_center,
                       "AccountingEntity": i.division, "LastModified": str(_ms(i.changed))}  # fmt: skip

    return itertools.islice(gen(), start, None)


def _accounts(data: LiveData, start: int) -> Iterator[Obj]:
    rows = ({"GeneralLedgerChartAccount": a.code, "Description": a.name, "AccountType": a.type,
             "LastModified": str(_ms(a.changed))} for a in data.accounts.scan())  # fmt: skip
    return itertools.islice(rows, start, None)


def _units(data: LiveData, start: int) -> Iterator[Obj]:
    rows = ({"AccountingUnit": c.code, "Description": c.name, "AccountingEntity": c.plant,
             "LastModified": str(_ms(c.changed))} for c in data.cost_centers.scan())  # fmt: skip
    return itertools.islice(rows, start, None)


CLASSES: dict[str, BusinessClass] = {
    bc.name: bc
    for bc in (
        BusinessClass("GLTransactionDetail", ("GLTransactionDetail", "AccountingEntity", "GeneralLedgerChartAccount",
                      "AccountingUnit", "PostingDate", "TransactionAmount", "Currency", "Description", "LastModified"),
                      _gl_rows, _gl_changed),
        BusinessClass("Vendor", ("Vendor", "VendorName", "Currency", "LastModified"), _vendors),
        BusinessClass("PayablesInvoice", ("Vendor", "Invoice", "InvoiceDate", "DistributionDate", "DueDate",
                      "InvoiceAmount", "Currency", "GeneralLedgerChartAccount", "AccountingUnit", "AccountingEntity",
                      "LastModified"), _invoices),
        BusinessClass("GeneralLedgerChartAccount", ("GeneralLedgerChartAccount", "Description", "AccountType",
                      "LastModified"), _accounts),
        BusinessClass("AccountingUnit", ("AccountingUnit", "Description", "AccountingEntity", "LastModified"), _units),
    )
}  # fmt: skip


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _int(params: Any, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)
    if value < 0:
        raise ValueError(name)
    return value


async def list_handler(request: web.Request) -> web.Response:
    data = request.app[STATE_KEY].data
    bc = CLASSES.get(request.match_info["bc"])
    if bc is None:
        return _bad(f"Business class {request.match_info['bc']} does not exist (emulated: "
                    f"{', '.join(sorted(CLASSES))})", 404)  # fmt: skip
    params = request.query
    out = params.get("_out", "JSON")
    if out.upper() != "JSON":
        return _bad(f"_out={out} is not supported by the emulator; use _out=JSON")
    raw_fields = params.get("_fields", "_all").strip()
    if raw_fields in ("", "_all"):
        fields = list(bc.fields)
    else:
        fields = [f.strip() for f in raw_fields.split(",") if f.strip()]
        unknown = [f for f in fields if f not in bc.fields]
        if unknown:
            return _bad(f"Field(s) {', '.join(unknown)} do not exist in business class {bc.name}")
    try:
        limit = _int(params, "_limit", DEFAULT_LIMIT)
        start = _int(params, "_start", 0)
        fts = _int(params, "_fts", 0)
    except ValueError as exc:
        return _bad(f"{exc.args[0] if exc.args else 'parameter'}: _limit, _start and _fts must be whole numbers >= 0")
    if fts:
        if bc.changed is not None and fts >= _ms(data.ds.max_stamp):
            source: Iterator[Obj] = iter(bc.changed(data))
        else:
            source = (o for o in bc.rows(data, 0) if int(o["LastModified"]) >= fts)
        source = itertools.islice(source, start, None)
    else:
        source = bc.rows(data, start)
    page = list(itertools.islice(source, limit if limit else None))
    return web.json_response([{f: o.get(f) for f in fields} for o in page])


def routes() -> list[web.RouteDef]:
    return [web.get("/{tenant}/FSM/fsm/soap/classes/{bc}/lists/_generic", list_handler)]
