"""Admin routes under ``/_sandbox/anaplan/``: read end states, seed data, turn knobs, approve devices.

Not part of Anaplan. Unauthenticated (the sandbox listens on loopback) and never subject to fault
injection (the injector skips ``/_sandbox/``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from ml_connector.sandbox.anaplan.auth import OAuthClient
from ml_connector.sandbox.anaplan.builder import add_members, write_cells
from ml_connector.sandbox.anaplan.context import Context
from ml_connector.sandbox.anaplan.state import ListDef, ModelState, Module

PREFIX = "/_sandbox/anaplan"
KNOBS = (
    "token_lifetime",
    "oauth_access_lifetime",
    "oauth_refresh_rotating",
    "device_auto_approve",
    "cert_skew",
    "task_duration",
    "complete_delay",
    "chunk_limit",
    "max_chunks",
    "dump_chunk_size",
    "export_chunk_size",
    "page_size",
    "list_items_per_call",
    "cells_per_call",
    "view_cell_limit",
    "busy_status",
)


def list_members(model: ModelState, lst: ListDef) -> list[dict[str, Any]]:
    lists = model.lists_by_name()
    return [
        {
            "id": str(m.id),
            "name": m.name,
            "code": m.code,
            "parent": lst.parent_name(m),
            "properties": {p.name: lst.prop_text(m, i, lists) for i, p in enumerate(lst.properties)},
        }
        for m in lst.members.values()
    ]


def module_cells(module: Module) -> list[dict[str, Any]]:
    """One row per dimension combination: dimension name -> member name, line item name -> value."""
    names = [
        {m.id: (m.code or m.name) if d.kind == "list" else m.name for m in d.members.values()}
        for d in module.dimensions
    ]
    keys = sorted({k for cells in module.cells.values() for k in cells})
    rows = []
    for key in keys:
        row: dict[str, Any] = {d.name: names[i].get(key[i], "") for i, d in enumerate(module.dimensions)}
        for li in module.line_items:
            value = module.cells[li.id].get(key)
            if value is not None:
                row[li.name] = value
        rows.append(row)
    return rows


def routes(ctx: Context) -> list[web.RouteDef]:
    state = ctx.state

    def model_of(request: web.Request) -> ModelState:
        key = request.match_info["model"]
        model = state.models.get(key) or next((m for m in state.models.values() if m.name == key), None)
        if model is None:
            raise web.HTTPNotFound(text=f"no model {key}")
        return model

    def list_of(request: web.Request) -> tuple[ModelState, ListDef]:
        model = model_of(request)
        lst = model.list_by_key(request.match_info["list"])
        if lst is None:
            raise web.HTTPNotFound(text=f"no list {request.match_info['list']}")
        return model, lst

    def module_of(request: web.Request) -> tuple[ModelState, Module]:
        model = model_of(request)
        module = model.module_by_key(request.match_info["module"])
        if module is None:
            raise web.HTTPNotFound(text=f"no module {request.match_info['module']}")
        return model, module

    async def summary(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "users": [{"id": u.id, "email": u.email} for u in state.users.values()],
                "models": [
                    {
                        "id": m.id,
                        "name": m.name,
                        "workspace": {"id": m.workspace.id, "name": m.workspace.name},
                        "busy": m.busy,
                        "running": m.running.id if m.running else None,
                        "lists": {lst.name: len(lst) for lst in m.lists.values()},
                        "modules": {
                            mod.name: {li.name: len(mod.cells[li.id]) for li in mod.line_items}
                            for mod in m.modules.values()
                        },
                        "imports": {i.name: str(i.id) for i in m.imports.values()},
                        "exports": {e.name: str(e.id) for e in m.exports.values()},
                        "processes": {p.name: str(p.id) for p in m.processes.values()},
                        "files": {f.name: str(f.id) for f in m.files.values()},
                    }
                    for m in state.models.values()
                ],
                "paused": ctx.engine.paused,
            }
        )

    async def get_members(request: web.Request) -> web.Response:
        model, lst = list_of(request)
        return web.json_response({"list": lst.name, "items": list_members(model, lst)})

    async def post_members(request: web.Request) -> web.Response:
        model, lst = list_of(request)
        body = await request.json()
        try:
            add_members(model, lst, body.get("items", []))
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"list": lst.name, "count": len(lst)})

    async def get_cells(request: web.Request) -> web.Response:
        _, module = module_of(request)
        return web.json_response({"module": module.name, "rows": module_cells(module)})

    async def post_cells(request: web.Request) -> web.Response:
        model, module = module_of(request)
        body = await request.json()
        try:
            written = write_cells(model, module, body.get("rows", []))
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"module": module.name, "written": written})

    async def get_config(_: web.Request) -> web.Response:
        return web.json_response({k: getattr(state.config, k) for k in KNOBS})

    async def put_config(request: web.Request) -> web.Response:
        body = await request.json()
        unknown = set(body) - set(KNOBS)
        if unknown:
            return web.json_response({"error": f"unknown knobs: {sorted(unknown)}"}, status=400)
        for key, value in body.items():
            current = getattr(state.config, key)
            setattr(state.config, key, bool(value) if isinstance(current, bool) else type(current)(value))
        return await get_config(request)

    async def expire_tokens(_: web.Request) -> web.Response:
        return web.json_response({"expired": ctx.auth.expire_all()})

    async def approve_device(request: web.Request) -> web.Response:
        body = await request.json()
        email = body.get("email") or (state.users[ctx.auth.default_login].email if ctx.auth.default_login else "")
        user = state.user_by_email(email)
        if user is None:
            return web.json_response({"error": f"no user {email}"}, status=400)
        device = ctx.auth.approve_device(
            str(body.get("user_code") or body.get("device_code") or ""), user, deny=bool(body.get("deny"))
        )
        if device is None:
            return web.json_response({"error": "no such device code"}, status=404)
        return web.json_response({"user_code": device.user_code, "approved": not device.denied, "user": user.email})

    async def add_client(request: web.Request) -> web.Response:
        body = await request.json()
        client = ctx.auth.register_client(
            OAuthClient(
                client_id=body["client_id"],
                secret=body.get("client_secret"),
                grant=body.get("grant", "device"),
                rotating=bool(body.get("rotating", True)),
                redirect_uris=list(body.get("redirect_uris", [])),
            )
        )
        return web.json_response(dataclasses.asdict(client), status=201)

    async def add_certificate(request: web.Request) -> web.Response:
        user = state.user_by_email(request.match_info["email"])
        if user is None:
            return web.json_response({"error": "no such user"}, status=404)
        user.certificates.append(await request.read())
        return web.json_response({"user": user.email, "certificates": len(user.certificates)}, status=201)

    async def pause(_: web.Request) -> web.Response:
        ctx.engine.pause()
        return web.json_response({"paused": True})

    async def resume(_: web.Request) -> web.Response:
        ctx.engine.resume()
        return web.json_response({"paused": False})

    async def slow(request: web.Request) -> web.Response:
        body = await request.json()
        ctx.engine.slow(int(body["action_id"]), float(body["seconds"]))
        return web.json_response({"action_id": str(body["action_id"]), "seconds": float(body["seconds"])})

    return [
        web.get(f"{PREFIX}/state", summary),
        web.get(f"{PREFIX}/models/{{model}}/lists/{{list}}/items", get_members),
        web.post(f"{PREFIX}/models/{{model}}/lists/{{list}}/items", post_members),
        web.get(f"{PREFIX}/models/{{model}}/modules/{{module}}/cells", get_cells),
        web.post(f"{PREFIX}/models/{{model}}/modules/{{module}}/cells", post_cells),
        web.get(f"{PREFIX}/config", get_config),
        web.put(f"{PREFIX}/config", put_config),
        web.post(f"{PREFIX}/tokens/expire", expire_tokens),
        web.post(f"{PREFIX}/device/approve", approve_device),
        web.post(f"{PREFIX}/oauth/clients", add_client),
        web.post(f"{PREFIX}/users/{{email}}/certificates", add_certificate),
        web.post(f"{PREFIX}/tasks/pause", pause),
        web.post(f"{PREFIX}/tasks/resume", resume),
        web.post(f"{PREFIX}/tasks/slow", slow),
    ]
