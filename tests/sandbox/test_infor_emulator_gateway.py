"""Infor emulator, ION API Gateway front: token/refresh/revoke, bearer checks, quotas, faults, .ionapi files."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import httpx
import infor_emulator_helpers as h
import pytest

from ml_connector.sandbox.faults import FaultRule
from ml_connector.sandbox.infor import CSI_TENANT, FSM_TENANT, M3_TENANT, start_infor

infor = h.infor
http = h.http

SUPPLIERS = "CRS620MI/LstSuppliers"


async def test_ionapi_files_follow_the_contract(infor: h.RunningInfor) -> None:
    described = infor.describe()
    assert described["url"] == infor.url
    assert set(described["tenants"]) == {"M3", "SyteLine", "FSM"}
    assert described["tenants"]["SyteLine"]["configs"] == [
        f"{CSI_TENANT}_P10",
        f"{CSI_TENANT}_P20",
        f"{CSI_TENANT}_P30",
    ]
    for product, ti in (("M3", M3_TENANT), ("SyteLine", CSI_TENANT), ("FSM", FSM_TENANT)):
        path = infor.ionapi(product)  # type: ignore[arg-type]
        assert described["tenants"][product]["ionapi"] == str(path)
        assert described["tenants"][product]["tenant"] == ti
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        doc = json.loads(path.read_text())
        assert doc["ti"] == ti
        assert doc["iu"] == infor.url
        assert doc["pu"] == f"{infor.url}/{ti}/as/"
        assert (doc["ot"], doc["or"], doc["oa"]) == ("token.oauth2", "revoke_token.oauth2", "authorization.oauth2")
        assert doc["ci"].startswith(ti + "~")
        assert doc["saak"].startswith(ti + "#")
        assert doc["dt"] == "12"
        assert doc["v"] == "1.0"
        assert {"cs", "sask", "cn", "ev"} <= set(doc)


async def test_password_grant_with_body_or_basic_client_auth(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = h.tenant(infor, "M3")
    r = await http.post(t.token_url, data=t.password_form())
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 7200
    assert body["access_token"]
    assert body["refresh_token"]
    form = {"grant_type": "password", "username": t.doc["saak"], "password": t.doc["sask"]}
    r = await http.post(t.token_url, data=form, auth=(t.doc["ci"], t.doc["cs"]))
    assert r.status_code == 200
    token = r.json()["access_token"]
    r = await http.get(f"{t.base}/M3/m3api-rest/v2/execute/{SUPPLIERS};maxrecs=1",
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert r.status_code == 200
    assert len(r.json()["results"][0]["records"]) == 1


@pytest.mark.parametrize(
    ("override", "status", "error"),
    [
        ({"password": "wrong"}, 400, "invalid_grant"),
        ({"username": "NORTHWIND_M3_TST#nobody"}, 400, "invalid_grant"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "NORTHWIND_M3_TST~nobody"}, 401, "invalid_client"),
        ({"grant_type": "client_secret_jwt"}, 400, "unsupported_grant_type"),
        ({"grant_type": ""}, 400, "invalid_request"),
    ],
)
async def test_token_endpoint_errors(
    infor: h.RunningInfor, http: httpx.AsyncClient, override: dict[str, str], status: int, error: str
) -> None:
    t = h.tenant(infor, "M3")
    r = await http.post(t.token_url, data=t.password_form(**override))
    assert r.status_code == status
    assert r.json()["error"] == error
    assert r.json()["error_description"]
    assert t.doc["sask"] not in r.text
    assert t.doc["cs"] not in r.text


async def test_token_endpoint_wants_a_form_and_the_right_tenant(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = h.tenant(infor, "M3")
    r = await http.post(t.token_url, json=t.password_form())
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    other = h.tenant(infor, "SyteLine")
    r = await http.post(other.token_url, data=t.password_form())  # M3 credentials at the CSI tenant
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_refresh_grant_rotates_and_old_refresh_token_dies(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = await h.logged_in(infor, http, "M3")
    first_access, first_refresh = t.token, t.refresh
    r = await http.post(t.token_url, data={"grant_type": "refresh_token", "refresh_token": first_refresh},
                        auth=(t.doc["ci"], t.doc["cs"]))  # fmt: skip
    assert r.status_code == 200
    body = r.json()
    assert body["access_token"] != first_access
    assert body["refresh_token"] != first_refresh
    assert body["expires_in"] == 7200
    again = await http.post(t.token_url, data={"grant_type": "refresh_token", "refresh_token": first_refresh,
                                               "client_id": t.doc["ci"], "client_secret": t.doc["cs"]})  # fmt: skip
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    m3 = h.M3(h.Tenant(t.doc, body["access_token"]), http)
    assert len(await m3.records(SUPPLIERS, maxrecs=2)) == 2


async def test_refresh_tokens_only_when_the_tenant_issues_them(http: httpx.AsyncClient) -> None:
    async with start_infor(dataset=h.SMALL, issue_refresh_tokens=False, products=("M3",)) as running:
        t = h.tenant(running, "M3")
        r = await http.post(t.token_url, data=t.password_form())
        assert r.status_code == 200
        assert "refresh_token" not in r.json()
        assert set(running.ionapi_files) == {"M3"}


async def test_revoke_kills_the_grant_and_its_access_tokens(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = await h.logged_in(infor, http, "M3")
    m3 = h.M3(t, http)
    assert (await m3.raw(SUPPLIERS)).status_code == 200
    r = await http.post(t.revoke_url, data={"token": t.refresh, "token_type_hint": "refresh_token"},
                        auth=(t.doc["ci"], t.doc["cs"]))  # fmt: skip
    assert r.status_code == 200
    after = await m3.raw(SUPPLIERS)
    assert after.status_code == 401
    assert after.json()["error"] == "invalid_token"
    refresh = await http.post(t.token_url, data={"grant_type": "refresh_token", "refresh_token": t.refresh},
                              auth=(t.doc["ci"], t.doc["cs"]))  # fmt: skip
    assert refresh.status_code == 400
    # revoking by access token (GET form, RFC 7009: unknown tokens are fine too)
    t2 = await h.logged_in(infor, http, "M3")
    r = await http.get(t2.revoke_url, params={"token": t2.token}, auth=(t2.doc["ci"], t2.doc["cs"]))
    assert r.status_code == 200
    assert (await h.M3(t2, http).raw(SUPPLIERS)).status_code == 401
    r = await http.post(t.revoke_url, data={"token": "never-issued"}, auth=(t.doc["ci"], t.doc["cs"]))
    assert r.status_code == 200
    r = await http.post(t.revoke_url, data={"token": t2.token}, auth=(t.doc["ci"], "wrong"))
    assert r.status_code == 401


async def test_expired_token_gives_401_then_a_new_one_works(http: httpx.AsyncClient) -> None:
    async with start_infor(dataset=h.SMALL, token_lifetime=1.0) as running:
        t = await h.logged_in(running, http, "M3")
        m3 = h.M3(t, http)
        assert (await m3.raw(SUPPLIERS)).status_code == 200
        await asyncio.sleep(1.2)
        r = await m3.raw(SUPPLIERS)
        assert r.status_code == 401
        assert r.json() == {"error": "invalid_token", "error_description": "Bearer token has expired"}
        assert "Bearer" in r.headers["WWW-Authenticate"]
        await t.login(http)
        assert (await m3.raw(SUPPLIERS)).status_code == 200


async def test_admin_expiry_needs_no_sleep(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = await h.logged_in(infor, http, "SyteLine")
    ido = h.IDO(t, http)
    assert (await ido.load("SLVendors", recordcap=1))["Success"]
    r = await http.post(f"{infor.url}/_sandbox/infor/tokens/expire")
    assert r.json()["expired"] >= 1
    r = await http.get(f"{ido.url}/load/SLVendors", headers=ido.headers)
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("authorization", "description"),
    [
        (None, "Bearer token is missing"),
        ("Basic abc", "Authorization header is not a Bearer token"),
        ("Bearer not-a-token", "Bearer token is invalid or revoked"),
    ],
)
async def test_bad_bearers_get_401(
    infor: h.RunningInfor, http: httpx.AsyncClient, authorization: str | None, description: str
) -> None:
    t = h.tenant(infor, "M3")
    headers = {"Authorization": authorization} if authorization else {}
    r = await http.get(f"{t.base}/M3/m3api-rest/v2/execute/{SUPPLIERS}", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "invalid_token", "error_description": description}


async def test_token_of_one_tenant_is_refused_by_another(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    m3 = await h.logged_in(infor, http, "M3")
    csi = h.tenant(infor, "SyteLine")
    r = await http.get(f"{csi.base}/CSI/IDORequestService/ido/load/SLVendors", headers=m3.auth)
    assert r.status_code == 401
    assert CSI_TENANT in r.json()["error_description"]


async def test_unknown_tenant_and_wrong_suite_are_404(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    m3 = await h.logged_in(infor, http, "M3")
    r = await http.get(f"{infor.url}/NOBODY_TST/M3/m3api-rest/v2/execute/{SUPPLIERS}", headers=m3.auth)
    assert r.status_code == 404
    r = await http.get(f"{m3.base}/CSI/IDORequestService/ido/load/SLVendors", headers=m3.auth)
    assert r.status_code == 404


async def test_quota_answers_429_with_retry_after_then_resets(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = await h.logged_in(infor, http, "M3")
    m3 = h.M3(t, http)
    infor.state.set_quota(3, 60.0)
    statuses = [(await m3.raw(SUPPLIERS, maxrecs=1)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    r = await m3.raw(SUPPLIERS)
    assert r.json() == {"error": "quota_exceeded", "error_description": "Quota policy exceeded"}
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    r = await http.post(f"{infor.url}/_sandbox/infor/quota/reset")
    assert r.status_code == 200
    assert (await m3.raw(SUPPLIERS)).status_code == 200
    # the token endpoint is not under the quota
    assert (await http.post(t.token_url, data=t.password_form())).status_code == 200


async def test_quota_without_retry_after_over_admin_http(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = await h.logged_in(infor, http, "SyteLine")
    ido = h.IDO(t, http)
    r = await http.post(f"{infor.url}/_sandbox/infor/quota", json={"allow": 1, "interval": 60, "retry_after": False})
    assert r.status_code == 200
    assert (await ido.load("SLVendors", recordcap=1))["Success"]
    r = await http.get(f"{ido.url}/load/SLVendors", headers=ido.headers)
    assert r.status_code == 429
    assert "Retry-After" not in r.headers
    assert (await http.delete(f"{infor.url}/_sandbox/infor/quota")).status_code == 204
    assert (await ido.load("SLVendors", recordcap=1))["Success"]


async def test_429_storm_from_fault_rules_then_recovery(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = await h.logged_in(infor, http, "SyteLine")
    ido = h.IDO(t, http)
    rule = {"status": 429, "retry_after": 0, "path": "/ido/load/", "times": 4,
            "body": {"error": "quota_exceeded", "error_description": "Quota policy exceeded"}}  # fmt: skip
    r = await http.post(f"{infor.url}/_sandbox/infor/faults", json=rule)
    assert r.status_code == 201
    seen = []
    for _ in range(5):
        r = await http.get(f"{ido.url}/load/SLVendors", params={"recordcap": 1}, headers=ido.headers)
        seen.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "0"
    assert seen == [429, 429, 429, 429, 200]
    listed = (await http.get(f"{infor.url}/_sandbox/infor/faults")).json()
    assert listed["rules"][0]["fired"] == 4
    assert (await http.delete(f"{infor.url}/_sandbox/infor/faults")).status_code == 204
    assert infor.state.faults.describe() == []


async def test_5xx_and_dropped_connections_from_the_injector(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = await h.logged_in(infor, http, "M3")
    m3 = h.M3(t, http)
    infor.state.faults.add(FaultRule(status=503, path="CRS620MI", times=1))
    infor.state.faults.add(FaultRule(kind="drop", path="CRS610MI", times=1))
    assert (await m3.raw(SUPPLIERS)).status_code == 503
    assert (await m3.raw(SUPPLIERS)).status_code == 200
    with pytest.raises(httpx.TransportError):
        await m3.raw("CRS610MI/LstByNumber")
    assert (await m3.raw("CRS610MI/LstByNumber")).status_code == 200


async def test_slow_backend_gives_504(infor: h.RunningInfor, http: httpx.AsyncClient) -> None:
    t = await h.logged_in(infor, http, "M3")
    m3 = h.M3(t, http)
    r = await http.post(f"{infor.url}/_sandbox/infor/gateway", json={"backend_delay": 0.5, "gateway_timeout": 0.05})
    assert r.json()["gateway_timeout"] == 0.05
    r = await m3.raw(SUPPLIERS)
    assert r.status_code == 504
    assert r.json()["error"] == "gateway_timeout"
    infor.state.gateway_timeout = 5.0
    infor.state.backend_delay = 0.01
    assert (await m3.raw(SUPPLIERS)).status_code == 200
    stats = (await http.get(f"{infor.url}/_sandbox/infor/stats")).json()["stats"]
    assert stats["504"] == 1
    assert stats["token.password"] == 1
