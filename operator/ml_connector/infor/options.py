"""Per-product-line options (what a SyncConnection's ``spec.infor`` turns into)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ml_connector.infor.client import ClientOptions


@dataclass(frozen=True, kw_only=True)
class ProductOptions:
    """Options common to every product line.

    ``incremental_overlap`` is subtracted from ``changed_since`` so that changes committed late
    around the previous watermark are read again (duplicates are removed downstream by content hash).
    """

    client: ClientOptions = field(default_factory=ClientOptions)
    incremental_overlap: dt.timedelta = dt.timedelta(minutes=10)
    #: Budget amounts are rounded to this many decimals before comparing and posting (None: as given).
    amount_decimals: int | None = 2


@dataclass(frozen=True, kw_only=True)
class M3Options(ProductOptions):
    """M3: company/divisions, which accounting dimension is the cost center, batch sizes, budget target.

    ``divisions``/``years`` empty means: discover them from the ledgers (a few one-row queries).
    Budget write-back goes to ``BUS100MI`` budget ``budget_number``; a version name maps to a
    ``BVER`` through ``budget_versions`` (unmapped names are used as they are); ``{year}`` in a mapped
    value gives one M3 version per fiscal year (e.g. ``{"Budget": "{year}"}``). A line's division is
    ``budget_division`` or, when unset, the division that owns the line's cost center (``CRS630MI``).
    """

    company: str = ""  # empty: the service user's default company (MNS150)
    divisions: tuple[str, ...] = ()
    years: tuple[int, ...] = ()
    cost_center_dimension: int = 2
    export_batch_size: int = 10_000
    list_page_size: int = 1_000
    #: LMDT is a date: read the day before the watermark again.
    incremental_overlap: dt.timedelta = dt.timedelta(days=1)
    budget_number: str = ""
    budget_versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    budget_division: str | None = None
    budget_description: str = "Anaplan approved budget"
    budget_exchange_rate_type: str = "1"
    budget_periods: int = 12
    bulk_size: int = 100

    def __post_init__(self) -> None:
        if not 2 <= self.cost_center_dimension <= 7:
            raise ValueError(
                f"cost_center_dimension must be 2..7 (dimension 1 is the account), got {self.cost_center_dimension}"
            )
        if self.export_batch_size < 2 or self.list_page_size < 2:
            raise ValueError("export_batch_size and list_page_size must be >= 2")
        if self.bulk_size < 1:
            raise ValueError("bulk_size must be >= 1")


@dataclass(frozen=True, kw_only=True)
class SyteLineOptions(ProductOptions):
    """SyteLine / CSI: Mongoose configuration per site, page size (``recordcap``), budget properties.

    ``sites`` maps a site code to its Mongoose configuration name (header ``X-Infor-MongooseConfig``).
    Master data (vendors, customers, items, chart of accounts, unit codes) is read from
    ``master_data_site`` or, when unset, from every site and de-duplicated by natural key.
    ``RecordDate`` values are local times of ``timezone``.
    """

    sites: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    company: str = ""
    master_data_site: str | None = None
    page_size: int = 200
    timezone: str = "UTC"
    #: version name -> property prefix of SLChartBps; ``N`` (1..12, calendar month) is appended.
    version_properties: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({"Budget": "BudAmt", "Forecast": "PlanAmt"})
    )
    budget_site: str | None = None
    #: site -> domestic currency; when set, budget lines in another currency are refused.
    site_currencies: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    update_batch_size: int = 50

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size}")
        if self.master_data_site is not None and self.master_data_site not in self.sites:
            raise ValueError(f"master_data_site {self.master_data_site!r} is not one of the sites {sorted(self.sites)}")

    @staticmethod
    def configs_for(tenant: str, sites: Iterable[str]) -> dict[str, str]:
        """The usual configuration naming ``<TENANT>_<SITE>``."""
        return {site: f"{tenant}_{site}" for site in sites}


@dataclass(frozen=True, kw_only=True)
class FsmOptions(ProductOptions):
    """FSM (Landmark): page size of the generic list API."""

    page_size: int = 500
    company: str = ""

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size}")
