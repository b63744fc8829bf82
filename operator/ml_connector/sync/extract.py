"""The Infor side as the pipeline sees it: a product line opened from the spec, and record streams with the
rows that could not be mapped set aside (they are audited as rejected, never dropped).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import re
from collections.abc import AsyncIterator, Callable, Collection
from decimal import Decimal
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
    """``entity``'s records; rows that could not be mapped go to ``on_error`` (never silently dropped), and so do
    records that cannot be loaded faithfully (:func:`source_problem`)."""
    stream = product.read(entity, changed_since=changed_since, periods=periods)
    try:
        async for item in stream:
            if not isinstance(item, SourceRecordError):
                item = source_problem(item) or item
            if isinstance(item, SourceRecordError):
                if on_error is not None:
                    on_error(item)
                continue
            yield item
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
#: The largest amount an Anaplan number (an IEEE double) holds to the cent: 2**53 cents.
MAX_AMOUNT = Decimal(2**53) / 100


@dataclasses.dataclass(frozen=True)
class _Checks:
    """The fields of a record type to check, and C-level getters for the common (clean) case."""

    fields: tuple[tuple[str, str], ...]  # (name, "code" | "text" | "number")
    texts: Callable[[Any], tuple[Any, ...]]
    codes: Callable[[Any], tuple[Any, ...]]
    numbers: Callable[[Any], tuple[Any, ...]]


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    if not names:
        return lambda _: ()
    get = operator.attrgetter(*names)
    return (lambda r: (get(r),)) if len(names) == 1 else get


_CHECKS: dict[type, _Checks] = {}


#: Free-text fields: the import file flattens their line breaks and drops their control characters. Every other
#: text field is a code (a key, a dimension member, a period, a currency...): changed, it would be another code.
FREE_TEXT = frozenset({"text", "name", "description"})


def _checks(kind: type) -> _Checks:
    fields: list[tuple[str, str]] = []
    for f in dataclasses.fields(kind):
        if f.type in ("str", "str | None", str):
            fields.append((f.name, "text" if f.name in FREE_TEXT else "code"))
        elif f.type in ("Decimal", "Decimal | None", Decimal):
            fields.append((f.name, "number"))
    checks = _CHECKS[kind] = _Checks(
        tuple(fields),
        _getter([n for n, k in fields if k != "number"]),
        _getter([n for n, k in fields if k == "code"]),
        _getter([n for n, k in fields if k == "number"]),
    )
    return checks


def _shown(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def source_problem(record: Record) -> SourceRecordError | None:
    """A :class:`SourceRecordError` when a mapped record cannot be loaded faithfully: a text field that is not
    valid Unicode (a lone UTF-16 surrogate, which a JSON ``\\ud800`` escape from the source decodes to, cannot
    be encoded, hashed or written to a file), a code (any text field but free text) holding a control character
    (the import file cannot carry it: cleaned, the code would be another one, and its row could overwrite another
    cell), or an amount beyond :data:`MAX_AMOUNT` (Anaplan would round it)."""
    record_type = type(record)
    checks = _CHECKS.get(record_type) or _checks(record_type)
    try:  # the common case at C speed; anything unusual (None, NaN, non-ASCII) takes the field-by-field path
        if "".join(checks.texts(record)).isascii() and "".join(checks.codes(record)).isprintable():
            for number in checks.numbers(record):
                if abs(number) > MAX_AMOUNT:
                    break
            else:
                return None
    except (TypeError, ArithmeticError):
        pass
    for name, role in checks.fields:
        value = getattr(record, name)
        if role == "number":
            if value is None or (isinstance(value, Decimal) and value.is_finite() and abs(value) <= MAX_AMOUNT):
                continue
            text = str(value)
            reason = (
                f"amount out of range: beyond {MAX_AMOUNT:,} an Anaplan number cannot hold it to the cent"
                if isinstance(value, Decimal) and value.is_finite()
                else "amount is not a finite number"
            )
            shown = text[:40] + ("..." if len(text) > 40 else "")
        elif type(value) is not str:
            continue
        elif not value.isascii() and _SURROGATE.search(value):
            reason = "text is not valid Unicode (a lone UTF-16 surrogate, shown as U+FFFD)"
            shown = _shown(value)
        elif role == "code" and _CONTROL.search(value):
            reason = "holds a control character, which a code cannot carry into the import file"
            shown = value
        else:
            continue
        return SourceRecordError(
            entity=record.entity,
            source="Infor",
            natural_key=_CONTROL.sub("\ufffd", _shown(record.natural_key)),  # printable, storable anywhere
            field=name,
            raw_value=shown,
            reason=reason,
            row={k: _shown(v) if isinstance(v, str) else v for k, v in record.to_dict().items()},
        )
    return None


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
