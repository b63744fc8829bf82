"""The Infor side as the pipeline sees it: a product line opened from the spec, and record streams with the
rows that could not be mapped set aside (they are audited as rejected, never dropped).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from ml_connector.infor import (
    ClientOptions,
    FsmOptions,
    IonApiCredentials,
    M3Options,
    ProductLine,
    ProductOptions,
    SourceRecordError,
    SyteLineOptions,
    open_product_line,
)
from ml_connector.records import Entity, Record, check_period
from ml_connector.spec import PeriodRange, SyncConnectionSpec
from ml_connector.sync.errors import SyncConfigError
from ml_connector.sync.options import Tuning

OnSourceError = Callable[[SourceRecordError], None]


def _site_of(config: str, tenant: str) -> str:
    """The site of a Mongoose configuration: ``<TENANT>_<SITE>`` is the usual naming; otherwise the name itself."""
    prefix = f"{tenant}_"
    return config[len(prefix) :] if config.upper().startswith(prefix.upper()) and len(config) > len(prefix) else config


def product_options(spec: SyncConnectionSpec, tenant: str, tuning: Tuning) -> ProductOptions:
    """The product line's options from ``spec.infor`` (and ``spec.writeback.target``)."""
    infor = spec.infor
    base = tuning.infor_client or ClientOptions()
    client = dataclasses.replace(base, rate_limit=infor.rate_limit.requests_per_second, burst=infor.rate_limit.burst)
    page = tuning.infor_page_size or infor.page_size
    target = spec.writeback.target if spec.writeback is not None else None
    if infor.product_line == "M3":
        assert infor.m3 is not None  # the spec validates it
        m3: dict[str, Any] = {}
        if target is not None and target.m3 is not None:
            m3 = {
                "budget_number": target.m3.budget_number,
                "budget_versions": {spec.writeback.version: target.m3.budget_version} if spec.writeback else {},
                "budget_division": target.m3.division,
            }
        return M3Options(
            client=client,
            company=infor.m3.company,
            divisions=tuple(infor.m3.divisions),
            cost_center_dimension=infor.m3.cost_center_dimension,
            list_page_size=max(2, page),
            export_batch_size=max(2, page),
            **m3,
        )
    if infor.product_line == "SyteLine":
        assert infor.syteline is not None
        sites = {_site_of(config, tenant): config for config in infor.syteline.configs}
        budget_site = _site_of(target.syteline.config, tenant) if target is not None and target.syteline else None
        if budget_site is not None and budget_site not in sites:
            sites[budget_site] = target.syteline.config if target is not None and target.syteline else budget_site
        return SyteLineOptions(client=client, sites=sites, page_size=page, budget_site=budget_site)
    if infor.product_line == "FSM":
        return FsmOptions(client=client, page_size=page)
    raise SyncConfigError(f"infor.productLine {infor.product_line!r} is not supported by the sync pipeline yet")


def open_infor(spec: SyncConnectionSpec, credentials: IonApiCredentials, tuning: Tuning) -> ProductLine:
    """The product line of ``spec.infor`` on the tenant of ``credentials`` (use ``async with``)."""
    options = product_options(spec, credentials.ti, tuning)
    return open_product_line(spec.infor.product_line, credentials, options, transport=tuning.infor_transport)


async def read_records(
    product: ProductLine,
    entity: Entity,
    *,
    changed_since: dt.datetime | None = None,
    periods: Collection[str] | None = None,
    on_error: OnSourceError | None = None,
) -> AsyncIterator[Record]:
    """``entity``'s records; rows that could not be mapped go to ``on_error`` (never silently dropped)."""
    stream = product.read(entity, changed_since=changed_since, periods=periods)
    try:
        async for item in stream:
            if isinstance(item, SourceRecordError):
                if on_error is not None:
                    on_error(item)
                continue
            yield item
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def month_index(period: str) -> int:
    check_period(period)
    return int(period[:4]) * 12 + int(period[5:7]) - 1


def period_of_index(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def period_span(first: str, last: str) -> tuple[str, ...]:
    """Every ``YYYY-MM`` from ``first`` to ``last`` included."""
    start, end = month_index(first), month_index(last)
    if start > end:
        raise SyncConfigError(f"period range {first}..{last} is empty: {first} is after {last}")
    return tuple(period_of_index(i) for i in range(start, end + 1))


def window_periods(
    period_from: str | None,
    period_to: str | None,
    lookback_months: int | None,
    *,
    today: dt.date,
    override: PeriodRange | None = None,
) -> tuple[str, ...] | None:
    """The periods a flow is restricted to (None: no restriction, incremental by watermark).

    ``override`` (a SyncRun's ``period``) wins; ``periodFrom`` alone runs to the current period.
    """
    current = f"{today.year:04d}-{today.month:02d}"
    if override is not None:
        return period_span(override.from_, override.to)
    if lookback_months is not None:
        end = month_index(current)
        return tuple(period_of_index(i) for i in range(end - lookback_months + 1, end + 1))
    if period_from is not None:
        return period_span(period_from, period_to or max(current, period_from))
    return None
