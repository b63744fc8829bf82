"""SyteLine / CloudSuite Industrial Mongoose IDO REST v2 over the gateway (reference §5).

* ``GET CSI/IDORequestService/ido/load/{IDO}?properties=..&filter=..&orderby=..&recordcap=N``
  with header ``X-Infor-MongooseConfig``; then ``loadtype=NEXT&bookmark=<Bookmark>`` while
  ``MoreRowsExist`` (same properties, filter and order on every page).
* ``POST CSI/IDORequestService/ido/update/{IDO}?refresh=true`` with ``{"Changes":[...]}``:
  Action 1 insert, 2 update (``ItemId`` carries the record date for optimistic locking), 4 delete.
* Errors come back as HTTP 200 ``{"Success": false, "Message": ...}``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ml_connector.infor.client import IonApiClient
from ml_connector.infor.errors import MongooseError, ProtocolError
from ml_connector.infor.paging import prefetch

BASE = "CSI/IDORequestService/ido"
CONFIG_HEADER = "X-Infor-MongooseConfig"

ACTION_INSERT = 1
ACTION_UPDATE = 2
ACTION_DELETE = 4


def quote(value: str) -> str:
    """A filter string literal: ``N'...'`` with embedded quotes doubled."""
    return "N'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of an UpdateCollection request."""

    action: int
    properties: Mapping[str, str | None]
    item_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "Action": self.action,
            "ItemId": self.item_id,
            "Properties": [
                {"Name": name, "Value": value, "Modified": True, "IsNull": value is None}
                for name, value in self.properties.items()
            ],
            "UpdateLocking": 1,
        }


@dataclass(frozen=True, slots=True)
class UpdateResult:
    success: bool
    message: str | None
    items: list[dict[str, Any]]


class MongooseApi:
    """Low-level IDO access for one tenant; each call names its Mongoose configuration (site)."""

    def __init__(self, client: IonApiClient) -> None:
        self.client = client

    @staticmethod
    def _check(body: Any, operation: str, ido: str, config: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ProtocolError(f"Mongoose {operation} {ido} (config {config}): response is not a JSON object")
        if body.get("Success") is False:
            raise MongooseError(operation, ido, config, str(body.get("Message") or "Success is false, no message"))
        return body

    async def load_page(
        self,
        ido: str,
        config: str,
        *,
        properties: Sequence[str],
        filter: str | None = None,
        orderby: str | None = None,
        recordcap: int = 200,
        bookmark: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None, bool]:
        """One LoadCollection call -> ``(items, bookmark, more_rows_exist)``."""
        params: dict[str, str | int] = {"properties": ",".join(properties), "recordcap": recordcap}
        if filter:
            params["filter"] = filter
        if orderby:
            params["orderby"] = orderby
        if bookmark is not None:
            params["loadtype"] = "NEXT"
            params["bookmark"] = bookmark
        else:
            params["loadtype"] = "FIRST"
        _, body = await self.client.request_json(
            "GET", f"{BASE}/load/{ido}", params=params, headers={CONFIG_HEADER: config}
        )
        body = self._check(body, "load", ido, config)
        items = body.get("Items") or []
        if not isinstance(items, list):
            raise ProtocolError(f"Mongoose load {ido} (config {config}): 'Items' is not a list")
        more = bool(body.get("MoreRowsExist"))
        next_bookmark = body.get("Bookmark")
        if more and not next_bookmark:
            raise ProtocolError(f"Mongoose load {ido} (config {config}): MoreRowsExist without a Bookmark")
        return items, next_bookmark if isinstance(next_bookmark, str) else None, more

    async def load(
        self,
        ido: str,
        config: str,
        *,
        properties: Sequence[str],
        filter: str | None = None,
        orderby: str | None = None,
        page_size: int = 200,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """All pages of a LoadCollection, following the bookmark until ``MoreRowsExist`` is false.

        The next page is requested while the caller processes the current one.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1 (0 would load everything at once), got {page_size}")

        async def pages() -> AsyncGenerator[list[dict[str, Any]], None]:
            bookmark: str | None = None
            while True:
                previous = bookmark
                items, bookmark, more = await self.load_page(
                    ido, config, properties=properties, filter=filter, orderby=orderby,
                    recordcap=page_size, bookmark=bookmark,
                )  # fmt: skip
                yield items
                if not more:
                    return
                if bookmark == previous:
                    raise ProtocolError(
                        f"Mongoose load {ido} (config {config}): the bookmark did not advance; stopping"
                    )

        async for page in prefetch(pages()):
            yield page

    async def update(self, ido: str, config: str, changes: Sequence[Change], *, refresh: bool = True) -> UpdateResult:
        """One UpdateCollection call. ``Success: false`` is returned, not raised (callers re-check).

        Never retried on 5xx/timeouts: an insert may have been applied (callers re-read instead).
        """
        body_json = {"IDOName": ido, "RefreshAfterSave": refresh, "Changes": [c.to_json() for c in changes]}
        _, body = await self.client.request_json(
            "POST",
            f"{BASE}/update/{ido}",
            params={"refresh": "true" if refresh else "false"},
            headers={CONFIG_HEADER: config},
            json=body_json,
        )
        if not isinstance(body, dict):
            raise ProtocolError(f"Mongoose update {ido} (config {config}): response is not a JSON object")
        items = body.get("Items") or []
        return UpdateResult(
            success=bool(body.get("Success", True)),
            message=str(body["Message"]) if body.get("Message") else None,
            items=items if isinstance(items, list) else [],
        )
