"""Everything the Infor emulator remembers: tenants and their credentials, tokens and grants, quotas,
gateway knobs, writable budgets per tenant, and the live dataset (base + late changes).

Tests hold the :class:`InforState` and steer it directly (``state.faults.add(...)``,
``state.set_quota(...)``, ``state.expire_tokens()``, ``state.data.update_posting(...)``); out-of-process
users reach the same knobs under ``/_sandbox/infor/...`` (see :mod:`.admin`).
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from ml_connector.sandbox.canary import secret_token
from ml_connector.sandbox.dataset import Dataset, DatasetConfig
from ml_connector.sandbox.faults import FaultInjector
from ml_connector.sandbox.infor.overlay import LiveData

Product = Literal["M3", "SyteLine", "FSM"]

M3_TENANT = "NORTHWIND_M3_TST"
CSI_TENANT = "NORTHWIND_CSI_TST"
FSM_TENANT = "NORTHWIND_FSM_TST"
DEFAULT_TENANTS: dict[Product, str] = {"M3": M3_TENANT, "SyteLine": CSI_TENANT, "FSM": FSM_TENANT}
#: URL segment of each product behind the gateway
SUITE: dict[Product, str] = {"M3": "M3", "SyteLine": "CSI", "FSM": "FSM"}


@dataclass
class Quota:
    """Gateway Quota policy: at most ``allow`` requests per ``interval`` seconds, then 429."""

    allow: int
    interval: float
    retry_after: bool = True
    window_start: float = 0.0
    count: int = 0


@dataclass
class Tenant:
    tenant_id: str
    product: Product
    client_id: str
    client_secret: str
    saak: str
    sask: str
    client_name: str = "MLConnector"
    issue_refresh_tokens: bool = True
    #: SyteLine only: Mongoose configuration name -> site
    configs: dict[str, str] = field(default_factory=dict)
    quota: Quota | None = None


@dataclass
class Grant:
    id: str
    tenant: str
    refresh_token: str | None
    refresh_expires_at: float | None  # monotonic; None = never
    revoked: bool = False


@dataclass
class AccessToken:
    tenant: str
    grant_id: str
    expires_at: float  # monotonic


@dataclass
class BudgetHeader:
    divi: str
    buno: str
    bver: str
    tx40: str
    bspr: str
    crtp: str
    npam: str
    tx15: str = ""
    locked: bool = False
    changed: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


BudgetKey = tuple[str, str, str]  # DIVI, BUNO, BVER
BudgetCellKey = tuple[str, str, str, str]  # AIT1, AIT2, CUCD, BUPE


@dataclass
class ChartBp:
    """One SyteLine ``SLChartBps`` row: 12 budget and 12 plan amounts (cents) of an account/unit/year."""

    acct: str
    unit1: str
    fiscal_year: int
    bud: list[int]
    plan: list[int]
    record_date: dt.datetime
    row_pointer: str


def _secret(n: int = 24) -> str:
    return secrets.token_urlsafe(n)


class InforState:
    """State of one emulated ION API Gateway with its M3, SyteLine and FSM tenants."""

    def __init__(
        self,
        dataset: Dataset | DatasetConfig | None = None,
        *,
        products: Iterable[Product] = ("M3", "SyteLine", "FSM"),
        token_lifetime: float = 7200.0,
        refresh_lifetime: float | None = None,
        issue_refresh_tokens: bool = True,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] | None = None,
        fault_seed: int = 0,
    ) -> None:
        if isinstance(dataset, Dataset):
            self.dataset = dataset
        else:
            self.dataset = Dataset(dataset)
        self.data = LiveData(self.dataset, now=now)
        self.faults = FaultInjector(seed=fault_seed)
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.refresh_lifetime = refresh_lifetime
        #: seconds the gateway waits for a backend before answering 504 (Infor: 60 s)
        self.gateway_timeout = 60.0
        #: artificial backend latency in seconds (a slow M3/SyteLine); above ``gateway_timeout`` -> 504
        self.backend_delay = 0.0
        self.tenants: dict[str, Tenant] = {}
        #: SyteLine IDOs the service user may not read/update (``User requires [Read] privilege for <IDO>``)
        self.denied_idos: set[str] = set()
        self.tokens: dict[str, AccessToken] = {}
        self.grants: dict[str, Grant] = {}
        self._refresh_index: dict[str, str] = {}
        self.stats: Counter[str] = Counter()
        self.m3_budget_headers: dict[str, dict[BudgetKey, BudgetHeader]] = {}
        self.m3_budget_lines: dict[str, dict[BudgetKey, dict[BudgetCellKey, int]]] = {}
        self.chart_bps: dict[tuple[str, str], dict[tuple[str, str, int], ChartBp]] = {}
        for product in products:
            self.add_tenant(product, issue_refresh_tokens=issue_refresh_tokens)

    # ------------------------------------------------------------------------------------------ tenants

    def add_tenant(
        self, product: Product, tenant_id: str | None = None, *, issue_refresh_tokens: bool = True
    ) -> Tenant:
        tenant_id = tenant_id or DEFAULT_TENANTS[product]
        if tenant_id in self.tenants:
            raise ValueError(f"tenant {tenant_id} already exists")
        tenant = Tenant(
            tenant_id=tenant_id,
            product=product,
            client_id=f"{tenant_id}~{_secret(18)}",
            client_secret=secret_token(30),
            saak=f"{tenant_id}#{_secret(30)}",
            sask=secret_token(40),
            issue_refresh_tokens=issue_refresh_tokens,
        )
        if product == "SyteLine":
            tenant.configs = {f"{tenant_id}_{p.code}": p.code for p in self.dataset.plants}
            for site in tenant.configs.values():
                self.chart_bps[(tenant_id, site)] = self._seed_chart_bps(tenant_id, site)
        if product == "M3":
            self._seed_m3_budgets(tenant_id)
        self.tenants[tenant_id] = tenant
        return tenant

    def tenant(self, product: Product) -> Tenant:
        for tenant in self.tenants.values():
            if tenant.product == product:
                return tenant
        raise KeyError(f"no {product} tenant in this emulator")

    # ------------------------------------------------------------------------------------------ tokens

    def issue(self, tenant: Tenant, grant: Grant | None = None) -> dict[str, object]:
        """Mint an access token (and a refresh token when the tenant issues them); rotate on refresh."""
        now = self.clock()
        if grant is None:
            grant = Grant(id=_secret(12), tenant=tenant.tenant_id, refresh_token=None, refresh_expires_at=None)
            self.grants[grant.id] = grant
        if grant.refresh_token is not None:
            self._refresh_index.pop(grant.refresh_token, None)
            grant.refresh_token = None
        token = secret_token(32)
        self.tokens[token] = AccessToken(tenant.tenant_id, grant.id, now + self.token_lifetime)
        body: dict[str, object] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": max(1, math.ceil(self.token_lifetime)),
        }
        if tenant.issue_refresh_tokens:
            refresh = secret_token(32)
            grant.refresh_token = refresh
            grant.refresh_expires_at = None if not self.refresh_lifetime else now + self.refresh_lifetime
            self._refresh_index[refresh] = grant.id
            body["refresh_token"] = refresh
        self._prune(now)
        return body

    def grant_for_refresh(self, refresh_token: str) -> Grant | None:
        grant_id = self._refresh_index.get(refresh_token)
        grant = self.grants.get(grant_id) if grant_id else None
        if grant is None or grant.revoked:
            return None
        if grant.refresh_expires_at is not None and self.clock() >= grant.refresh_expires_at:
            return None
        return grant

    def revoke(self, token: str) -> bool:
        """Revoke a refresh or access token: its grant and every access token of the grant die."""
        grant_id = self._refresh_index.get(token)
        if grant_id is None and token in self.tokens:
            grant_id = self.tokens[token].grant_id
        if grant_id is None or grant_id not in self.grants:
            return False
        grant = self.grants[grant_id]
        grant.revoked = True
        if grant.refresh_token is not None:
            self._refresh_index.pop(grant.refresh_token, None)
        for key in [k for k, t in self.tokens.items() if t.grant_id == grant_id]:
            del self.tokens[key]
        self.stats["revoked"] += 1
        return True

    def check_bearer(self, tenant_id: str, authorization: str | None) -> str | None:
        """None when the bearer token is good for ``tenant_id``, else why not (for the 401 body)."""
        if not authorization:
            return "Bearer token is missing"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "Authorization header is not a Bearer token"
        access = self.tokens.get(token.strip())
        if access is None:
            return "Bearer token is invalid or revoked"
        grant = self.grants.get(access.grant_id)
        if grant is None or grant.revoked:
            return "Bearer token is revoked"
        if self.clock() >= access.expires_at:
            return "Bearer token has expired"
        if access.tenant != tenant_id:
            return f"Bearer token was not issued for tenant {tenant_id}"
        return None

    def expire_tokens(self) -> int:
        """Make every current access token expired now (tests: no sleeping); returns how many."""
        now = self.clock()
        for access in self.tokens.values():
            access.expires_at = min(access.expires_at, now)
        return len(self.tokens)

    def _prune(self, now: float) -> None:
        if len(self.tokens) > 10_000:
            for key in [k for k, t in self.tokens.items() if t.expires_at < now - 60]:
                del self.tokens[key]

    # ------------------------------------------------------------------------------------------ quotas

    def set_quota(self, allow: int, interval: float, *, retry_after: bool = True, tenant: str | None = None) -> None:
        """Apply a Quota policy (``allow`` requests per ``interval`` seconds) to one tenant or all."""
        if allow < 0 or interval <= 0:
            raise ValueError("quota needs allow >= 0 and interval > 0")
        for t in self.tenants.values():
            if tenant is None or t.tenant_id == tenant:
                t.quota = Quota(allow, interval, retry_after)

    def clear_quota(self, tenant: str | None = None) -> None:
        for t in self.tenants.values():
            if tenant is None or t.tenant_id == tenant:
                t.quota = None

    def reset_quota_counters(self) -> None:
        for t in self.tenants.values():
            if t.quota is not None:
                t.quota.count = 0
                t.quota.window_start = self.clock()

    def take_quota(self, tenant: Tenant) -> float | None:
        """Count one request; None when allowed, else the seconds until the window resets."""
        quota = tenant.quota
        if quota is None:
            return None
        now = self.clock()
        if now - quota.window_start >= quota.interval:
            quota.window_start = now
            quota.count = 0
        quota.count += 1
        if quota.count <= quota.allow:
            return None
        return max(0.0, quota.window_start + quota.interval - now)

    # ------------------------------------------------------------------------------------------ budgets

    def _seed_m3_budgets(self, tenant_id: str) -> None:
        headers: dict[BudgetKey, BudgetHeader] = {}
        lines: dict[BudgetKey, dict[BudgetCellKey, int]] = {}
        stamp = self.dataset.max_stamp - dt.timedelta(days=400)
        for plant in self.dataset.plants:
            for year in self.dataset.years:
                # [INF] seeded approved budgets: BUNO 100, BVER = the year
                key = (plant.code, "100", str(year))
                headers[key] = BudgetHeader(plant.code, "100", str(year), f"Approved budget {year}", f"{year}01",
                                            "1", "12", "Approved", True, stamp)  # fmt: skip
                cells = lines.setdefault(key, {})
                for c in self.dataset.budget_cells(year, plant.code):
                    cells[(c.account, c.cost_center, c.currency, f"{year}{c.month:02d}")] = c.amount
        self.m3_budget_headers[tenant_id] = headers
        self.m3_budget_lines[tenant_id] = lines

    def _seed_chart_bps(self, tenant_id: str, site: str) -> dict[tuple[str, str, int], ChartBp]:
        from ml_connector.sandbox.dataset import mix

        rows: dict[tuple[str, str, int], ChartBp] = {}
        base = self.dataset.max_stamp - dt.timedelta(days=400)
        for year in self.dataset.years:
            for c in self.dataset.budget_cells(year, site):
                key = (c.account, c.cost_center, year)
                row = rows.get(key)
                if row is None:
                    h = mix(self.dataset.seed, 131, int(c.account), int(c.cost_center[2:]), year)
                    row = ChartBp(c.account, c.cost_center, year, [0] * 12, [0] * 12,
                                  base + dt.timedelta(seconds=h % 86_400), _uuid(h))  # fmt: skip
                    rows[key] = row
                row.bud[c.month - 1] = c.amount
        return rows

    def site_of_config(self, tenant: Tenant, config: str) -> str | None:
        for name, site in tenant.configs.items():
            if name.lower() == config.strip().lower():
                return site
        return None


def _uuid(h: int) -> str:
    from ml_connector.sandbox.dataset import mix

    x = f"{h:016x}{mix(h):016x}"
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-a{x[17:20]}-{x[20:32]}"
