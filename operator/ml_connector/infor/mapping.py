"""Turning source rows (all strings) into canonical records, and bad rows into :class:`SourceRecordError`.

A malformed row (bad number or date, empty key) must neither crash the stream nor vanish: the
adapters yield a :class:`SourceRecordError` **in the record stream**, in place of the record, so the
sync engine can put it in the audit trail as rejected. Consumers test ``isinstance(x, SourceRecordError)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from ml_connector.records import Entity, Record, period_of

R = TypeVar("R", bound=Record)

UTC = dt.UTC
_CENTS = Decimal("0.01")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRecordError:
    """A source row that could not be mapped. Yielded in the stream instead of the record."""

    entity: Entity
    source: str  # e.g. "M3 EXPORTMI FGLEDG (P10/2025)" or "SyteLine SLLedgers (NORTHWIND_CSI_TST_P10)"
    natural_key: str | None  # best effort from the raw key fields; None when a key field is empty
    field: str | None
    raw_value: str | None
    reason: str
    row: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "source": self.source,
            "natural_key": self.natural_key,
            "field": self.field,
            "raw_value": self.raw_value,
            "reason": self.reason,
            "row": dict(self.row),
        }

    def __str__(self) -> str:
        key = f" {self.natural_key}" if self.natural_key else ""
        where = f" field {self.field}={self.raw_value!r}" if self.field else ""
        return f"{self.entity}{key} from {self.source}:{where} {self.reason}"


class BadField(ValueError):
    """Raised by the field parsers; :func:`convert` turns it into a :class:`SourceRecordError`."""

    def __init__(self, field: str, raw: Any, reason: str) -> None:
        super().__init__(f"{field}={raw!r}: {reason}")
        self.field = field
        self.raw = None if raw is None else str(raw)
        self.reason = reason


Row = Mapping[str, Any]


def raw(row: Row, name: str) -> str:
    value = row.get(name)
    if type(value) is str:
        return value.strip()
    return "" if value is None else str(value).strip()


def key(row: Row, name: str) -> str:
    """A key field: must not be empty."""
    value = raw(row, name)
    if not value:
        raise BadField(name, row.get(name), "empty key field")
    return value


def text(row: Row, name: str) -> str:
    return raw(row, name)


def decimal(row: Row, name: str) -> Decimal:
    value = raw(row, name)
    if not value:
        raise BadField(name, row.get(name), "empty amount")
    dot = value.find(".")
    if dot >= 0 and len(value) - dot > 3 and value[-1] == "0" and value[dot + 1 :].isdigit():
        # Mongoose pads to 8 decimals ("100.00000000"): drop the zeros down to cents (string work is cheap).
        value = value.rstrip("0")
        value += "0" * (3 - (len(value) - dot))
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise BadField(name, value, "not a decimal number") from None
    if not number.is_finite():
        raise BadField(name, value, "not a finite decimal number")
    return number


def trim(number: Decimal) -> Decimal:
    """Mongoose pads to 8 decimals (``100.00000000``): drop the zeros down to cents when nothing is lost."""
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        cents = number.quantize(_CENTS)
        if cents == number:
            return cents
    return number


def integer(row: Row, name: str) -> int:
    value = raw(row, name)
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise BadField(name, value, "not an integer") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise BadField(name, value, "not an integer")
    return int(number)


@functools.lru_cache(maxsize=8192)
def parse_ymd(value: str) -> dt.date | str:
    """Parsed date, or the reason it is not one (cached: ledgers repeat a few thousand dates)."""
    if len(value) != 8 or not value.isdigit():
        return "not a date of the form YYYYMMDD"
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return "not a valid calendar date"


def ymd(row: Row, name: str) -> dt.date:
    """``YYYYMMDD`` (M3 dates)."""
    value = raw(row, name)
    parsed = parse_ymd(value)
    if isinstance(parsed, str):
        raise BadField(name, value, parsed)
    return parsed


def optional_ymd(row: Row, name: str) -> dt.date | None:
    value = raw(row, name)
    if value in ("", "0", "00000000"):
        return None
    return ymd(row, name)


def iso_date(row: Row, name: str) -> dt.date:
    """``YYYY-MM-DD`` (FSM dates; a time part is ignored)."""
    value = raw(row, name)
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise BadField(name, value, "not a date of the form YYYY-MM-DD") from None


def optional_iso_date(row: Row, name: str) -> dt.date | None:
    return iso_date(row, name) if raw(row, name) else None


@functools.lru_cache(maxsize=8192)
def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def ymd_stamp(row: Row, name: str) -> dt.datetime:
    """An M3 change date (``LMDT``) as midnight UTC; empty -> the epoch."""
    value = raw(row, name)
    if not value or value == "0":
        return EPOCH
    return midnight(ymd(row, name))


def epoch_millis(row: Row, name: str) -> dt.datetime:
    """An M3 ``LMTS`` / FSM ``LastModified`` timestamp (epoch milliseconds); empty -> the epoch."""
    value = raw(row, name)
    if not value:
        return EPOCH
    try:
        millis = int(value)
    except ValueError:
        raise BadField(name, value, "not an epoch-milliseconds timestamp") from None
    return EPOCH + dt.timedelta(milliseconds=millis)


def mongoose_datetime(row: Row, name: str, zone: dt.tzinfo = UTC) -> dt.datetime:
    """A Mongoose datetime ``"20250115 10:22:33.000"`` in the site's ``zone``, returned in UTC."""
    value = raw(row, name)
    if not value:
        raise BadField(name, value, "empty date")
    if len(value) == 21 and value[8] == " " and value[11] == ":" and value[14] == ":" and value[17] == ".":
        try:  # the usual shape, sliced (strptime is ten times slower)
            moment = dt.datetime(
                int(value[:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]), int(value[12:14]),
                int(value[15:17]), int(value[18:21]) * 1000, tzinfo=zone,
            )  # fmt: skip
        except ValueError:
            raise BadField(name, value, "not a valid Mongoose datetime") from None
        return moment if zone is UTC else moment.astimezone(UTC)
    for fmt in ("%Y%m%d %H:%M:%S.%f", "%Y%m%d %H:%M:%S", "%Y%m%d"):
        try:
            parsed = dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=zone).astimezone(UTC)
    raise BadField(name, value, "not a Mongoose datetime (YYYYMMDD HH:MM:SS.fff)")


