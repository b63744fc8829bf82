"""The ION API Gateway front: OAuth token and revoke endpoints, bearer checks, quotas, backend timeout.

Routes (per tenant ``TI``; reference section 2 and 9, pinned contract):

* ``POST /{TI}/as/token.oauth2`` — form body; ``grant_type=password`` (``username=saak``,
  ``password=sask``) or ``refresh_token`` (rotating); client auth in the body or HTTP Basic.
* ``POST|GET /{TI}/as/revoke_token.oauth2`` — ``token=...``; kills the grant and its access tokens.
* Everything else under ``/{TI}/`` needs ``Authorization: Bearer``: missing/invalid/expired/revoked -> 401
  ``{"error":"invalid_token",...}``; a Quota policy -> 429 ``quota_exceeded`` (optionally ``Retry-After``);
  a backend slower than ``state.gateway_timeout`` -> 504.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
from typing import Any

from aiohttp import web

from ml_connector.sandbox.faults import ADMIN_PREFIX, Handler
from ml_connector.sandbox.infor.state import SUITE, InforState, Tenant

STATE_KEY: web.AppKey[InforState] = web.AppKey("infor_state", InforState)


def _oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status, headers=headers)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _client_credentials(request: web.Request, form: Any) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, _, client_secret = decoded.partition(":")
        return client_id, client_secret
    return form.get("client_id"), form.get("client_secret")


def _authenticate_client(request: web.Request, form: Any, tenant: Tenant) -> web.Response | None:
    client_id, client_secret = _client_credentials(request, form)
    if not client_id or client_secret is None:
        return _oauth_error(401, "invalid_client", "Client authentication is missing (client_id/client_secret "
                                                    "in the body or HTTP Basic)")  # fmt: skip
    if not (_equal(client_id, tenant.client_id) and _equal(client_secret, tenant.client_secret)):
        return _oauth_error(401, "invalid_client", "Client authentication failed: unknown client or wrong secret",
                            {"WWW-Authenticate": 'Basic realm="token"'})  # fmt: skip
    return None


def _tenant(request: web.Request) -> Tenant | None:
    state = request.app[STATE_KEY]
    return state.tenants.get(request.match_info["tenant"])


async def token(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant = _tenant(request)
    if tenant is None:
        return _oauth_error(404, "invalid_request", f"unknown tenant {request.match_info['tenant']!r}")
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "the token request must be a form "
                                                     "(Content-Type: application/x-www-form-urlencoded)")  # fmt: skip
    form = await request.post()
    grant_type = form.get("grant_type")
    if not grant_type:
        return _oauth_error(400, "invalid_request", "grant_type is missing")
    if grant_type not in ("password", "refresh_token"):
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    failure = _authenticate_client(request, form, tenant)
    if failure is not None:
        state.stats["token.invalid_client"] += 1
        return failure
    if grant_type == "password":
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return _oauth_error(400, "invalid_request", "username and password are required for grant_type=password")
        if not (_equal(username, tenant.saak) and _equal(password, tenant.sask)):
            state.stats["token.invalid_grant"] += 1
            return _oauth_error(400, "invalid_grant", "Invalid service account credentials (saak/sask)")
        state.stats["token.password"] += 1
        return web.json_response(state.issue(tenant), headers={"Cache-Control": "no-store"})
    refresh = form.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        return _oauth_error(400, "invalid_request", "refresh_token is required for grant_type=refresh_token")
    grant = state.grant_for_refresh(refresh)
    if grant is None or grant.tenant != tenant.tenant_id:
        state.stats["token.invalid_grant"] += 1
        return _oauth_error(400, "invalid_grant", "Refresh token is invalid, expired or revoked")
    state.stats["token.refresh"] += 1
    return web.json_response(state.issue(tenant, grant), headers={"Cache-Control": "no-store"})


async def revoke(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant = _tenant(request)
    if tenant is None:
        return _oauth_error(404, "invalid_request", f"unknown tenant {request.match_info['tenant']!r}")
    form: Any = await request.post() if request.method == "POST" else request.query
    failure = _authenticate_client(request, form, tenant)
    if failure is not None:
        return failure
    value = form.get("token")
    if not value:
        return _oauth_error(400, "invalid_request", "token is missing")
    state.revoke(str(value))  # RFC 7009: unknown tokens are not an error
    return web.Response(status=200)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/{tenant}/as/token.oauth2", token),
        web.post("/{tenant}/as/revoke_token.oauth2", revoke),
        web.get("/{tenant}/as/revoke_token.oauth2", revoke),
    ]


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer check, quota and backend timeout for every API call (not for ``/as/`` or admin routes)."""
    path = request.path
    if path.startswith(ADMIN_PREFIX):
        return await handler(request)
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[2] == "as":
        return await handler(request)
    state = request.app[STATE_KEY]
    tenant = state.tenants.get(parts[1])
    if tenant is None:
        return web.json_response({"error": "not_found", "error_description": f"unknown tenant {parts[1]!r}"},
                                 status=404)  # fmt: skip
    problem = state.check_bearer(tenant.tenant_id, request.headers.get("Authorization"))
    if problem is not None:
        state.stats["401"] += 1
        return web.json_response({"error": "invalid_token", "error_description": problem}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
    wait = state.take_quota(tenant)
    if wait is not None:
        state.stats["429"] += 1
        headers = {"Retry-After": str(max(1, math.ceil(wait)))} if tenant.quota and tenant.quota.retry_after else {}
        return web.json_response({"error": "quota_exceeded", "error_description": "Quota policy exceeded"},
                                 status=429, headers=headers)  # fmt: skip
    if parts[2] != SUITE[tenant.product]:
        return web.json_response({"error": "not_found", "error_description":
                                  f"tenant {tenant.tenant_id} has no API suite {parts[2]!r}"}, status=404)  # fmt: skip
    state.stats[f"requests.{tenant.product}"] += 1
    if state.backend_delay <= 0:
        return await handler(request)

    async def slow() -> web.StreamResponse:
        await asyncio.sleep(state.backend_delay)
        return await handler(request)

    try:
        return await asyncio.wait_for(slow(), timeout=state.gateway_timeout)
    except TimeoutError:
        state.stats["504"] += 1
        return web.json_response({"error": "gateway_timeout", "error_description":
                                  "The target API server did not respond within the gateway's timeout"},
                                 status=504)  # fmt: skip
