"""Shared fixtures and raw-HTTP helpers for the Infor emulator tests (no conftest of our own)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ml_connector.sandbox.dataset import DatasetConfig
from ml_connector.sandbox.infor import RunningInfor, start_infor
from ml_connector.sandbox.infor.state import Product

SMALL = DatasetConfig(seed=11, gl_postings=2_000, suppliers=40, customers=30, items=50)


@pytest.fixture
async def infor() -> AsyncIterator[RunningInfor]:
    async with start_infor(dataset=SMALL) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30, verify=False) as client:  # noqa: S501 - loopback http only: skip loading CA certs
        yield client


@dataclass
class Tenant:
    """What a client reads from a ``.ionapi`` file, plus a bearer token once :meth:`login` ran."""

    doc: dict[str, Any]
    token: str = ""
    refresh: str = ""

    @property
    def token_url(self) -> str:
        return self.doc["pu"] + self.doc["ot"]

    @property
    def revoke_url(self) -> str:
        return self.doc["pu"] + self.doc["or"]

    @property
    def base(self) -> str:
        return self.doc["iu"] + "/" + self.doc["ti"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def password_form(self, **overrides: str) -> dict[str, str]:
        form = {
            "grant_type": "password",
            "username": self.doc["saak"],
            "password": self.doc["sask"],
            "client_id": self.doc["ci"],
            "client_secret": self.doc["cs"],
        }
        form.update(overrides)
        return form

    async def login(self, http: httpx.AsyncClient) -> Tenant:
        r = await http.post(self.token_url, data=self.password_form())
        assert r.status_code == 200, r.text
        body = r.json()
        self.token = body["access_token"]
        self.refresh = body.get("refresh_token", "")
        return self


def tenant(infor: RunningInfor, product: Product) -> Tenant:
    return Tenant(json.loads(infor.ionapi(product).read_text()))


async def logged_in(infor: RunningInfor, http: httpx.AsyncClient, product: Product) -> Tenant:
    return await tenant(infor, product).login(http)


class M3:
    """Raw m3api-rest v2 calls."""

    def __init__(self, t: Tenant, http: httpx.AsyncClient) -> None:
        self.t, self.http = t, http
        self.url = t.base + "/M3/m3api-rest/v2/execute"

    async def raw(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(f"{self.url}/{path}", params=params, headers=self.t.auth)

    async def records(self, path: str, **params: Any) -> list[dict[str, str]]:
        r = await self.raw(path, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["nrOfFailedTransactions"] == 0
        assert body["nrOfSuccessfullTransactions"] == 1
        records: list[dict[str, str]] = body["results"][0]["records"]
        return records

    async def select(self, query: str, maxrecs: int = 0, sepc: str = ";", **params: Any) -> list[list[str]]:
        records = await self.records(f"EXPORTMI/Select;maxrecs={maxrecs}", QERY=query, SEPC=sepc, **params)
        return [r["REPL"].split(sepc) for r in records]

    async def bulk(self, program: str, transactions: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body = {"program": program, "transactions": transactions, **extra}
        r = await self.http.post(self.url, json=body, headers=self.t.auth)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


class IDO:
    """Raw Mongoose IDO REST v2 calls for one site's configuration."""

    def __init__(self, t: Tenant, http: httpx.AsyncClient, site: str = "P10") -> None:
        self.t, self.http = t, http
        self.url = t.base + "/CSI/IDORequestService/ido"
        self.config = f"{t.doc['ti']}_{site}"

    @property
    def headers(self) -> dict[str, str]:
        return {**self.t.auth, "X-Infor-MongooseConfig": self.config}

    async def load(self, ido: str, **params: Any) -> dict[str, Any]:
        r = await self.http.get(f"{self.url}/load/{ido}", params=params, headers=self.headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def load_all(self, ido: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
        """Every row through bookmark paging; returns (rows, pages)."""
        rows: list[dict[str, Any]] = []
        pages = 0
        query = dict(params)
        while True:
            body = await self.load(ido, **query)
            assert body["Success"], body["Message"]
            rows.extend(body["Items"])
            pages += 1
            if not body["MoreRowsExist"]:
                return rows, pages
            query = {**params, "loadtype": "NEXT", "bookmark": body["Bookmark"]}

    async def update(self, ido: str, changes: list[dict[str, Any]], refresh: bool = True) -> dict[str, Any]:
        r = await self.http.post(
            f"{self.url}/update/{ido}",
            params={"refresh": "true" if refresh else "false"},
            json={"IDOName": ido, "Changes": changes},
            headers=self.headers,
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def prop(name: str, value: Any) -> dict[str, Any]:
    return {"Name": name, "Value": None if value is None else str(value), "Modified": True, "IsNull": value is None}


async def mutate(http: httpx.AsyncClient, infor: RunningInfor, op: str, **arguments: Any) -> Any:
    r = await http.post(f"{infor.url}/_sandbox/infor/mutate", json={"op": op, **arguments})
    assert r.status_code == 200, r.text
    return r.json()["result"]
