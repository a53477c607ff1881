"""Cron schedules with Pachyderm 2.11 semantics (``cronutil.ParseCronExpression``).

Pachyderm parses ``cron.spec`` with robfig/cron v1.2.0 ``ParseStandard``: exactly five
fields (minute hour dom month dow, no seconds field), the descriptors ``@yearly``,
``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly`` and
``@every <Go duration>``, plus Pachyderm's own ``@never`` (surrounding blanks allowed).
Everything runs in UTC. This module re-implements robfig's parser and ``Next`` exactly.

Resuming: the scheduler lists the tick repo, parses the lexicographically last file name
(an error if it is not RFC 3339) and resumes from the later of that tick and
``cron.start`` (:func:`resume_point`); with no files it resumes from ``start``. It then
commits every tick after that point in order, one commit each, waiting only for ticks
still in the future, so ticks missed while stopped are backfilled (:func:`ticks_between`).
``overwrite: true`` deletes the previous tick file in the same commit (the engine does
that, not this module). ``pachctl run cron`` adds one tick named after the current time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone


class ScheduleError(ValueError):
    """An invalid cron spec, tick name or timestamp; the message names the string."""


_STAR = 1 << 63  # robfig marks fields written with '*' or '?' (dom/dow AND rule)
_MONTHS = dict(zip(("jan", "feb", "mar", "apr", "may", "jun"), range(1, 7), strict=True))
_MONTHS |= dict(zip(("jul", "aug", "sep", "oct", "nov", "dec"), range(7, 13), strict=True))
_DAYS = dict(zip(("sun", "mon", "tue", "wed", "thu", "fri", "sat"), range(7), strict=True))
# (min, max, names) for minute, hour, day of month, month, day of week
_N: dict[str, int] = {}
_BOUNDS = ((0, 59, _N), (0, 23, _N), (1, 31, _N), (1, 12, _MONTHS), (0, 6, _DAYS))
# Go's unicode.IsSpace (strings.Fields, strings.TrimSpace)
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
_GO_SPACE += "\u2028\u2029\u202f\u205f\u3000"
_FIELDS_SEP = re.compile(f"[{re.escape(_GO_SPACE)}]+")
_ATOI = re.compile(r"[+-]?[0-9]+")
_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_NS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_D2 = "([0-9]{2})"
_RFC3339 = re.compile(
    rf"([0-9]{{4}})-{_D2}-{_D2}T{_D2}:{_D2}:{_D2}(?:\.([0-9]{{1,9}}))?(Z|([+-]){_D2}:{_D2})"
)


def _bits(lo: int, hi: int, step: int = 1) -> int:
    return sum(1 << i for i in range(lo, hi + 1, step))


def _all(field: int) -> int:
    return _bits(*_BOUNDS[field][:2]) | _STAR


_DESCRIPTORS = {  # minute, hour, dom, month, dow bit sets (1 is value 0); seconds are 0
    "@yearly": (1, 1, 1 << 1, 1 << 1, _all(4)),
    "@monthly": (1, 1, 1 << 1, _all(3), _all(4)),
    "@weekly": (1, 1, _all(2), _all(3), 1),
    "@daily": (1, 1, _all(2), _all(3), _all(4)),
    "@hourly": (1, _all(1), _all(2), _all(3), _all(4)),
}
_DESCRIPTORS |= {"@annually": _DESCRIPTORS["@yearly"], "@midnight": _DESCRIPTORS["@daily"]}


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()} (need a timezone-aware one)")
    return t.astimezone(UTC)


@dataclass(frozen=True)
class Schedule:
    """A parsed spec: cron field bit sets, a constant ``every`` delay, or neither (@never)."""

    spec: str
    fields: tuple[int, ...] | None = None
    every: timedelta | None = None

    def next(self, after: datetime) -> datetime | None:
        """First tick strictly after ``after`` (UTC), or None if there is none."""
        t = _utc(after).replace(microsecond=0)
        try:
            if self.every is not None:  # robfig ConstantDelaySchedule
                return t + self.every
            return None if self.fields is None else _spec_next(self.fields, t)
        except OverflowError:
            return None


def _spec_next(f: tuple[int, ...], t: datetime) -> datetime | None:
    """robfig SpecSchedule.Next for a whole-second UTC ``t``; None past its 5-year horizon."""
    minute, hour, dom, month, dow = f
    t += timedelta(seconds=1)
    added, year_limit = False, t.year + 5

    def day_ok(d: datetime) -> bool:
        dom_ok, dow_ok = bool(dom >> d.day & 1), bool(dow >> d.isoweekday() % 7 & 1)
        return dom_ok and dow_ok if (dom | dow) & _STAR else dom_ok or dow_ok

    # One field is advanced per pass, then all are checked again (robfig's `goto WRAP`); the
    # first field to change resets the smaller ones (`added`).
    while t.year <= year_limit:
        if not month >> t.month & 1:
            y, m = divmod(t.year * 12 + t.month, 12)
            added, t = True, datetime(y, m + 1, 1, tzinfo=UTC)
        elif not day_ok(t):
            if not added:
                added, t = True, t.replace(hour=0, minute=0, second=0)
            t += timedelta(days=1)
        elif not hour >> t.hour & 1:
            if not added:
                added, t = True, t.replace(minute=0, second=0)
            t += timedelta(hours=1)
        elif not minute >> t.minute & 1:
            if not added:
                added, t = True, t.replace(second=0)
            t += timedelta(minutes=1)
        elif t.second:  # the seconds field is always 0
            added, t = True, t.replace(second=0) + timedelta(minutes=1)
        else:
            return t
    return None


def _num(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not _ATOI.fullmatch(text) or int(text) >= 1 << 63:
        raise ValueError(f"failed to parse int from {text!r}")
    if int(text) < 0:
        raise ValueError(f"negative number {text!r} not allowed")
    return int(text)


def _field(text: str, lo: int, hi: int, names: dict[str, int]) -> int:
    """Bit set of one field: a comma list of ``*|?|a[-b]`` with an optional ``/step``."""
    bits = 0
    for expr in filter(None, text.split(",")):
        rng, *steps = expr.split("/")
        ends = rng.split("-")
        if ends[0] in ("*", "?"):
            start, end, bits = lo, hi, bits | _STAR
        elif len(ends) > 2:
            raise ValueError(f"too many hyphens in {expr!r}")
        else:
            start, end = _num(ends[0], names), _num(ends[-1], names)
        if len(steps) > 1:
            raise ValueError(f"too many slashes in {expr!r}")
        step = _num(steps[0], {}) if steps else 1
        end = hi if steps and len(ends) == 1 else end
        if start < lo or end > hi or start > end:
            raise ValueError(f"range {expr!r} is outside {lo}-{hi} or reversed")
        if step == 0:
            raise ValueError(f"step of {expr!r} should be a positive number")
        bits |= _bits(start, end, step)
    return bits


def _go_duration(text: str) -> int | None:
    """Nanoseconds of a Go ``time.ParseDuration`` string, or None where Go rejects it."""
    neg, s = text[:1] == "-", text[1:] if text[:1] in ("-", "+") else text
    if s == "0":
        return 0
    if not s:
        return None
    total, pos = 0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or not (m[1] or m[2]) or m[3] not in _NS:
            return None
        v, unit, pos = int(m[1] or "0"), _NS[m[3]], m.end()
        f, scale = 0, 1.0
        for c in m[2] or "":  # digits past int64 precision are dropped, as in Go
            if f > ((1 << 63) - 1) // 10 or f * 10 + int(c) > 1 << 63:
                break
            f, scale = f * 10 + int(c), scale * 10
        if v > (1 << 63) // unit:
            return None
        v = v * unit + (int(f * (unit / scale)) if f else 0)
        total += v
        if v > 1 << 63 or total > 1 << 63:
            return None
    if not neg and total >= 1 << 63:
        return None
    return -total if neg else total


def parse_schedule(spec: str) -> Schedule:
    """Parse a ``cron.spec`` exactly as Pachyderm 2.11 does (see the module docstring)."""
    if spec.strip(_GO_SPACE) == "@never":
        return Schedule(spec)
    try:
        if not spec:
            raise ValueError("empty spec string")
        if spec[0] == "@":  # descriptors are matched verbatim: no blanks, case-sensitive
            if spec in _DESCRIPTORS:
                return Schedule(spec, fields=_DESCRIPTORS[spec])
            if not spec.startswith("@every "):
                raise ValueError("unrecognized descriptor")
            ns = _go_duration(spec[7:])
            if ns is None:
                raise ValueError(f"invalid Go duration {spec[7:]!r}")
            # robfig Every(): below 1s becomes 1s, sub-second parts are truncated
            return Schedule(spec, every=timedelta(seconds=max(ns, 10**9) // 10**9))
        fields = _FIELDS_SEP.split(spec.strip(_GO_SPACE))
        if len(fields) != 5 or not fields[0]:
            raise ValueError(f"expected exactly 5 fields, found {len(fields) if fields[0] else 0}")
        return Schedule(
            spec, fields=tuple(_field(f, *b) for f, b in zip(fields, _BOUNDS, strict=True))
        )
    except ValueError as e:
        raise ScheduleError(f"invalid cron spec {spec!r}: {e}") from None


def ticks_between(
    schedule: Schedule, after: datetime, until: datetime, limit: int | None = None
) -> list[datetime]:
    """Every tick t with ``after < t <= until`` in order (a backfill); at most ``limit``."""
    out: list[datetime] = []
    t, until = schedule.next(after), _utc(until)
    while t is not None and t <= until:
        if limit is not None and len(out) >= limit:
            raise ScheduleError(
                f"cron spec {schedule.spec!r}: more than {limit} ticks after "
                f"{format_tick(after)} up to {format_tick(until)}"
            )
        out.append(t)
        t = schedule.next(t)
    return out


def format_tick(t: datetime) -> str:
    """A tick's file name: Go ``time.RFC3339`` in UTC, fraction dropped."""
    t = _utc(t)
    return f"{t.year:04d}-{t:%m-%dT%H:%M:%S}Z"


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 timestamp (``Z`` or ``+hh:mm``, optional fraction) as aware UTC."""
    m = _RFC3339.fullmatch(text)
    try:
        if m is None:
            raise ValueError("expected YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)")
        y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
        off = timedelta(0) if z == "Z" else timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(-off if sign == "-" else off)
        us = int((frac or "").ljust(6, "0")[:6])
        t = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), us, tzinfo=tz)
        return t.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise ScheduleError(f"invalid RFC 3339 timestamp {text!r}: {e}") from None


def parse_tick(name: str) -> datetime:
    """The time of a tick file name such as ``/2024-05-01T02:00:00Z`` (aware UTC)."""
    try:
        return parse_rfc3339(name.removeprefix("/"))
    except ScheduleError as e:
        raise ScheduleError(f"not a cron tick file name {name!r}: {e}") from None


def latest_tick(names: Iterable[str]) -> datetime | None:
    """The tick Pachyderm resumes from: the lexicographically last name, parsed (or None).

    Like Pachyderm, only that last name is read; if it is not a tick name this raises.
    """
    last = max(names, default=None)
    return None if last is None else parse_tick(last)


def resume_point(names: Iterable[str], start: datetime) -> datetime:
    """Where the scheduler resumes: the later of :func:`latest_tick` and ``cron.start``."""
    latest, start = latest_tick(names), _utc(start)
    return latest if latest is not None and latest > start else start
