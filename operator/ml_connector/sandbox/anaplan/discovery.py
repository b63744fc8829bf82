"""Discovery endpoints (reference §3): users, workspaces, models, lists, modules, line items, views,
imports, exports, processes, actions, files, versions, dimensions, calendar and model status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ml_connector.sandbox.anaplan import ids
from ml_connector.sandbox.anaplan.context import Context, model_routes, object_id
from ml_connector.sandbox.anaplan.http import API_PREFIX, ApiError, envelope, flag, json_body, paged, sort_items
from ml_connector.sandbox.anaplan.state import ListDef, ModelState, Module

LINE_ITEMS_DIMENSION = {"id": "20000000002", "name": "Line Items"}

_FORMAT_METADATA: dict[str, dict[str, Any]] = {
    "NUMBER": {
        "dataType": "NUMBER",
        "comparisonIncrease": "GOOD",
        "customUnits": None,
        "decimalPlaces": 2,
        "decimalSeparator": "FULL_STOP",
        "unitsDisplayType": "NONE",
        "unitsType": "NONE",
        "zeroFormat": "ZERO",
        "groupingSeparator": "COMMA",
        "minimumSignificantDigits": 4,
        "negativeNumberNotation": "MINUS_SIGN",
    },
    "BOOLEAN": {"dataType": "BOOLEAN"},
    "TEXT": {"dataType": "TEXT", "textType": "GENERAL"},
}


def view_layout(module: Module) -> dict[str, list[dict[str, str]]]:
    """The emulator's default module view: every dimension on rows, line items on columns, no pages."""
    return {
        "rows": [{"id": str(d.id), "name": d.name} for d in module.dimensions],
        "columns": [LINE_ITEMS_DIMENSION],
        "pages": [],
    }


