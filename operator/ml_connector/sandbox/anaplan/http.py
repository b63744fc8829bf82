"""Envelopes, errors and paging of the Integration API (reference §1.4, §1.5)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from ml_connector.sandbox.anaplan.state import EmulatorConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/2/0"

_MESSAGES = {
    200: "Success",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class ApiError(Exception):
    """Raised by handlers; rendered as ``{"status": {"code", "message"}, "path", "timestamp"}``."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or _MESSAGES.get(status, "Error"))
        self.status = status
        self.message = message or _MESSAGES.get(status, "Error")


def timestamp() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def error_response(request: web.Request, status: int, message: str | None = None) -> web.Response:
    body = {
        "status": {"code": status, "message": message or _MESSAGES.get(status, "Error")},
        "path": request.path,
        "timestamp": timestamp(),
    }
    return web.json_response(body, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`ApiError` and aiohttp's own errors (404, 405, 413 …) into Anaplan's error envelope on ``/2/0``."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc.status, exc.message)
    except web.HTTPException as exc:
        if request.path.startswith(API_PREFIX) and exc.status >= 400:
            return error_response(request, exc.status)
        raise


def envelope(config: EmulatorConfig, schema: str, status: int = 200, **results: Any) -> web.Response:
    body: dict[str, Any] = {
        "meta": {"schema": config.schema_base + schema},
        "status": {"code": status, "message": _MESSAGES.get(status, "Success")},
    }
    for key, value in results.items():
        if key == "paging":
            body["meta"]["paging"] = value
        elif value is not None:
            body[key] = value
    return web.json_response(body, status=status)


def int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid value for parameter '{name}': {raw}") from None
    if value < 0:
        raise ApiError(400, f"Invalid value for parameter '{name}': {raw}")
    return value


def paged(
    request: web.Request,
    config: EmulatorConfig,
    schema: str,
    key: str,
    items: Sequence[Any],
    **extra: Any,
) -> web.Response:
    """A collection page: ``offset``/``limit`` (default and max ``config.page_size``); an empty page omits ``key``."""
    offset = int_param(request, "offset", 0)
    limit = int_param(request, "limit", config.page_size) or config.page_size
    limit = min(limit, config.page_size)
    page = list(items[offset : offset + limit])
    paging: dict[str, Any] = {"currentPageSize": len(page), "offset": offset, "totalSize": len(items)}
    if offset + len(page) < len(items):
        paging["next"] = str(request.url.update_query(offset=offset + limit, limit=limit))
    if offset > 0:
        paging["previous"] = str(request.url.update_query(offset=max(0, offset - limit), limit=limit))
    results: dict[str, Any] = {key: page or None, **extra}
    return envelope(config, schema, paging=paging, **results)


def sort_items(request: web.Request, items: list[dict[str, Any]], sortable: set[str] | None) -> list[dict[str, Any]]:
    """``sort=+name,-id``. With ``sortable`` the prefix is mandatory and the field validated (models, workspaces)."""
    raw = request.query.get("sort")
    if not raw:
        return items
    keys: list[tuple[str, bool]] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if part[0] not in "+-":
            if sortable is not None:
                raise ApiError(
                    400,
                    f"Bad sort order format: '{part}'. "
                    "Please follow (-){column_name_1},(+){column_name_2}.. format",
                )
            part = "+" + part
        field_name = part[1:]
        if sortable is not None and field_name not in sortable:
            raise ApiError(400, "Failed to parse sort parameter")
        keys.append((field_name, part[0] == "-"))
    for field_name, descending in reversed(keys):
        if items and field_name not in items[0]:
            continue
        items = sorted(items, key=lambda item: str(item.get(field_name, "")), reverse=descending)
    return items


async def json_body(request: web.Request, *, allow_empty: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "Request body is empty")
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "Malformed JSON request body") from None


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() == "true"