def mongoose_date(row: Row, name: str) -> dt.date:
    """The date part of a Mongoose datetime, as written in the source (no zone shift)."""
    value = raw(row, name)
    parsed = parse_ymd(value[:8])
    if isinstance(parsed, str):
        raise BadField(name, value, parsed.replace("YYYYMMDD", "YYYYMMDD HH:MM:SS.fff"))
    return parsed


def optional_mongoose_date(row: Row, name: str) -> dt.date | None:
    return mongoose_date(row, name) if raw(row, name) else None


def format_mongoose_datetime(moment: dt.datetime, zone: dt.tzinfo = UTC) -> str:
    """``datetime`` -> ``'20250115 10:22:33.000'`` in the site's zone (for ``RecordDate`` filters)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(zone)
    return local.strftime("%Y%m%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def zone(name: str) -> dt.tzinfo:
    return UTC if name.upper() == "UTC" else ZoneInfo(name)


@functools.lru_cache(maxsize=4096)
def period(day: dt.date) -> str:
    return period_of(day)


def convert(
    entity: Entity,
    source: str,
    row: Row,
    build: Callable[[Row], R],
    key_fields: tuple[str, ...],
) -> R | SourceRecordError:
    """``build(row)``, or a :class:`SourceRecordError` naming the field when the row is malformed."""
    try:
        return build(row)
    except BadField as exc:
        parts = [raw(row, name) for name in key_fields]
        natural_key = "/".join(parts) if parts and all(parts) else None
        return SourceRecordError(
            entity=entity,
            source=source,
            natural_key=natural_key,
            field=exc.field,
            raw_value=exc.raw,
            reason=exc.reason,
            row=dict(row),
        )


STATUS_ACTIVE = "active"
STATUS_INACTIVE = "inactive"


def party_status(code: str) -> str:
    """M3 ``STAT`` 20/90 and SyteLine ``Stat`` A/I to ``active``/``inactive``; anything else as given.

    [INF] M3: 20 = definite/active, 90 = blocked/deleted; SyteLine: A = active, I = inactive.
    """
    mapped = {"20": STATUS_ACTIVE, "90": STATUS_INACTIVE, "A": STATUS_ACTIVE, "I": STATUS_INACTIVE}
    return mapped.get(code.strip().upper(), code.strip())
