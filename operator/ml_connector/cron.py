"""Cron expressions evaluated in an IANA time zone: parsing, next and previous fire times.

The syntax is the one Kubernetes CronJob accepts (robfig/cron's standard parser): five fields
``minute hour day-of-month month day-of-week``; ``*``, ``?`` (as ``*`` in the day fields), ``a``,
``a-b``, ``*/n``, ``a-b/n``, ``a/n`` (``a`` to the end, every ``n``), comma lists, month and weekday
names (``JAN``..``DEC``, ``SUN``..``SAT``, any case); day-of-week ``7`` is Sunday too; and the macros
``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly``.
As in cron, when both day fields are restricted a day matches if *either* does; when one of them
is ``*`` (or ``?``) both must match. ``TZ=``/``CRON_TZ=`` prefixes are refused: the zone is a
separate setting (CronJob's ``timeZone``).

Daylight-saving changes follow the classic (Vixie) cron rule, so that a run scheduled at a fixed
wall-clock time happens exactly once per scheduled day:

* a wall-clock time that does not exist (the spring-forward gap) fires once, at the first instant
  after the gap, unless the schedule fires every hour anyway (then the gap is simply skipped);
* a wall-clock time that happens twice (the fall-back overlap) fires at its first occurrence only,
  unless the schedule fires every hour (then both occurrences fire, keeping the cadence).

(CronJob itself skips times in the gap and fires twice in the overlap.) All instants returned are
timezone-aware UTC datetimes.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronSchedule", "load_zone", "parse_cron"]

_UTC = dt.UTC
#: How far ahead (or back) to look for a matching day: 29 February may be 8 years away.
_SEARCH_DAYS = 8 * 366 + 1

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: i
    for i, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
_WEEKDAYS = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS),
)
_NUMBER = re.compile(r"^\d+$")


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says which part is wrong."""


@lru_cache(maxsize=64)
def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. ``Europe/Berlin``), or :class:`CronError`."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        raise CronError(f"time zone {name!r} is not an IANA time zone name such as 'Europe/Berlin' or 'UTC'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CronError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'") from exc


def _value(token: str, spec: _Field) -> int:
    upper = token.upper()
    if upper in spec.names:
        return spec.names[upper]
    if not _NUMBER.match(token):
        hint = f" or a name ({', '.join(spec.names)})" if spec.names else ""
        raise CronError(f"{spec.name} field: {token!r} is not a number{hint}")
    value = int(token)
    if not spec.low <= value <= spec.high:
        raise CronError(f"{spec.name} field: {value} is out of range {spec.low}-{spec.high}")
    return value


def _parse_field(text: str, spec: _Field) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it is unrestricted (``*`` or ``?`` with step 1)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise CronError(f"{spec.name} field: empty element in {text!r}")
        range_part, _, step_part = part.partition("/")
        step = 1
        if step_part or part.endswith("/"):
            if not _NUMBER.match(step_part) or int(step_part) == 0:
                raise CronError(f"{spec.name} field: step {step_part!r} in {part!r} must be a positive number")
            step = int(step_part)
        if range_part in ("*", "?"):
            if range_part == "?" and spec.name not in ("day-of-month", "day-of-week"):
                raise CronError(f"{spec.name} field: '?' is only allowed in the day fields")
            low, high = spec.low, spec.high
            star = star or step == 1
        else:
            low_text, dash, high_text = range_part.partition("-")
            low = _value(low_text, spec)
            if dash:
                high = _value(high_text, spec)
            elif step_part:
                high = spec.high  # "a/n": from a to the end of the range
            else:
                high = low
            if low > high:
                raise CronError(f"{spec.name} field: range {range_part!r} starts after it ends")
        values.update(range(low, high + 1, step))
    if spec.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values), star


def parse_cron(expression: str) -> CronSchedule:
    """Parse ``expression``; raises :class:`CronError` naming the offending field."""
    text = " ".join(expression.split())
    if not text:
        raise CronError("the schedule is empty")
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise CronError("the schedule may not set TZ= or CRON_TZ=; use the timeZone setting instead")
    fields = _MACROS.get(text.lower(), text).split(" ")
    if text.startswith("@") and text.lower() not in _MACROS:
        raise CronError(f"unknown schedule macro {text!r}; use one of {', '.join(_MACROS)}")
    if len(fields) != 5:
        raise CronError(
            f"the schedule {expression!r} has {len(fields)} fields; "
            "cron needs 5: minute hour day-of-month month day-of-week"
        )
    (minutes, _), (hours, _), (days, dom_star), (months, _), (weekdays, dow_star) = (
        _parse_field(text, spec) for text, spec in zip(fields, _FIELDS, strict=True)
    )
    schedule = CronSchedule(
        expression=expression,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=days,
        months=months,
        weekdays=weekdays,
        dom_star=dom_star,
        dow_star=dow_star,
    )
    if not any(schedule.matches_day(day) for day in _days(dt.date(2000, 1, 1), _SEARCH_DAYS)):
        raise CronError(f"the schedule {expression!r} never fires (no such day of the month)")
    return schedule