def routes(ctx: Context) -> list[web.RouteDef]:
    cfg = ctx.config

    def schema(model: ModelState, kind: str) -> str:
        return f"/models/{model.id}/objects/{kind}"

    # -- users, workspaces, models ------------------------------------------------------------------

    async def users_me(request: web.Request) -> web.Response:
        user = ctx.user(request)
        return envelope(cfg, "/objects/user", user=user.to_json())

    async def user_by_id(request: web.Request) -> web.Response:
        ctx.user(request)
        other = ctx.state.users.get(request.match_info["user_id"])
        if other is None:
            raise ApiError(404)
        return envelope(cfg, "/objects/user", user=other.to_json())

    async def users(request: web.Request) -> web.Response:
        ctx.user(request)
        items = [u.to_json() for u in ctx.state.users.values()]
        return paged(request, cfg, "/objects/user", "users", items)

    async def workspaces(request: web.Request) -> web.Response:
        user = ctx.user(request)
        details = flag(request, "tenantDetails")
        items = [w.to_json(details) for w in ctx.state.visible_workspaces(user)]
        items = sort_items(request, items, {"name", "sizeAllowance"})
        return paged(request, cfg, "/objects/workspace", "workspaces", items)

    async def workspace(request: web.Request) -> web.Response:
        user = ctx.user(request)
        ws = next((w for w in ctx.state.visible_workspaces(user) if w.id == request.match_info["workspace_id"]), None)
        if ws is None:
            raise ApiError(404)
        return envelope(cfg, "/objects/workspace", workspace=ws.to_json(True))

    async def models(request: web.Request) -> web.Response:
        user = ctx.user(request)
        ws_id = request.match_info.get("workspace_id")
        visible = ctx.state.visible_models(user)
        if ws_id is not None:
            if ws_id not in {m.workspace.id for m in visible}:
                raise ApiError(404)
            visible = [m for m in visible if m.workspace.id == ws_id]
        items = [m.to_json(flag(request, "modelDetails")) for m in visible]
        items = sort_items(request, items, {"name", "activeState"})
        return paged(request, cfg, "/objects/model", "models", items)

    async def model(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        body = m.to_json(flag(request, "modelDetails"))
        body["modelTransactionRunning"] = m.busy
        return envelope(cfg, "/objects/model", model=body)

    async def model_405(request: web.Request) -> web.Response:
        ctx.model(request)
        raise ApiError(405)

    async def model_status(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        task = m.running
        status: dict[str, Any] = {
            "currentStep": "Open",
            "progress": -1.0,
            "creationTime": cfg.now_ms(),
            "taskId": None,
            "tooltip": None,
            "exportTaskType": None,
            "peakMemoryUsageEstimate": None,
            "peakMemoryUsageTime": None,
        }
        if task is not None:
            user = ctx.state.users.get(task.user_id)
            kind = {"imports": "Import", "exports": "Export", "processes": "Process", "actions": "Action"}[task.kind]
            status |= {
                "currentStep": "Processing ...",
                "progress": task.progress,
                "taskId": task.id,
                "tooltip": f"The system is currently processing an {kind}:\n\n{kind} started by user "
                f"{user.email if user else ''} \nTasks can be cancelled in Model Management.",
            }
            if task.kind == "exports":
                status["exportTaskType"] = "EXPORT"
        return web.json_response({"requestStatus": status})

    async def model_open(request: web.Request) -> web.Response:
        ctx.model(request)
        return web.Response(status=202)

    async def model_close(request: web.Request) -> web.Response:
        ctx.model(request)
        return web.Response(status=204)

    # -- model objects ----------------------------------------------------------------------------

    async def lists(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        items = sort_items(request, [lst.to_summary() for lst in m.lists.values()], None)
        return paged(request, cfg, schema(m, "list"), "lists", items)

    async def list_metadata(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        lst = m.lists.get(object_id(request, "list_id"))
        if lst is None:
            raise ApiError(404)
        return envelope(cfg, schema(m, "list"), metadata=_list_metadata(lst))

    async def modules(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        items = [_named(mod.id, mod.name, mod.code) for mod in m.modules.values()]
        return paged(request, cfg, schema(m, "module"), "modules", sort_items(request, items, None))

    async def line_items(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        mods = list(m.modules.values())
        if "module_id" in request.match_info:
            mod = m.modules.get(object_id(request, "module_id"))
            if mod is None:
                raise ApiError(404)
            mods = [mod]
        include_all = flag(request, "includeAll")
        items = [_line_item(m, mod, li, include_all) for mod in mods for li in mod.line_items]
        return envelope(cfg, schema(m, "lineItem"), items=items or None)

    async def line_item_dimensions(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        mod = _module_of_line_item(m, object_id(request, "line_item_id"))
        dims = [{"id": str(d.id), "name": d.name} for d in mod.dimensions]
        return envelope(cfg, schema(m, "dimension"), dimensions=dims or None)

    async def views(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        mods = list(m.modules.values())
        if "module_id" in request.match_info:
            mod = m.modules.get(object_id(request, "module_id"))
            if mod is None:
                raise ApiError(404)
            mods = [mod]
        items = [{"id": str(mod.id), "name": mod.name, "code": mod.code, "moduleId": str(mod.id)} for mod in mods]
        return paged(request, cfg, schema(m, "view"), "views", sort_items(request, items, None))

    async def view(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        mod = _view_module(m, object_id(request, "view_id"))
        body = {
            "meta": {"schema": cfg.schema_base + schema(m, "view")},
            "status": {"code": 200, "message": "Success"},
            "viewId": str(mod.id),
            "viewName": mod.name,
            **view_layout(mod),
        }
        return web.json_response(body)

    async def imports(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        items = []
        for imp in m.imports.values():
            item: dict[str, Any] = {
                "id": str(imp.id),
                "name": imp.name,
                "importDataSourceId": str(imp.file_id) if imp.file_id else "",
                "importType": imp.import_type,
            }
            if imp.code:
                item["code"] = imp.code
            items.append(item)
        return paged(request, cfg, schema(m, "import"), "imports", sort_items(request, items, None))

    async def import_metadata(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        imp = m.imports.get(object_id(request, "import_id"))
        if imp is None:
            raise ApiError(404)
        source = m.files.get(imp.file_id) if imp.file_id else None
        body: dict[str, Any] = {"name": imp.name, "type": "FILE" if source else "MODEL"}
        if source is not None:
            body["source"] = {
                "textEncoding": source.encoding,
                "columnSeparator": source.separator,
                "textDelimiter": source.delimiter,
                "headerRow": source.header_row,
                "firstDataRow": source.first_data_row,
                "decimalSeparator": ".",
                "headerNames": list(imp.header_names),
                "columnCount": len(imp.header_names),
            }
        return envelope(cfg, schema(m, "importMetadata"), importMetadata=body)

    async def exports(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        items = [
            {
                "id": str(e.id),
                "name": e.name,
                "exportType": e.export_type,
                "exportFormat": e.export_format,
                "encoding": e.encoding,
                "layout": e.export_type,
            }
            | ({"code": e.code} if e.code else {})
            for e in m.exports.values()
        ]
        return paged(request, cfg, schema(m, "export"), "exports", sort_items(request, items, None))

    async def export_metadata(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        exp = m.exports.get(object_id(request, "export_id"))
        if exp is None:
            raise ApiError(404)
        from ml_connector.sandbox.anaplan.exports import export_rows

        mod = m.modules[exp.module_id]
        body = {
            "columnCount": len(exp.columns),
            "dataTypes": [_column_type(mod, c.source) for c in exp.columns],
            "delimiter": '"',
            "encoding": exp.encoding,
            "exportFormat": exp.export_format,
            "headerNames": [c.header for c in exp.columns],
            "listNames": [c.source.split(":", 1)[1] for c in exp.columns if c.source.startswith("dimension")],
            "rowCount": sum(1 for _ in export_rows(m, exp)),
            "separator": ",",
            "layout": exp.export_type,
        }
        return envelope(cfg, schema(m, "exportMetadata"), exportMetadata=body)

    async def processes(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        items = [_named(p.id, p.name, p.code) for p in m.processes.values()]
        return paged(request, cfg, schema(m, "process"), "processes", sort_items(request, items, None))

    async def process_metadata(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        proc = m.processes.get(object_id(request, "process_id"))
        if proc is None:
            raise ApiError(404)
        actions = [_action_summary(m, a) for a in proc.action_ids]
        return envelope(cfg, schema(m, "processMetadata"), processMetadata={"name": proc.name, "actions": actions})

    async def actions(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        items = [
            {"id": str(a.id), "name": a.name, "actionType": a.action_type} | ({"code": a.code} if a.code else {})
            for a in m.actions.values()
        ]
        return paged(request, cfg, schema(m, "action"), "actions", sort_items(request, items, None))

    async def action_metadata(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        action = m.actions.get(object_id(request, "action_id"))
        if action is None:
            raise ApiError(404)
        return envelope(
            cfg, schema(m, "actionMetadata"), actionMetadata={"name": action.name, "actionType": action.action_type}
        )

    async def versions(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        items = []
        for member in m.versions.members.values() if m.versions else []:
            items.append(
                {
                    "id": str(member.id),
                    "name": member.name,
                    "code": member.code,
                    "isActual": member.name == "Actual",
                    "isCurrent": member.name == "Forecast",
                    "editFrom": {"periodText": "Start of Timescale"},
                    "editTo": {"periodText": "End of Timescale"},
                    "switchover": None,
                    "formula": "",
                    "notes": "",
                }
            )
        return envelope(cfg, schema(m, "version"), versionMetadata=items or None)

    async def dimension_items(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        dim = m.dimension_by_key(request.match_info["dimension_id"])
        if dim is None:
            raise ApiError(404)
        if "view_id" in request.match_info:
            mod = _view_module(m, object_id(request, "view_id"))
            if dim not in mod.dimensions:
                raise ApiError(400, f"Dimension {dim.id} is not used in view {mod.id}")
        if "line_item_id" in request.match_info:
            mod = _module_of_line_item(m, object_id(request, "line_item_id"))
            if dim not in mod.dimensions:
                raise ApiError(400, f"Dimension {dim.id} is not used by line item")
        if len(dim) > 1_000_000:
            raise ApiError(400, "The dimension holds more than 1,000,000 items")
        items = [_dim_item(mb.id, mb.name, mb.code) for mb in dim.members.values()]
        return envelope(cfg, schema(m, "item"), items=items or None)

    async def dimension_lookup(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        dim = m.dimension_by_key(request.match_info["dimension_id"])
        if dim is None:
            raise ApiError(404)
        body = await json_body(request)
        names = (body or {}).get("names") or []
        codes = (body or {}).get("codes") or []
        if not names and not codes:
            raise ApiError(400, "Either names or codes must be provided")
        found: dict[int, dict[str, Any]] = {}
        for name in names:
            mb = dim.by_name.get(str(name)) or dim.aliases.get(str(name))
            if mb is not None:
                found[mb.id] = _dim_item(mb.id, mb.name, mb.code)
        for code in codes:
            mb = dim.by_code.get(str(code))
            if mb is not None:
                found[mb.id] = _dim_item(mb.id, mb.name, mb.code)
        return envelope(cfg, schema(m, "item"), items=list(found.values()) or None)

    async def current_period(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        return envelope(
            cfg,
            schema(m, "currentPeriod"),
            currentPeriod=_current_period(m) | {"calendarType": "Calendar Months/Quarters/Years"},
        )

    async def model_calendar(request: web.Request) -> web.Response:
        _, m = ctx.model(request)
        cal = {
            "calendarType": "Calendar Months/Quarters/Years",
            "currentPeriod": _current_period(m),
            "pastYearsCount": 0,
            "fiscalYear": {"year": "FY24", "startDate": "2024-01-01", "endDate": "2024-12-31"},
            "totalsSelection": {
                "quarterTotals": True,
                "halfYearTotals": False,
                "yearToDateSummary": False,
                "yearToGoSummary": False,
                "totalOfAllPeriods": False,
            },
        }
        return envelope(cfg, schema(m, "modelCalendar"), modelCalendar=cal)

    out: list[web.RouteDef] = [
        web.get(f"{API_PREFIX}/users/me", users_me),
        web.get(f"{API_PREFIX}/users", users),
        web.get(f"{API_PREFIX}/users/{{user_id}}", user_by_id),
        web.get(f"{API_PREFIX}/workspaces", workspaces),
        web.get(f"{API_PREFIX}/workspaces/{{workspace_id}}", workspace),
        web.get(f"{API_PREFIX}/models", models),
        web.get(f"{API_PREFIX}/workspaces/{{workspace_id}}/models", models),
        web.get(f"{API_PREFIX}/models/{{model_id}}", model),
        web.get(f"{API_PREFIX}/workspaces/{{workspace_id}}/models/{{model_id}}", model_405),
    ]
    out += model_routes("GET", "/status", model_status)
    out += model_routes("POST", "/status", model_status)
    out += model_routes("POST", "/open", model_open)
    out += model_routes("POST", "/close", model_close)
    for suffix, handler in [
        ("/lists", lists),
        ("/lists/{list_id}", list_metadata),
        ("/modules", modules),
        ("/lineItems", line_items),
        ("/modules/{module_id}/lineItems", line_items),
        ("/lineItems/{line_item_id}/dimensions", line_item_dimensions),
        ("/lineItems/{line_item_id}/dimensions/{dimension_id}/items", dimension_items),
        ("/views", views),
        ("/modules/{module_id}/views", views),
        ("/views/{view_id}", view),
        ("/views/{view_id}/dimensions/{dimension_id}/items", dimension_items),
        ("/dimensions/{dimension_id}/items", dimension_items),
        ("/imports", imports),
        ("/imports/", imports),
        ("/imports/{import_id}", import_metadata),
        ("/exports", exports),
        ("/exports/", exports),
        ("/exports/{export_id}", export_metadata),
        ("/processes", processes),
        ("/processes/", processes),
        ("/processes/{process_id}", process_metadata),
        ("/actions", actions),
        ("/actions/", actions),
        ("/actions/{action_id}", action_metadata),
        ("/versions", versions),
        ("/currentPeriod", current_period),
        ("/modelCalendar", model_calendar),
    ]:
        out += model_routes("GET", suffix, handler)
    out += model_routes("POST", "/dimensions/{dimension_id}/items", dimension_lookup)
    return out


def _named(id_: int, name: str, code: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(id_), "name": name}
    if code:
        out["code"] = code
    return out


def _dim_item(id_: int, name: str, code: str) -> dict[str, Any]:
    return {"id": str(id_), "name": name, "code": code}


def _list_metadata(lst: ListDef) -> dict[str, Any]:
    parent = {"id": str(lst.parent_list.id), "name": lst.parent_list.name} if lst.parent_list else None
    out: dict[str, Any] = {
        "id": str(lst.id),
        "name": lst.name,
        "category": {},
        "dataTags": [],
        "hasSelectiveAccess": False,
        "itemCount": len(lst),
        "managedBy": "",
        "nextItemIndex": lst.next_index,
        "numberedList": lst.numbered,
        "permittedItems": len(lst),
        "productionData": False,
        "properties": [
            {
                "name": p.name,
                "format": p.format,
                **({"formatMetadata": {"dataType": "ENTITY", "listName": p.list_name}} if p.list_name else {}),
            }
            for p in lst.properties
        ],
        "subsets": [],
        "topLevelItem": {"id": "", "name": f"All {lst.name}"},
        "useTopLevelAsPageDefault": False,
        "workflowEnabled": False,
        "usedInAppliesTo": "",
    }
    if parent:
        out["parent"] = parent
    return out


def _line_item(model: ModelState, mod: Module, li: Any, include_all: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"moduleId": str(mod.id), "moduleName": mod.name, "id": str(li.id), "name": li.name}
    if not include_all:
        return out
    version = model.versions if model.versions in mod.dimensions else None
    return out | {
        "appliesTo": [{"id": str(d.id), "name": d.name} for d in mod.dimensions if d.kind == "list"],
        "breakback": False,
        "broughtForward": False,
        "cellCount": len(mod.cells.get(li.id, {})),
        "code": li.code,
        "dataTags": [],
        "format": li.format,
        "formatMetadata": _FORMAT_METADATA[li.format],
        "formula": "",
        "formulaScope": "",
        "isSummary": False,
        "notes": "",
        "referencedBy": [],
        "startOfSection": False,
        "style": "Normal",
        "summary": "Sum" if li.format == "NUMBER" else "None",
        "timeRange": "Model Calendar",
        "timeScale": "Month" if model.time in mod.dimensions else "Not Applicable",
        "useSwitchover": False,
        "version": {"id": str(version.id), "name": "All"} if version else {"id": "0", "name": "Not Applicable"},
    }


def _module_of_line_item(model: ModelState, line_item_id: int) -> Module:
    for mod in model.modules.values():
        if any(li.id == line_item_id for li in mod.line_items):
            return mod
    raise ApiError(404)


def _view_module(model: ModelState, view_id: int) -> Module:
    """A view id is a module id (default view) or a line item id (that line item's module)."""
    mod = model.modules.get(view_id)
    if mod is not None:
        return mod
    if ids.prefix_of(view_id) == ids.LINE_ITEM:
        return _module_of_line_item(model, view_id)
    raise ApiError(404)


def _column_type(mod: Module, source: str) -> str:
    kind, _, name = source.partition(":")
    if kind == "lineitem":
        li = mod.line_item(name)
        return li.format if li else "TEXT"
    return "ENTITY"


def _action_summary(model: ModelState, action_id: int) -> dict[str, Any]:
    if action_id in model.imports:
        imp = model.imports[action_id]
        return {
            "id": str(imp.id),
            "name": imp.name,
            "actionType": "IMPORT",
            "importDataSourceId": str(imp.file_id) if imp.file_id else "",
            "importType": imp.import_type,
        }
    if action_id in model.exports:
        exp = model.exports[action_id]
        return {
            "id": str(exp.id),
            "name": exp.name,
            "actionType": "EXPORT",
            "exportType": exp.export_type,
            "exportFormat": exp.export_format,
            "layout": exp.export_type,
        }
    action = model.actions[action_id]
    return {"id": str(action.id), "name": action.name, "actionType": action.action_type}


def _current_period(model: ModelState) -> dict[str, str]:
    if model.time is None or not model.time.members:
        return {"periodText": "", "lastDay": ""}
    first = next(iter(model.time.members.values()))
    return {"periodText": first.name, "lastDay": ""}
