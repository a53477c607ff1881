"""pachlocal.cron against Pachyderm 2.11 (robfig/cron v1.2.0 ParseStandard + @never)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from croniter import croniter

from pachlocal.cron import (
    ScheduleError,
    format_tick,
    latest_tick,
    parse_rfc3339,
    parse_schedule,
    parse_tick,
    resume_point,
    ticks_between,
)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def ticks(spec: str, after: datetime, n: int) -> list[datetime]:
    schedule, out, t = parse_schedule(spec), [], after
    for _ in range(n):
        nxt = schedule.next(t)
        assert nxt is not None
        out.append(t := nxt)
    return out


START = utc(2024, 5, 1, 7, 3, 20)  # a Wednesday


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@yearly", [utc(2025, 1, 1), utc(2026, 1, 1), utc(2027, 1, 1)]),
        ("@annually", [utc(2025, 1, 1), utc(2026, 1, 1), utc(2027, 1, 1)]),
        ("@monthly", [utc(2024, 6, 1), utc(2024, 7, 1), utc(2024, 8, 1)]),
        ("@weekly", [utc(2024, 5, 5), utc(2024, 5, 12), utc(2024, 5, 19)]),
        ("@daily", [utc(2024, 5, 2), utc(2024, 5, 3), utc(2024, 5, 4)]),
        ("@midnight", [utc(2024, 5, 2), utc(2024, 5, 3), utc(2024, 5, 4)]),
        ("@hourly", [utc(2024, 5, 1, 8), utc(2024, 5, 1, 9), utc(2024, 5, 1, 10)]),
    ],
)
def test_descriptors(spec: str, expected: list[datetime]) -> None:
    assert ticks(spec, START, 3) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0 9-11 * * *", [utc(2024, 5, 1, 9), utc(2024, 5, 1, 10), utc(2024, 5, 1, 11)]),
        ("*/20 7 * * *", [utc(2024, 5, 1, 7, 20), utc(2024, 5, 1, 7, 40), utc(2024, 5, 2, 7)]),
        # robfig: "N/step" means "N-max/step"
        ("50/5 7 * * *", [utc(2024, 5, 1, 7, 50), utc(2024, 5, 1, 7, 55), utc(2024, 5, 2, 7, 50)]),
        ("0,30 1 * * *", [utc(2024, 5, 2, 1), utc(2024, 5, 2, 1, 30), utc(2024, 5, 3, 1)]),
        ("0 0 1 JAN,jul *", [utc(2024, 7, 1), utc(2025, 1, 1), utc(2025, 7, 1)]),
        ("0 12 * * Fri-SAT,sun", [utc(2024, 5, 3, 12), utc(2024, 5, 4, 12), utc(2024, 5, 5, 12)]),
        ("0 0 * * 0", [utc(2024, 5, 5), utc(2024, 5, 12), utc(2024, 5, 19)]),
        ("0 0 31 * *", [utc(2024, 5, 31), utc(2024, 7, 31), utc(2024, 8, 31)]),
        ("0 0 29 2 *", [utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29)]),
        ("? ? ? ? ?", [utc(2024, 5, 1, 7, 4), utc(2024, 5, 1, 7, 5), utc(2024, 5, 1, 7, 6)]),
        ("  0\t0 1 1 *  ", [utc(2025, 1, 1), utc(2026, 1, 1), utc(2027, 1, 1)]),
    ],
)
def test_five_fields(spec: str, expected: list[datetime]) -> None:
    assert ticks(spec, START, 3) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # both restricted: either matches (Fridays or the 13th)
        ("0 0 13 * FRI", [utc(2024, 5, 3), utc(2024, 5, 10), utc(2024, 5, 13), utc(2024, 5, 17)]),
        # robfig: a field written with '*' (even "*/2") is unrestricted, so both must match
        ("0 0 */2 * MON", [utc(2024, 5, 13), utc(2024, 5, 27), utc(2024, 6, 3), utc(2024, 6, 17)]),
        # "1-31" has no star: it is restricted, so every day matches
        ("0 0 1-31 * MON", [utc(2024, 5, 2), utc(2024, 5, 3), utc(2024, 5, 4), utc(2024, 5, 5)]),
        # an empty list (",") matches nothing, so only the Mondays remain
        ("0 0 , * MON", [utc(2024, 5, 6), utc(2024, 5, 13), utc(2024, 5, 20), utc(2024, 5, 27)]),
    ],
)
def test_dom_dow_rule(spec: str, expected: list[datetime]) -> None:
    assert ticks(spec, START, 4) == expected


@pytest.mark.parametrize(
    ("spec", "day_or"),
    [
        ("*/15 * * * *", True),
        ("0 9-17/2 * * MON-FRI", True),
        ("30 1 1,15 * *", True),
        ("5/20 3 * * *", True),
        ("0 0 13 * FRI", True),
        ("0 0 1,15 * 1-5", True),
        ("0 0 */2 * MON", False),  # croniter's default (OR) differs from robfig here
        ("0 0 ? * 1", True),
    ],
)
def test_agrees_with_croniter_given_robfig_day_rule(spec: str, day_or: bool) -> None:
    it = croniter(spec, START, day_or=day_or)
    assert ticks(spec, START, 200) == [it.get_next(datetime) for _ in range(200)]
    if not day_or:
        default = croniter(spec, START)
        assert ticks(spec, START, 20) != [default.get_next(datetime) for _ in range(20)]


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        ("1h30m", 5400),
        ("90s", 90),
        ("1.5h", 5400),
        ("2h45m30s", 9930),
        ("30m1h", 5400),
        (".5m", 30),
        ("1500ms", 1),  # sub-second parts are truncated
        ("300ms", 1),  # below one second becomes one second
        ("1µs", 1),
        ("0", 1),  # Pachyderm accepts zero and negative delays: robfig makes them 1s
        ("-5m", 1),
        ("+7m", 420),
    ],
)
def test_every(duration: str, seconds: int) -> None:
    schedule = parse_schedule(f"@every {duration}")
    assert schedule.every == timedelta(seconds=seconds)
    start = START + timedelta(microseconds=999_999)  # the start's fraction is dropped
    step = timedelta(seconds=seconds)
    assert ticks(f"@every {duration}", start, 3) == [
        START + step,
        START + 2 * step,
        START + 3 * step,
    ]


@pytest.mark.parametrize("spec", ["@never", "  @never\t"])
def test_never(spec: str) -> None:
    schedule = parse_schedule(spec)
    assert schedule.next(START) is None
    assert ticks_between(schedule, START, utc(2100, 1, 1)) == []


def test_no_tick_within_five_years_is_none() -> None:
    assert parse_schedule("0 0 30 2 *").next(START) is None
    assert parse_schedule("0 0 29 2 *").next(utc(2097, 1, 1)) is None  # next is 2104


def test_backfill_across_day_and_year_boundaries() -> None:
    every6h = parse_schedule("0 */6 * * *")
    assert ticks_between(every6h, utc(2024, 5, 1, 18), utc(2024, 5, 2, 12)) == [
        utc(2024, 5, 2, 0),
        utc(2024, 5, 2, 6),
        utc(2024, 5, 2, 12),  # `until` is included, `after` is not
    ]
    assert ticks_between(
        parse_schedule("@every 1h30m"), utc(2023, 12, 31, 21, 15), utc(2024, 1, 1, 2)
    ) == [
        utc(2023, 12, 31, 22, 45),
        utc(2024, 1, 1, 0, 15),
        utc(2024, 1, 1, 1, 45),
    ]
    daily = parse_schedule("@daily")
    # UTC has no DST: the night of the EU switch (2024-03-31 01:00Z) is an ordinary one
    assert ticks_between(daily, utc(2024, 3, 29, 12), utc(2024, 4, 2)) == [
        utc(2024, 3, 30),
        utc(2024, 3, 31),
        utc(2024, 4, 1),
        utc(2024, 4, 2),
    ]
    paris = timezone(timedelta(hours=2))  # 01:00+02:00 is 23:00Z the day before
    assert ticks_between(daily, datetime(2024, 4, 1, 1, tzinfo=paris), utc(2024, 4, 1)) == [
        utc(2024, 4, 1)
    ]
    assert ticks_between(daily, utc(2024, 4, 2), utc(2024, 4, 1)) == []


def test_backfill_limit() -> None:
    schedule = parse_schedule("*/5 * * * *")
    assert len(ticks_between(schedule, utc(2024, 5, 1), utc(2024, 5, 1, 1), limit=12)) == 12
    with pytest.raises(ScheduleError, match=r"'\*/5 \* \* \* \*'.*more than 11 ticks"):
        ticks_between(schedule, utc(2024, 5, 1), utc(2024, 5, 1, 1), limit=11)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "empty spec"),
        ("   ", "found 0"),
        ("* * * *", "found 4"),
        ("* * * * * *", "found 6"),  # no seconds field, at either end
        ("0 0 L * *", "parse int"),
        ("0 0 * * 1#2", "parse int"),
        ("0 0 * * 5L", "parse int"),
        ("0 0 * * 7", "outside 0-6"),  # robfig has no 7 for Sunday
        ("60 * * * *", "outside 0-59"),
        ("0 0 0 * *", "outside 1-31"),
        ("5-1 * * * *", "reversed"),
        ("*/0 * * * *", "positive"),
        ("1-2-3 * * * *", "hyphens"),
        ("1/2/3 * * * *", "slashes"),
        ("0 0 * * MONDAY", "parse int"),
        ("@every 1x", "Go duration"),
        ("@every 1", "Go duration"),  # a unit is required
        ("@every ", "Go duration"),
        ("@every  1h", "Go duration"),
        ("@every", "unrecognized"),
        ("@reboot", "unrecognized"),
        ("@Daily", "unrecognized"),
        ("@daily ", "unrecognized"),
        (" @daily", "found 1"),
        ("@ never", "unrecognized"),
    ],
)
def test_bad_specs(spec: str, why: str) -> None:
    with pytest.raises(ScheduleError, match=why) as info:
        parse_schedule(spec)
    assert repr(spec) in str(info.value)


def test_format_and_parse_ticks() -> None:
    t = utc(2024, 5, 1, 2)
    assert format_tick(t) == "2024-05-01T02:00:00Z"
    assert format_tick(t + timedelta(microseconds=999_999)) == "2024-05-01T02:00:00Z"
    assert (
        format_tick(datetime(2024, 5, 1, 4, tzinfo=timezone(timedelta(hours=2))))
        == "2024-05-01T02:00:00Z"
    )
    for name in ("2024-05-01T02:00:00Z", "/2024-05-01T02:00:00Z"):
        assert parse_tick(name) == t and parse_tick(name).tzinfo == UTC
        assert format_tick(parse_tick(name)) == name.lstrip("/")
    assert [format_tick(x) for x in ticks("@hourly", START, 2)] == [
        "2024-05-01T08:00:00Z",
        "2024-05-01T09:00:00Z",
    ]


def test_parse_rfc3339() -> None:
    assert parse_rfc3339("2024-05-01T04:30:00+02:30") == utc(2024, 5, 1, 2)
    assert parse_rfc3339("2024-04-30T23:00:00-03:00") == utc(2024, 5, 1, 2)
    assert parse_rfc3339("2024-05-01T02:00:00.123456789Z") == utc(2024, 5, 1, 2, 0, 0, 123456)
    assert parse_rfc3339("2024-05-01T02:00:00.5Z").tzinfo == UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-05-01",
        "2024-05-01 02:00:00Z",
        "2024-05-01T02:00:00",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T02:00:00z",
        "2024-05-01T02:00Z",
        "2024-05-01T02:00:00+0200",
        "tick.txt",
    ],
)
def test_bad_rfc3339(text: str) -> None:
    with pytest.raises(ScheduleError, match="RFC 3339") as info:
        parse_rfc3339(text)
    assert repr(text) in str(info.value)
    with pytest.raises(ScheduleError, match="tick") as info:
        parse_tick("/" + text)
    assert repr("/" + text) in str(info.value)


def test_latest_tick_and_resume_point() -> None:
    names = ["/2024-05-01T02:00:00Z", "/2024-05-01T10:00:00Z", "/2024-05-01T03:00:00Z"]
    assert latest_tick([]) is None
    assert latest_tick(names) == utc(2024, 5, 1, 10)
    assert latest_tick(["/.keep", *names]) == utc(2024, 5, 1, 10)  # only the last is read
    with pytest.raises(ScheduleError, match="'/zz'"):
        latest_tick([*names, "/zz"])
    assert resume_point(names, utc(2024, 1, 1)) == utc(2024, 5, 1, 10)
    assert resume_point(names, utc(2024, 6, 1)) == utc(2024, 6, 1)  # start was moved on
    assert resume_point([], utc(2024, 6, 1)) == utc(2024, 6, 1)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        parse_schedule("@daily").next(datetime(2024, 5, 1))
