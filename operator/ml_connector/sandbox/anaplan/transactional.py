"""Transactional API (reference §7): list items read/add/update/delete, module cell writes and view reads.

While a task holds the model these calls answer 409 (:meth:`Context.require_idle`): the emulator's
choice for Anaplan's undocumented "blocked" behaviour, taken from the troubleshooting table's
"409 Conflict = model or object busy". Failure types beyond the documented ``INCORRECT_FORMAT`` and
``INCOMPLETE_DATA`` (``DUPLICATE_NAME``, ``DUPLICATE_CODE``, ``ITEM_NOT_FOUND`` and the cell-write ones)
are the emulator's own names.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ml_connector.sandbox.anaplan.context import Context, model_routes, object_id
from ml_connector.sandbox.anaplan.csvio import CsvWriter
from ml_connector.sandbox.anaplan.exports import delete_members
from ml_connector.sandbox.anaplan.http import ApiError, envelope, int_param, json_body
from ml_connector.sandbox.anaplan.state import CellValue, FormatError, LineItem, ListDef, Member, ModelState, Module


def _failure(index: int, kind: str, details: str) -> dict[str, Any]:
    return {"requestIndex": index, "failureType": kind, "failureMessageDetails": details}


def item_json(
    model: ModelState, lst: ListDef, member: Member, include_all: bool, lists: dict[str, ListDef]
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(member.id), "name": member.name}
    if member.code:
        out["code"] = member.code
    if lst.parent_list is not None:
        parent = lst.parent_list.members.get(member.parent) if member.parent is not None else None
        out |= {"listId": str(lst.id), "listName": lst.name}
        if parent is not None:
            out |= {"parent": parent.name, "parentId": str(parent.id)}
    if include_all:
        out["properties"] = {p.name: lst.prop_text(member, i, lists) for i, p in enumerate(lst.properties)}
        out["subsets"] = {}
    return out


def routes(ctx: Context) -> list[web.RouteDef]:
    cfg = ctx.config

    def target_list(request: web.Request) -> tuple[ModelState, ListDef]:
        _, model = ctx.model(request)
        lst = model.lists.get(object_id(request, "list_id"))
        if lst is None:
            raise ApiError(404)
        ctx.require_idle(model)
        return model, lst

    async def items_body(request: web.Request) -> list[Any]:
        body = await json_body(request)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ApiError(400, 'The request body must be {"items": [...]}')
        if len(items) > cfg.list_items_per_call:
            raise ApiError(400, f"At most {cfg.list_items_per_call} items can be sent in one request; got {len(items)}")
        return items

    async def get_items(request: web.Request) -> web.Response:
        model, lst = target_list(request)
        lists = model.lists_by_name()
        include_all = request.query.get("includeAll", "").lower() == "true"
        members = list(lst.members.values())
        offset = int_param(request, "offset", 0)
        limit = int_param(request, "limit", len(members)) if "limit" in request.query else None
        page = members[offset : offset + limit] if limit is not None else members[offset:]
        if "text/csv" in request.headers.get("Accept", ""):
            writer = CsvWriter()
            writer.write(["Name", "Code", "Parent", *[p.name for p in lst.properties]])
            for m in page:
                writer.write(
                    [
                        m.name,
                        m.code,
                        lst.parent_name(m) or "",
                        *[lst.prop_text(m, i, lists) for i in range(len(lst.properties))],
                    ]
                )
            return web.Response(body=writer.getvalue(), content_type="text/csv", charset="utf-8")
        paging = {"currentPageSize": len(page), "offset": offset, "totalSize": len(members)}
        items = [item_json(model, lst, m, include_all, lists) for m in page]
        return envelope(cfg, f"/models/{model.id}/objects/listItem", paging=paging, listItems=items or None)

    async def post_items(request: web.Request) -> web.Response:
        action = request.query.get("action", "")
        if action == "add":
            return await add_items(request)
        if action == "delete":
            return await delete_items(request)
        raise ApiError(400, f"Unsupported action: {action or '(none)'}; use action=add or action=delete")

    async def add_items(request: web.Request) -> web.Response:
        model, lst = target_list(request)
        items = await items_body(request)
        lists = model.lists_by_name()
        failures: list[dict[str, Any]] = []
        added = 0
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                failures.append(_failure(index, "INCORRECT_FORMAT", "incorrect format -- item must be an object"))
                continue
            code = str(item.get("code") or "").strip()
            name = str(item.get("name") or "").strip()
            if lst.numbered and name:
                failures.append(
                    _failure(index, "INCORRECT_FORMAT", "incorrect format -- name is not allowed for a numbered list")
                )
                continue
            if lst.numbered and not code:
                failures.append(
                    _failure(index, "INCOMPLETE_DATA", "incomplete data -- code is required for a numbered list")
                )
                continue
            if not lst.numbered and not name:
                failures.append(_failure(index, "INCOMPLETE_DATA", "incomplete data -- name is required"))
                continue
            if code and code in lst.by_code:
                failures.append(_failure(index, "DUPLICATE_CODE", f"duplicate code -- code:{code}"))
                continue
            if name and name in lst.by_name:
                failures.append(_failure(index, "DUPLICATE_NAME", f"duplicate name -- name:{name}"))
                continue
            try:
                parent = _parent(lst, item.get("parent"))
                props = _props(lst, item.get("properties") or {}, lists, [None] * len(lst.properties))
            except FormatError as exc:
                failures.append(_failure(index, "INCORRECT_FORMAT", str(exc)))
                continue
            lst.add(name or None, code, parent, props)
            added += 1
        body: dict[str, Any] = {"added": added, "ignored": len(items) - added, "total": len(items)}
        if failures:
            body["failures"] = failures
        return envelope(cfg, f"/models/{model.id}/objects/listItem", **body)

    async def update_items(request: web.Request) -> web.Response:
        model, lst = target_list(request)
        items = await items_body(request)
        lists = model.lists_by_name()
        failures: list[dict[str, Any]] = []
        updated = 0
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                failures.append(_failure(index, "INCORRECT_FORMAT", "incorrect format -- item must be an object"))
                continue
            member = _identify(lst, item)
            if member is None:
                failures.append(
                    _failure(index, "ITEM_NOT_FOUND", "item not found -- no item with the given id, code or name")
                )
                continue
            new_name = item.get("name")
            if "code" in item and not str(item.get("code") or "").strip():
                failures.append(_failure(index, "INCOMPLETE_DATA", "incomplete data -- a code cannot be removed"))
                continue
            if new_name is not None and "id" not in item and "code" not in item:
                new_name = None  # the name identified the item
            if new_name is not None:
                new_name = str(new_name).strip()
                owner = lst.by_name.get(new_name)
                if not new_name or (owner is not None and owner is not member) or lst.numbered:
                    failures.append(
                        _failure(
                            index,
                            "INCOMPLETE_DATA",
                            f"incomplete data -- name:{new_name} is empty, used or not allowed",
                        )
                    )
                    continue
            try:
                parent = _parent(lst, item["parent"]) if "parent" in item else member.parent
                props = _props(lst, item.get("properties") or {}, lists, list(member.props))
            except FormatError as exc:
                failures.append(_failure(index, "INCORRECT_FORMAT", str(exc)))
                continue
            if "id" in item and item.get("code"):
                other = lst.by_code.get(str(item["code"]).strip())
                if other is not None and other is not member:
                    failures.append(_failure(index, "DUPLICATE_CODE", f"duplicate code -- code:{item['code']}"))
                    continue
                lst.recode(member, str(item["code"]).strip())
            if new_name:
                lst.rename(member, new_name)
            member.parent = parent
            member.props = props
            updated += 1
        body: dict[str, Any] = {"updated": updated, "ignored": len(items) - updated, "total": len(items)}
        if failures:
            body["failures"] = failures
        return envelope(cfg, f"/models/{model.id}/objects/listItem", **body)

    async def delete_items(request: web.Request) -> web.Response:
        model, lst = target_list(request)
        items = await items_body(request)
        failures: list[dict[str, Any]] = []
        doomed: dict[int, Member] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not any(k in item for k in ("id", "code", "name")):
                failures.append(_failure(index, "INCOMPLETE_DATA", "incomplete data -- id, code or name is required"))
                continue
            member = _identify(lst, item)
            if member is not None:
                doomed[member.id] = member
        delete_members(model, lst, list(doomed.values()))
        body: dict[str, Any] = {"deleted": len(doomed)}
        if failures:
            body["failures"] = failures
        return envelope(cfg, f"/models/{model.id}/objects/listItem", **body)

    async def reset_index(request: web.Request) -> web.Response:
        _, lst = target_list(request)
        if len(lst):
            raise ApiError(
                400, "We can't reset the list item index of a list that contains data. Remove all items and try again."
            )
        lst.next_index = 1
        return web.json_response({})

    async def write_cells(request: web.Request) -> web.Response:
        _, model = ctx.model(request)
        module = model.modules.get(object_id(request, "module_id"))
        if module is None:
            raise ApiError(404)
        ctx.require_idle(model)
        body = await json_body(request)
        if not isinstance(body, list):
            raise ApiError(400, "The request body must be a JSON array of cell writes")
        if len(body) > cfg.cells_per_call:
            raise ApiError(400, f"At most {cfg.cells_per_call} cells can be written in one request")
        failures: list[dict[str, Any]] = []
        changed = 0
        for index, write in enumerate(body):
            try:
                li, key, value = _resolve_cell(module, write)
            except _CellError as exc:
                failures.append(_failure(index, exc.kind, str(exc)))
                continue
            cells = module.cells[li.id]
            if cells.get(key) != value:
                cells[key] = value
                changed += 1
        out: dict[str, Any] = {"numberOfCellsChanged": changed}
        if failures:
            out["failures"] = failures
        return envelope(cfg, f"/models/{model.id}/objects/cellWrite", **out)

    async def view_data(request: web.Request) -> web.Response:
        _, model = ctx.model(request)
        view_id = object_id(request, "view_id")
        module = model.modules.get(view_id)
        line_items: list[LineItem]
        if module is not None:
            line_items = list(module.line_items)
        else:
            found = next(((m, li) for m in model.modules.values() for li in m.line_items if li.id == view_id), None)
            if found is None:
                raise ApiError(404)
            module, line_items = found[0], [found[1]]
        ctx.require_idle(model)
        pages = request.query.get("pages", "")
        if pages:
            raise ApiError(400, f"Invalid page selector [{pages.split(',')[0].split(':')[0]}]")
        keys = sorted({k for li in line_items for k in module.cells[li.id]})
        max_rows = int_param(request, "maxRows", len(keys))
        keys = keys[:max_rows]
        if len(keys) * len(line_items) > cfg.view_cell_limit:
            raise ApiError(
                400, f"The view holds more than {cfg.view_cell_limit} cells; use a read request or an export"
            )
        names = [_member_names(d) for d in module.dimensions]
        rows = [
            (
                [names[i].get(k[i], "") for i in range(len(k))],
                [_cell_text(module.cells[li.id].get(k)) for li in line_items],
            )
            for k in keys
        ]
        wants_json = request.query.get("format") == "v1" and "application/json" in request.headers.get(
            "Accept", "application/json"
        )
        if wants_json:
            return web.json_response(
                {
                    "pages": [],
                    "columnCoordinates": [[li.name] for li in line_items],
                    "rows": [{"rowCoordinates": coords, "cells": cells} for coords, cells in rows],
                }
            )
        writer = CsvWriter()
        writer.write([*[d.name for d in module.dimensions], *[li.name for li in line_items]])
        for coords, cells in rows:
            writer.write([*coords, *cells])
        return web.Response(body=writer.getvalue(), content_type="text/csv", charset="utf-8")

    out: list[web.RouteDef] = []
    for method, suffix, handler in [
        ("GET", "/lists/{list_id}/items", get_items),
        ("POST", "/lists/{list_id}/items", post_items),
        ("PUT", "/lists/{list_id}/items", update_items),
        ("POST", "/lists/{list_id}/resetIndex", reset_index),
        ("POST", "/modules/{module_id}/data", write_cells),
        ("GET", "/views/{view_id}/data", view_data),
    ]:
        out += model_routes(method, suffix, handler)
    return out


class _CellError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _resolve_cell(module: Module, write: Any) -> tuple[LineItem, tuple[int, ...], CellValue]:
    if not isinstance(write, dict):
        raise _CellError("INVALID_REQUEST", "a cell write must be an object")
    li_key = str(write.get("lineItemId") or write.get("lineItemName") or "")
    li = module.line_item(li_key)
    if li is None:
        raise _CellError("INVALID_LINE_ITEM", f"line item not found in module {module.name}: {li_key}")
    given: dict[int, str] = {}
    for dim_ref in write.get("dimensions") or []:
        if not isinstance(dim_ref, dict):
            raise _CellError("INVALID_REQUEST", "a dimension reference must be an object")
        dim_key = str(dim_ref.get("dimensionId") or dim_ref.get("dimensionName") or "")
        dim = module.dimension(dim_key)
        if dim is None and dim_key in ("Version", "Versions"):
            dim = next((d for d in module.dimensions if d.kind == "version"), None)
        if dim is None:
            raise _CellError("INVALID_DIMENSION", f"dimension not in module {module.name}: {dim_key}")
        given[dim.id] = str(dim_ref.get("itemId") or dim_ref.get("itemName") or dim_ref.get("itemCode") or "")
    key: list[int] = []
    for dim in module.dimensions:
        if dim.id not in given:
            raise _CellError("INCOMPLETE_DATA", f"dimension {dim.name} is missing")
        raw = given[dim.id]
        member = dim.members.get(int(raw)) if raw.isdigit() and int(raw) in dim.members else dim.find(raw)
        if member is None:
            raise _CellError("INVALID_ITEM", f"item not found in {dim.name}: {raw}")
        key.append(member.id)
    if "value" not in write or write["value"] is None:
        raise _CellError("INCOMPLETE_DATA", "value is required")
    try:
        value = li.coerce(write["value"])
    except FormatError as exc:
        raise _CellError("INCORRECT_FORMAT", f"{li.name}: {exc}") from None
    return li, tuple(key), value


def _identify(lst: ListDef, item: dict[str, Any]) -> Member | None:
    if item.get("id") not in (None, ""):
        raw = str(item["id"])
        return lst.members.get(int(raw)) if raw.isdigit() else None
    if item.get("code") not in (None, ""):
        return lst.by_code.get(str(item["code"]).strip())
    if item.get("name") not in (None, ""):
        return lst.by_name.get(str(item["name"]).strip())
    return None


def _parent(lst: ListDef, raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    if lst.parent_list is None:
        raise FormatError(f"incorrect format -- column name:parent, value:{raw} (the list has no parent)")
    parent = lst.parent_list.find(str(raw))
    if parent is None:
        raise FormatError(f"incorrect format -- column name:parent, value:{raw}")
    return parent.id


def _props(lst: ListDef, props: Any, lists: dict[str, ListDef], values: list[Any]) -> list[Any]:
    if not isinstance(props, dict):
        raise FormatError("incorrect format -- properties must be an object")
    for name, raw in props.items():
        index = lst.prop_index.get(name)
        if index is None:
            raise FormatError(f"incorrect format -- column name:{name}, value:{raw} (no such property)")
        text = "true" if raw is True else "false" if raw is False else "" if raw is None else str(raw)
        try:
            values[index] = lst.convert_prop(index, text, lists)
        except FormatError:
            raise FormatError(f"incorrect format -- column name:{name}, value:{raw}") from None
    return values


def _member_names(dim: ListDef) -> dict[int, str]:
    return {m.id: m.name for m in dim.members.values()}


def _cell_text(value: CellValue | None) -> str:
    return "" if value is None else LineItem.text(value)
