"""Admin routes of the Infor emulator, under ``/_sandbox/infor/`` (never behind the bearer check).

* ``POST /_sandbox/infor/mutate`` ``{"op": "<LiveData method>", ...arguments}`` — late changes
  (``update_posting``, ``add_posting``, ``update_invoice``, ``add_invoice``, ``update_supplier``, ...);
  answers the changed record(s).
* ``GET /_sandbox/infor/budgets?tenant=TI[&divi=&buno=&bver=]`` — M3 budget lines, or for SyteLine
  (``&site=P10``) the ``SLChartBps`` rows: the end state of a write-back.
* ``POST|DELETE /_sandbox/infor/quota`` (``{"allow", "interval", "retry_after", "tenant"}``),
  ``POST /_sandbox/infor/quota/reset``; ``POST /_sandbox/infor/tokens/expire``;
  ``POST /_sandbox/infor/gateway`` (``backend_delay``, ``gateway_timeout``, ``token_lifetime``);
  ``GET /_sandbox/infor/stats``; fault rules at ``/_sandbox/infor/faults`` (same as ``/_sandbox/faults``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from ml_connector.sandbox.dataset import format_cents
from ml_connector.sandbox.infor.gateway import STATE_KEY
from ml_connector.sandbox.infor.overlay import MutationError
from ml_connector.sandbox.infor.state import InforState

PREFIX = "/_sandbox/infor"

MUTATIONS = frozenset({
    "update_posting", "add_posting", "update_invoice", "add_invoice", "update_po_line", "update_supplier",
    "add_supplier", "update_customer", "add_customer", "update_item", "add_account", "update_account",
    "add_cost_center",
})  # fmt: skip

_AMOUNT_FIELDS = frozenset({"amount", "unit_price", "standard_cost_cents"})


def jsonable(value: Any) -> Any:
    """NamedTuples/dicts/lists of dataset rows as JSON (amounts in cents -> decimal strings)."""
    if hasattr(value, "_asdict"):
        return {k: format_cents(v) if k in _AMOUNT_FIELDS and isinstance(v, int) else jsonable(v)
                for k, v in value._asdict().items()}  # fmt: skip
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def mutate(state: InforState, op: str, **arguments: Any) -> Any:
    """Apply one late change by name (what ``POST /_sandbox/infor/mutate`` does)."""
    if op not in MUTATIONS:
        raise MutationError(f"unknown mutation {op!r}; known: {', '.join(sorted(MUTATIONS))}")
    method = getattr(state.data, op)
    try:
        return method(**arguments)
    except TypeError as exc:
        raise MutationError(f"{op}: {exc}") from None


def budgets(state: InforState, tenant_id: str, **filters: str) -> list[dict[str, Any]]:
    tenant = state.tenants.get(tenant_id)
    if tenant is None:
        raise KeyError(f"unknown tenant {tenant_id!r}")
    out: list[dict[str, Any]] = []
    if tenant.product == "M3":
        for key, cells in sorted(state.m3_budget_lines[tenant_id].items()):
            if any(filters.get(name) and filters[name] != value for name, value in zip(("divi", "buno", "bver"), key,
                                                                                      strict=True)):  # fmt: skip
                continue
            header = state.m3_budget_headers[tenant_id][key]
            for (ait1, ait2, cucd, bupe), cents in sorted(cells.items()):
                out.append({"DIVI": key[0], "BUNO": key[1], "BVER": key[2], "AIT1": ait1, "AIT2": ait2, "CUCD": cucd,
                            "BUPE": bupe, "BCUA": format_cents(cents), "locked": header.locked})  # fmt: skip
        return out
    if tenant.product == "SyteLine":
        for (tid, site), rows in sorted(state.chart_bps.items()):
            if tid != tenant_id or (filters.get("site") and filters["site"] != site):
                continue
            for bp_key in sorted(rows):
                bp = rows[bp_key]
                row: dict[str, Any] = {
                    "Site": site,
                    "Acct": bp.acct,
                    "AcctUnit1": bp.unit1,
                    "FiscalYear": bp.fiscal_year,
                    "RecordDate": bp.record_date.isoformat(),
                }
                row.update({f"BudAmt{i + 1}": format_cents(v) for i, v in enumerate(bp.bud)})
                row.update({f"PlanAmt{i + 1}": format_cents(v) for i, v in enumerate(bp.plan)})
                out.append(row)
        return out
    raise KeyError(f"tenant {tenant_id} ({tenant.product}) has no writable budgets")


def _state(request: web.Request) -> InforState:
    return request.app[STATE_KEY]


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "body is not valid JSON"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}', content_type="application/json")
    return body


async def mutate_handler(request: web.Request) -> web.Response:
    body = await _json(request)
    op = body.pop("op", None)
    try:
        result = mutate(_state(request), str(op), **body)
    except MutationError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"op": op, "result": jsonable(result)})


async def budgets_handler(request: web.Request) -> web.Response:
    query = dict(request.query)
    tenant = query.pop("tenant", "")
    try:
        rows = budgets(_state(request), tenant, **{k.lower(): v for k, v in query.items()})
    except KeyError as exc:
        return web.json_response({"error": str(exc.args[0])}, status=404)
    return web.json_response({"tenant": tenant, "rows": rows})


async def quota_handler(request: web.Request) -> web.Response:
    state = _state(request)
    if request.method == "DELETE":
        state.clear_quota()
        return web.Response(status=204)
    body = await _json(request)
    try:
        state.set_quota(int(body["allow"]), float(body["interval"]), retry_after=bool(body.get("retry_after", True)),
                        tenant=body.get("tenant"))  # fmt: skip
    except (KeyError, ValueError, TypeError) as exc:
        return web.json_response({"error": f"quota needs allow (int) and interval (seconds): {exc}"}, status=400)
    return web.json_response({"ok": True})


async def quota_reset_handler(request: web.Request) -> web.Response:
    _state(request).reset_quota_counters()
    return web.json_response({"ok": True})


async def expire_handler(request: web.Request) -> web.Response:
    return web.json_response({"expired": _state(request).expire_tokens()})


async def gateway_handler(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _json(request)
    for name in ("backend_delay", "gateway_timeout", "token_lifetime"):
        if name in body:
            try:
                setattr(state, name, float(body[name]))
            except (TypeError, ValueError):
                return web.json_response({"error": f"{name} must be a number of seconds"}, status=400)
    return web.json_response({"backend_delay": state.backend_delay, "gateway_timeout": state.gateway_timeout,
                              "token_lifetime": state.token_lifetime})  # fmt: skip


async def stats_handler(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response({"stats": dict(state.stats), "injected": state.faults.injected,
                              "data_version": state.data.version})  # fmt: skip


def routes() -> list[web.RouteDef]:
    async def faults_get(request: web.Request) -> web.Response:
        injector = _state(request).faults
        return web.json_response({"rules": injector.describe(), "injected": injector.injected})

    async def faults_post(request: web.Request) -> web.Response:
        from ml_connector.sandbox.faults import FaultRule

        try:
            rule = FaultRule.model_validate(await request.json())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        _state(request).faults.add(rule)
        return web.json_response({"rule": rule.model_dump()}, status=201)

    async def faults_delete(request: web.Request) -> web.Response:
        _state(request).faults.clear()
        return web.Response(status=204)

    return [
        web.post(PREFIX + "/mutate", mutate_handler),
        web.get(PREFIX + "/budgets", budgets_handler),
        web.post(PREFIX + "/quota", quota_handler),
        web.delete(PREFIX + "/quota", quota_handler),
        web.post(PREFIX + "/quota/reset", quota_reset_handler),
        web.post(PREFIX + "/tokens/expire", expire_handler),
        web.post(PREFIX + "/gateway", gateway_handler),
        web.get(PREFIX + "/stats", stats_handler),
        web.get(PREFIX + "/faults", faults_get),
        web.post(PREFIX + "/faults", faults_post),
        web.delete(PREFIX + "/faults", faults_delete),
    ]
