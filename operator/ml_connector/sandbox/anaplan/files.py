"""Files and chunks (reference §4): chunk count, chunk upload (plain or gzip), complete, single-shot
upload, downloads and delete. Content is private to the uploading user and kept as chunk bytes."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from aiohttp import web

from ml_connector.sandbox.anaplan import ids
from ml_connector.sandbox.anaplan.context import Context, model_routes, object_id
from ml_connector.sandbox.anaplan.http import ApiError, envelope, json_body, paged
from ml_connector.sandbox.anaplan.state import FileContent, FileDef, ModelState

GZIP_TYPES = ("application/x-gzip", "application/gzip")


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one gzip stream (or several concatenated); at most ``limit`` bytes of output."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=31)
        chunk = d.decompress(rest, limit + 1 - total)
        total += len(chunk)
        out.append(chunk)
        if total > limit or d.unconsumed_tail:
            raise OverflowError
        if not d.eof:
            raise zlib.error("truncated gzip stream")
        rest = d.unused_data
    return b"".join(out)


def routes(ctx: Context) -> list[web.RouteDef]:
    cfg = ctx.config

    def schema(model: ModelState, kind: str = "file") -> str:
        return f"/models/{model.id}/objects/{kind}"

    def file_of(model: ModelState, request: web.Request) -> FileDef:
        f = model.files.get(object_id(request, "file_id"))
        if f is None:
            raise ApiError(404)
        return f

    def visible_count(model: ModelState, user_id: str, f: FileDef) -> int:
        content = model.content(user_id, f.id)
        return content.chunk_count if content is not None else f.chunk_count

    async def list_files(request: web.Request) -> web.Response:
        user, m = ctx.model(request)
        items = [f.to_json(visible_count(m, user.id, f)) for f in m.files.values()]
        return paged(request, cfg, schema(m), "files", items)

    async def set_chunk_count(request: web.Request) -> web.Response:
        user, m = ctx.model(request)
        body = await json_body(request)
        if not isinstance(body, dict) or "chunkCount" not in body:
            raise ApiError(400, "chunkCount is required")
        try:
            count = int(body["chunkCount"])
        except (TypeError, ValueError):
            raise ApiError(400, f"Invalid chunkCount: {body['chunkCount']}") from None
        if count < -1 or count > cfg.max_chunks:
            raise ApiError(400, f"chunkCount must be -1 or between 0 and {cfg.max_chunks}")
        raw_id = request.match_info["file_id"]
        f = m.files.get(int(raw_id)) if raw_id.isdigit() else None
        if f is None:
            # Anaplan creates a new, unreferenced file with a new id (reference §4)
            f = FileDef(
                m.next_id(ids.FILE),
                str(body.get("name") or raw_id),
                separator="\t",
                first_data_row=-1,
                header_row=-1,
                origin="created",
            )
            m.files[f.id] = f
        if f.origin == "export":
            raise ApiError(400, "Cannot upload to an export file")
        m.contents[(user.id, f.id)] = FileContent(count)
        f.chunk_count = max(count, 0)
        return envelope(cfg, schema(m), file=f.to_json(max(count, 0)))

    async def upload_chunk(request: web.Request) -> web.Response:
        user, m = ctx.model(request)
        f = file_of(m, request)
        raw = request.match_info["chunk_id"]
        if not raw.isdigit():
            raise ApiError(400, f"Invalid chunk id: {raw}")
        index = int(raw)
        content = m.content(user.id, f.id)
        if content is None:
            content = m.contents[(user.id, f.id)] = FileContent(-1)
        if index >= cfg.max_chunks:
            raise ApiError(400, f"A file holds at most {cfg.max_chunks} chunks")
        if 0 <= content.declared <= index:
            raise ApiError(400, f"Chunk {index} is beyond the chunk count {content.declared} set for file {f.id}")
        data = await _read_body(request, cfg.chunk_limit)
        if request.content_type in GZIP_TYPES:
            try:
                data = gunzip(data, cfg.chunk_limit)
            except OverflowError:
                raise ApiError(400, f"Chunk {index} exceeds {cfg.chunk_limit} bytes of uncompressed data") from None
            except zlib.error as exc:
                raise ApiError(
                    400, f"Chunk {index} could not be decompressed: the body is not valid gzip data ({exc})"
                ) from None
        elif len(data) > cfg.chunk_limit:
            raise ApiError(400, f"Chunk {index} exceeds {cfg.chunk_limit} bytes of uncompressed data")
        content.chunks[index] = data
        if content.declared >= 0:
            f.chunk_count = content.declared
        return web.Response(status=204)

    async def complete(request: web.Request) -> web.Response:
        user, m = ctx.model(request)
        f = file_of(m, request)
        if cfg.complete_delay > 0:
            await asyncio.sleep(cfg.complete_delay)
        content = m.content(user.id, f.id)
        if content is None:
            raise ApiError(400, f"No upload in progress for file {f.id}")
        missing = content.missing()
        if missing:
            raise ApiError(400, f"File {f.id} is missing chunks: {', '.join(map(str, missing[:20]))}")
        content.declared = content.chunk_count
        content.completed = True
        f.chunk_count = content.declared
        return envelope(cfg, schema(m), file=f.to_json(content.declared))

    async def single_shot(request: web.Request) -> web.Response:
        user, m = ctx.model(request)
        f = file_of(m, request)
        if f.origin == "export":
            raise ApiError(400, "Cannot upload to an export file")
        if request.content_type in GZIP_TYPES or request.headers.get("Content-Encoding", "").lower() == "gzip":
            raise ApiError(415, "A single-shot file upload cannot be compressed; upload gzip data in chunks")
        data = await _read_body(request, cfg.chunk_limit)
        if len(data) > cfg.chunk_limit:
            raise ApiError(400, f"The file exceeds {cfg.chunk_limit} bytes; upload it in chunks")
        content = FileContent(1)
        content.chunks[0] = data
        m.contents[(user.id, f.id)] = content
        f.chunk_count = 1
        return web.Response(status=204)

    async def download(request: web.Request) -> web.StreamResponse:
        user, m = ctx.model(request)
        f = file_of(m, request)
        content = m.content(user.id, f.id)
        if content is None or not content.has_content():
            raise ApiError(404)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = content.size
        await response.prepare(request)
        for chunk in content.iter_chunks():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def list_chunks(request: web.Request) -> web.Response:
        user, m = ctx.model(request)
        f = file_of(m, request)
        content = m.content(user.id, f.id)
        count = content.chunk_count if content is not None else 0
        items = [{"id": str(i), "name": f"Chunk {i}"} for i in range(count)]
        return paged(request, cfg, schema(m, "chunk"), "chunks", items)

    async def get_chunk(request: web.Request) -> web.Response:
        user, m = ctx.model(request)
        f = file_of(m, request)
        content = m.content(user.id, f.id)
        raw = request.match_info["chunk_id"]
        data = content.chunks.get(int(raw)) if content is not None and raw.isdigit() else None
        if data is None:
            raise ApiError(404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def delete(request: web.Request) -> web.Response:
        user, m = ctx.model(request)
        f = file_of(m, request)
        m.contents.pop((user.id, f.id), None)  # metadata chunkCount stays (stale), as on Anaplan
        return web.Response(status=204)

    out: list[web.RouteDef] = []
    for method, suffix, handler in [
        ("GET", "/files", list_files),
        ("GET", "/files/", list_files),
        ("POST", "/files/{file_id}", set_chunk_count),
        ("PUT", "/files/{file_id}", single_shot),
        ("GET", "/files/{file_id}", download),
        ("DELETE", "/files/{file_id}", delete),
        ("POST", "/files/{file_id}/complete", complete),
        ("GET", "/files/{file_id}/chunks", list_chunks),
        ("GET", "/files/{file_id}/chunks/{chunk_id}", get_chunk),
        ("PUT", "/files/{file_id}/chunks/{chunk_id}", upload_chunk),
    ]:
        out += model_routes(method, suffix, handler)
    return out


async def _read_body(request: web.Request, limit: int) -> bytes:
    """Read the body; raw (possibly compressed) bodies may be as large as the uncompressed limit."""
    chunks: list[bytes] = []
    total = 0
    async for piece in request.content.iter_chunked(1 << 20):
        total += len(piece)
        if total > limit + (1 << 20):
            raise ApiError(413, f"Request body exceeds {limit} bytes")
        chunks.append(piece)
    return b"".join(chunks)


def content_json(content: FileContent) -> dict[str, Any]:
    return {"chunkCount": content.chunk_count, "size": content.size, "completed": content.completed}
