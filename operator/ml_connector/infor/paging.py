"""Async helpers for paged reads with flat memory.

* :func:`prefetch` starts fetching page *n + 1* while the caller still works on page *n*
  (sequential APIs such as Mongoose bookmarks: the next request needs the previous answer).
* :func:`merge` runs several independent page sources (partitions: division x year, sites) with
  at most ``limit`` in flight, through a bounded queue, so memory stays at a few pages whatever
  the number of records.

Pages are lists; sources are zero-argument callables returning async iterators of pages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

PageSource = Callable[[], AsyncGenerator[list[T], None]]

_DONE = object()


async def prefetch(pages: AsyncIterator[list[T]]) -> AsyncGenerator[list[T], None]:
    """Yield the pages of ``pages`` while the next one is already being fetched."""

    async def step() -> list[T] | object:
        try:
            return await anext(pages)
        except StopAsyncIteration:
            return _DONE

    pending: asyncio.Task[list[T] | object] = asyncio.ensure_future(step())
    try:
        while True:
            page = await pending
            if page is _DONE:
                return
            pending = asyncio.ensure_future(step())
            yield page  # type: ignore[misc]
    finally:
        if not pending.done():
            pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


async def merge(sources: Sequence[PageSource[T]], *, limit: int) -> AsyncGenerator[list[T], None]:
    """Pages of all ``sources``, at most ``limit`` sources running at once (order: as they arrive).

    The first error of any source cancels the others and is raised to the caller; so does the
    caller leaving early (``aclose``).
    """
    if limit <= 1 or len(sources) <= 1:
        for make in sources:
            async with contextlib.aclosing(make()) as pages:
                async for page in pages:
                    yield page
        return

    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue(maxsize=limit)

    async def run(make: PageSource[T]) -> None:
        try:
            async with contextlib.aclosing(make()) as pages:
                async for page in pages:
                    await queue.put(("page", page))
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put(("error", exc))
            return
        await queue.put(("done", None))

    waiting = list(reversed(sources))
    tasks: set[asyncio.Task[None]] = set()

    def start_next() -> None:
        if waiting:
            task = asyncio.ensure_future(run(waiting.pop()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    try:
        for _ in range(limit):
            start_next()
        active = min(limit, len(sources))
        while active:
            kind, value = await queue.get()
            if kind == "page":
                yield value  # type: ignore[misc]
            elif kind == "done":
                active -= 1
                if waiting:
                    start_next()
                    active += 1
            else:
                assert isinstance(value, BaseException)
                raise value
    finally:
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
