"""Transactional list items: read, add, update, delete — in batches of at most 100,000 items.

Writes report per-item failures instead of failing the call; the failures' ``request_index`` is
mapped back to the index in *your* input across batches. Adds and deletes are POSTs and are never
retried on 5xx or timeouts (a timed-out add may have been applied; a retry would report the items
as ignored); updates are PUTs and are retried.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, Literal

from ml_connector.anaplan.api import ModelScope
from ml_connector.anaplan.errors import AnaplanError
from ml_connector.anaplan.models import ListItem, ListItemFailure, ListWriteResult

log = logging.getLogger(__name__)

MAX_BATCH = 100_000
Item = Mapping[str, Any]
Items = Iterable[Item] | AsyncIterable[Item]
Operation = Literal["add", "update", "delete"]


async def batches(items: Items, size: int) -> AsyncIterator[list[Item]]:
    """Group a sync or async iterable into lists of at most ``size`` items."""
    batch: list[Item] = []
    if isinstance(items, AsyncIterable):
        async for item in items:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    else:
        for item in items:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


class ListItems:
    """Items of one model's lists (``/workspaces/{ws}/models/{m}/lists/{id}/items``)."""

    def __init__(self, scope: ModelScope) -> None:
        self.scope = scope

    async def read(self, list_id: str, *, include_all: bool = False) -> AsyncIterator[ListItem]:
        """Every item; ``include_all`` adds properties, subsets and selective access."""
        params: dict[str, str | int] = {"includeAll": "true"} if include_all else {}
        async for raw in self.scope.session.paginate(
            self.scope.path("lists", list_id, "items"),
            ("listItems", "items"),
            what=f"reading the items of list {list_id}",
            params=params,
        ):
            yield ListItem.model_validate(raw)

    async def add(self, list_id: str, items: Items, *, batch_size: int = MAX_BATCH) -> ListWriteResult:
        """Add members (``name``/``code``/``parent``/``properties``/``subsets``; numbered lists: no ``name``)."""
        return await self._write("add", list_id, items, batch_size)

    async def update(self, list_id: str, items: Items, *, batch_size: int = MAX_BATCH) -> ListWriteResult:
        """Update members identified by ``id``, else ``code``, else ``name``."""
        return await self._write("update", list_id, items, batch_size)

    async def delete(self, list_id: str, items: Items, *, batch_size: int = MAX_BATCH) -> ListWriteResult:
        """Delete members identified by ``id``, ``code`` or ``name``."""
        return await self._write("delete", list_id, items, batch_size)

    async def _write(self, operation: Operation, list_id: str, items: Items, batch_size: int) -> ListWriteResult:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH:,} (Anaplan's limit per call)")
        path = self.scope.path("lists", list_id, "items")
        totals = {"added": 0, "updated": 0, "deleted": 0, "ignored": 0, "total": 0}
        failures: list[ListItemFailure] = []
        offset = 0
        async for batch in batches(items, batch_size):
            what = f"{operation} of items {offset}-{offset + len(batch) - 1} in list {list_id}"
            try:
                if operation == "update":
                    body = await self.scope.session.json("PUT", path, what=what, json={"items": batch})
                else:
                    body = await self.scope.session.json(
                        "POST", path, what=what, params={"action": operation}, json={"items": batch}
                    )
            except AnaplanError:
                if offset:
                    log.error(
                        "%s of list %s stopped after %d items had been sent in earlier batches",
                        operation,
                        list_id,
                        offset,
                    )
                raise
            answer = ListWriteResult.model_validate(body)
            for key in totals:
                totals[key] += getattr(answer, key)
            failures.extend(
                failure.model_copy(update={"request_index": failure.request_index + offset})
                for failure in answer.failures
            )
            offset += len(batch)
        result = ListWriteResult(**totals, failures=failures)
        if failures:
            log.warning("%s of list %s: %d of %d items failed", operation, list_id, len(failures), offset)
        return result
