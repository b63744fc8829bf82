"""ml_connector.cron: parsing, fire times, time zones and daylight-saving changes."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector.cron import CronError, load_zone, parse_cron

UTC = load_zone("UTC")
BERLIN = load_zone("Europe/Berlin")
NEW_YORK = load_zone("America/New_York")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def local(moment: dt.datetime, zone: dt.tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def fire_times(expression: str, start: str, count: int, zone: dt.tzinfo = UTC) -> list[str]:
    schedule = parse_cron(expression)
    times, cursor = [], at(start)
    for _ in range(count):
        following = schedule.next_after(cursor, zone)  # type: ignore[arg-type]
        assert following is not None
        times.append(local(following, zone))
        cursor = following
    return times


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("*/20 * * * *", "2026-01-01T00:05:00+00:00", ["2026-01-01 00:20 UTC", "2026-01-01 00:40 UTC"]),
        ("0 2 * * *", "2026-01-01T02:00:00+00:00", ["2026-01-02 02:00 UTC", "2026-01-03 02:00 UTC"]),
        ("15 6 * * MON-FRI", "2026-01-02T07:00:00+00:00", ["2026-01-05 06:15 UTC", "2026-01-06 06:15 UTC"]),
        ("0 0 1,15 * *", "2026-01-01T00:00:00+00:00", ["2026-01-15 00:00 UTC", "2026-02-01 00:00 UTC"]),
        ("0 0 29 2 *", "2026-03-01T00:00:00+00:00", ["2028-02-29 00:00 UTC", "2032-02-29 00:00 UTC"]),
        ("@monthly", "2026-01-31T12:00:00+00:00", ["2026-02-01 00:00 UTC", "2026-03-01 00:00 UTC"]),
        ("@weekly", "2026-01-01T00:00:00+00:00", ["2026-01-04 00:00 UTC", "2026-01-11 00:00 UTC"]),
        ("0 12 * jan,JUL sun", "2026-01-01T00:00:00+00:00", ["2026-01-04 12:00 UTC", "2026-01-11 12:00 UTC"]),
        ("30 23 31 * *", "2026-01-31T23:30:00+00:00", ["2026-03-31 23:30 UTC"]),
        ("0 0 * * 7", "2026-01-01T00:00:00+00:00", ["2026-01-04 00:00 UTC"]),  # 7 is Sunday too
        ("5/20 * * * *", "2026-01-01T00:00:00+00:00", ["2026-01-01 00:05 UTC", "2026-01-01 00:25 UTC"]),
    ],
)
def test_next_fire_times(expression: str, start: str, expected: list[str]) -> None:
    assert fire_times(expression, start, len(expected)) == expected


def test_restricted_day_fields_match_either_day() -> None:
    # Both day fields restricted: the 13th OR a Friday (cron's rule); one starred: both must match.
    assert fire_times("0 0 13 * FRI", "2026-02-01T00:00:00+00:00", 3) == [
        "2026-02-06 00:00 UTC",
        "2026-02-13 00:00 UTC",
        "2026-02-20 00:00 UTC",
    ]
    assert fire_times("0 0 */2 * FRI", "2026-02-01T00:00:00+00:00", 2) == [
        "2026-02-03 00:00 UTC",  # */2 is restricted (step > 1): OR with Fridays
        "2026-02-05 00:00 UTC",
    ]
    assert fire_times("0 0 * * FRI", "2026-02-01T00:00:00+00:00", 1) == ["2026-02-06 00:00 UTC"]


def test_time_zone_shifts_the_wall_clock() -> None:
    assert fire_times("0 2 * * *", "2026-01-10T00:00:00+00:00", 1, BERLIN) == ["2026-01-10 02:00 CET"]
    schedule = parse_cron("0 2 * * *")
    following = schedule.next_after(at("2026-01-10T00:00:00+00:00"), BERLIN)
    assert following == at("2026-01-10T01:00:00+00:00")


def test_spring_forward_gap_fires_once_right_after_the_gap() -> None:
    # Europe/Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    assert fire_times("30 2 * * *", "2026-03-28T12:00:00+00:00", 3, BERLIN) == [
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
        "2026-03-31 02:30 CEST",
    ]
    # Several gap times of one run collapse into one.
    assert fire_times("*/15 2 * * *", "2026-03-28T12:00:00+00:00", 2, BERLIN) == [
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:00 CEST",
    ]


def test_spring_forward_gap_is_skipped_by_hourly_schedules() -> None:
    assert fire_times("30 * * * *", "2026-03-29T00:00:00+01:00", 3, BERLIN) == [
        "2026-03-29 00:30 CET",
        "2026-03-29 01:30 CET",
        "2026-03-29 03:30 CEST",
    ]


def test_fall_back_overlap_fires_once_for_fixed_times() -> None:
    # America/New_York 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    assert fire_times("30 1 * * *", "2026-10-31T12:00:00+00:00", 2, NEW_YORK) == [
        "2026-11-01 01:30 EDT",
        "2026-11-02 01:30 EST",
    ]


def test_fall_back_overlap_keeps_the_cadence_of_hourly_schedules() -> None:
    assert fire_times("30 * * * *", "2026-11-01T00:00:00-04:00", 4, NEW_YORK) == [
        "2026-11-01 00:30 EDT",
        "2026-11-01 01:30 EDT",
        "2026-11-01 01:30 EST",
        "2026-11-01 02:30 EST",
    ]


def test_latest_at_or_before() -> None:
    schedule = parse_cron("0 */6 * * *")
    assert schedule.latest_at_or_before(at("2026-05-05T13:00:00+00:00"), UTC) == at("2026-05-05T12:00:00+00:00")
    assert schedule.latest_at_or_before(at("2026-05-05T12:00:00+00:00"), UTC) == at("2026-05-05T12:00:00+00:00")
    gap = parse_cron("30 2 * * *")
    assert gap.latest_at_or_before(at("2026-03-29T12:00:00+00:00"), BERLIN) == at("2026-03-29T01:00:00+00:00")


def test_between_is_bounded() -> None:
    schedule = parse_cron("* * * * *")
    times = schedule.between(at("2026-01-01T00:00:00+00:00"), at("2026-01-02T00:00:00+00:00"), UTC, limit=5)
    assert [t.minute for t in times] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "the schedule is empty"),
        ("* * * *", "has 4 fields; cron needs 5"),
        ("60 * * * *", "minute field: 60 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("* * * 13 *", "month field: 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("* * * FOO *", "month field: 'FOO' is not a number or a name (JAN, FEB"),
        ("*/0 * * * *", "minute field: step '0' in '*/0' must be a positive number"),
        ("10-5 * * * *", "minute field: range '10-5' starts after it ends"),
        ("1,,2 * * * *", "minute field: empty element"),
        ("? * * * *", "minute field: '?' is only allowed in the day fields"),
        ("0 0 31 2 *", "never fires"),
        ("@every 5m", "unknown schedule macro '@every 5m'"),
        ("CRON_TZ=UTC 0 * * * *", "use the timeZone setting instead"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["Mars/Base", "", " UTC", "../etc/passwd", "/etc/localtime"])
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(CronError, match="time zone"):
        load_zone(name)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        parse_cron("0 * * * *").next_after(dt.datetime(2026, 1, 1), UTC)


@settings(max_examples=60, deadline=None)
@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    start=st.datetimes(
        min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2028, 12, 31), timezones=st.just(dt.UTC)
    ),
    zone=st.sampled_from([UTC, BERLIN, NEW_YORK, load_zone("Australia/Lord_Howe"), load_zone("Asia/Kolkata")]),
)
def test_daily_schedule_fires_once_per_local_day(minute: int, hour: int, start: dt.datetime, zone: dt.tzinfo) -> None:
    schedule = parse_cron(f"{minute} {hour} * * *")
    times = schedule.between(start, start + dt.timedelta(days=10), zone, limit=20)  # type: ignore[arg-type]
    days = [t.astimezone(zone).date() for t in times]
    assert len(days) == len(set(days))  # never twice on one local day
    assert 9 <= len(times) <= 10
    assert times == sorted(times)
    for moment in times:
        wall = moment.astimezone(zone)
        # At the scheduled wall time, or (in a spring-forward gap) at the end of the gap.
        assert (wall.hour, wall.minute) == (hour, minute) or wall.replace(tzinfo=None) > wall.replace(
            hour=hour, minute=minute, tzinfo=None
        )