def _days(start: dt.date, count: int, step: int = 1) -> Iterator[dt.date]:
    one = dt.timedelta(days=step)
    day = start
    for _ in range(count):
        yield day
        day += one


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression. Use :meth:`next_after` / :meth:`latest_at_or_before` with a zone."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool
    dow_star: bool

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    def matches_day(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def instants_on(self, day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, ...]:
        """The sorted UTC instants at which the schedule fires on the local calendar ``day``."""
        if not self.matches_day(day):
            return ()
        return _instants(self, day, zone)

    def next_after(self, after: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """The first fire time strictly after ``after`` (aware), or None if there is none within 8 years."""
        after = _aware(after)
        first_day = after.astimezone(zone).date() - dt.timedelta(days=1)
        best: dt.datetime | None = None
        best_day: dt.date | None = None
        for day in _days(first_day, _SEARCH_DAYS + 2):
            if best_day is not None and day > best_day + dt.timedelta(days=1):
                break
            instants = self.instants_on(day, zone)
            index = bisect.bisect_right(instants, after)
            candidates = instants[index:]
            if candidates and (best is None or candidates[0] < best):
                best, best_day = candidates[0], day
        return best

    def latest_at_or_before(self, moment: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """The last fire time at or before ``moment`` (aware), or None if there is none within 8 years."""
        moment = _aware(moment)
        first_day = moment.astimezone(zone).date() + dt.timedelta(days=1)
        best: dt.datetime | None = None
        best_day: dt.date | None = None
        for day in _days(first_day, _SEARCH_DAYS + 2, step=-1):
            if best_day is not None and day < best_day - dt.timedelta(days=1):
                break
            instants = self.instants_on(day, zone)
            index = bisect.bisect_right(instants, moment)
            if index and (best is None or instants[index - 1] > best):
                best, best_day = instants[index - 1], day
        return best

    def between(self, start: dt.datetime, end: dt.datetime, zone: ZoneInfo, *, limit: int) -> list[dt.datetime]:
        """Fire times in ``(start, end]``, at most ``limit`` of them (the earliest)."""
        found: list[dt.datetime] = []
        cursor = _aware(start)
        end = _aware(end)
        while len(found) < limit:
            following = self.next_after(cursor, zone)
            if following is None or following > end:
                break
            found.append(following)
            cursor = following
        return found


@lru_cache(maxsize=1024)
def _instants(schedule: CronSchedule, day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, ...]:
    start = dt.datetime(day.year, day.month, day.day)
    offset_start = start.replace(tzinfo=zone).utcoffset()
    offset_end = (start + dt.timedelta(days=1)).replace(tzinfo=zone).utcoffset()
    walls = [start.replace(hour=h, minute=m) for h in schedule.hours for m in schedule.minutes]
    if offset_start is not None and offset_start == offset_end and not _transition_within(start, zone):
        return tuple((wall - offset_start).replace(tzinfo=_UTC) for wall in walls)
    instants: set[dt.datetime] = set()
    for wall in walls:
        instants.update(_resolve(wall, zone, every_hour=schedule.every_hour))
    return tuple(sorted(instants))


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime (UTC)")
    return moment.astimezone(_UTC)


def _transition_within(start: dt.datetime, zone: ZoneInfo) -> bool:
    """Whether the UTC offset changes more than once within the day (never in practice; be safe)."""
    noon = (start + dt.timedelta(hours=12)).replace(tzinfo=zone).utcoffset()
    return noon != start.replace(tzinfo=zone).utcoffset()


def _utc(wall: dt.datetime, zone: ZoneInfo, fold: int) -> dt.datetime:
    return wall.replace(tzinfo=zone, fold=fold).astimezone(_UTC)


def _exists(wall: dt.datetime, zone: ZoneInfo, fold: int) -> bool:
    return _utc(wall, zone, fold).astimezone(zone).replace(tzinfo=None) == wall


def _resolve(wall: dt.datetime, zone: ZoneInfo, *, every_hour: bool) -> list[dt.datetime]:
    """UTC instants for a local wall-clock time, with the DST rules in the module docstring."""
    first, second = _utc(wall, zone, 0), _utc(wall, zone, 1)
    first_ok, second_ok = _exists(wall, zone, 0), _exists(wall, zone, 1)
    if first_ok and second_ok:
        if first == second or not every_hour:
            return [min(first, second)]
        return sorted({first, second})
    if first_ok or second_ok:
        return [first if first_ok else second]
    if every_hour:
        return []
    return [_gap_end(min(first, second), max(first, second), zone)]


def _gap_end(low: dt.datetime, high: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The instant the local clock jumps forward, found between two instants that straddle it."""
    before = low.astimezone(zone).utcoffset()
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)
