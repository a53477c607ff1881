"""Ingest without a bucket: object names, landing windows, schedules, parsing exports, atomic writes."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lensfeed.ingest import (
    ExportError,
    check_object_name,
    landing_time,
    name_problem,
    parse_duration,
    parse_export,
    select_window,
    settle_seconds,
    table_of,
    tick_window,
    write_atomic,
)
from lensfeed.parquet import parquet_bytes
from lensfeed.schemas import POSTS, SCHEMAS, TABLES
from tests.lens.ingest_objects import (
    HOUR,
    START,
    US,
    info,
    tick,
)


def test_check_object_name_verdicts() -> None:
    names = [
        "lens/public_profile_post/20240501T010000Z-000000000000.parquet",
        "lens/../etc/passwd",
        "lens/public_profile_post/..",
        "/lens/public_profile_post/x.parquet",
        "lens/public_profile_post/a\x01b.parquet",
        "lens/public_profile_post/a\nb.parquet",
        "lens/public_profile_post/a\x7fb.parquet",
        "lens/" + "x" * 1018,  # 1023 bytes: the longest name allowed
        "lens/" + "x" * 1019,
        "lens/" + "é" * 550,  # counted in UTF-8 bytes, not characters
        "",
        "lens/a..b/c.parquet",
    ]
    assert [check_object_name(n) for n in names] == [
        None,
        "name has a '..' component",
        "name has a '..' component",
        "name is an absolute path",
        "name contains control character U+0001",
        "name contains control character U+000A",
        "name contains control character U+007F",
        None,
        "name is 1024 bytes; names must be under 1024",
        "name is 1105 bytes; names must be under 1024",
        "name is empty",
        None,
    ]


def test_table_of_and_name_problem() -> None:
    names = [
        "lens/public_profile_post/20240501T010000Z-000000000000.parquet",
        "lens/public_follower/20240501T010000Z-000000000003.parquet",
        "lens/public_comment/20240501T010000Z-000000000000.parquet",
        "lens/public_profile_post/export.csv",
        "lens/public_profile_post/sub/20240501T010000Z-000000000000.parquet",
        "other/public_profile_post/20240501T010000Z-000000000000.parquet",
        "lens/public_profile_post/20240501T010000Z-0.parquet\x00",
        "lens/public_follower/20240501T010000Z.complete.json",  # a snapshot run's marker
        "lens/public_follower/20240501T010000Z.manifest.json",
    ]
    assert [table_of(n, "lens") for n in names] == [POSTS, "public_follower"] + [None] * 5 + [
        "public_follower",
        None,
    ]
    layout = "name does not match lens/<table>/<YYYYmmddTHHMMSSZ>-<part>.parquet"
    assert [name_problem(n, "lens/") for n in names] == [
        None,
        None,
        f"unknown table 'public_comment'; known tables: {', '.join(sorted(TABLES))}",
        layout,
        layout,
        layout,
        "name contains control character U+0000",
        None,
        "name does not match lens/<table>/<YYYYmmddTHHMMSSZ>.complete.json"
        " (a snapshot run's completion marker)",
    ]


def test_landing_time_precedence() -> None:
    created, custom = tick(5), tick(3)
    plain = info("a", created, custom_time=custom)
    stamped = info("b", created, custom_time=custom, metadata={"landed_at": "2024-05-01T01:30:00Z"})
    offset = info("c", created, metadata={"landed_at": "2024-05-01T03:30:00+02:00"})
    broken = info("d", created, custom_time=custom, metadata={"landed_at": "yesterday"})
    naive = info("e", created, metadata={"landed_at": "2024-05-01T01:30:00"})
    got = [landing_time(o, "custom_time") for o in (plain, stamped, offset, broken, naive)]
    assert got == [custom, tick(1) + HOUR / 2, tick(1) + HOUR / 2, custom, created]
    assert landing_time(plain) == created
    with pytest.raises(ValueError, match="time source 'mtime'"):
        landing_time(plain, "mtime")


def test_select_window_edges_are_half_open() -> None:
    landings = {
        "at-prev": tick(1),
        "just-after-prev": tick(1) + US,
        "inside": tick(1) + HOUR / 2,
        "just-before-tick": tick(2) - US,
        "at-tick": tick(2),
        "just-after-tick": tick(2) + US,
    }
    objects = [info(n, t) for n, t in reversed(landings.items())]
    assert [o.name for o in select_window(objects, tick(1), tick(2))] == [
        "at-tick",
        "inside",
        "just-after-prev",
        "just-before-tick",
    ]
    assert select_window(objects, tick(2), tick(2)) == []


def test_consecutive_windows_partition_time() -> None:
    rng = random.Random(11)
    edges = [tick(h) + d for h in range(1, 48) for d in (-US, timedelta(0), US)]
    landings = edges + [START + timedelta(seconds=rng.uniform(1, 48 * 3600)) for _ in range(500)]
    objects = [info(f"o{i:04d}", t) for i, t in enumerate(landings)]
    taken: Counter[str] = Counter()
    for h in range(1, 49):
        prev, t = tick_window("@hourly", tick(h))
        taken.update(o.name for o in select_window(objects, prev, t))
    assert taken == Counter(o.name for o in objects)


def test_tick_window_follows_the_schedule() -> None:
    t = tick(2)
    half = t + HOUR / 2
    assert [tick_window(s, t) for s in ("@hourly", "0 * * * *", "*/15 * * * *")] == [
        (tick(1), t),
        (tick(1), t),
        (t - HOUR / 4, t),
    ]
    assert tick_window("@every 90m", half) == (half - 1.5 * HOUR, half)
    assert tick_window("@every 1h30m", t) == (t - 1.5 * HOUR, t)
    assert tick_window("@daily", START + 24 * HOUR) == (START, START + 24 * HOUR)
    # off schedule (pachctl run cron): an empty window, the scheduled ticks take everything
    assert tick_window("@hourly", half) == (half, half)
    assert tick_window("@daily", t) == (t, t)
    with pytest.raises(ValueError, match="invalid cron schedule"):
        tick_window("@fortnightly", t)
    with pytest.raises(ValueError, match="no time zone"):
        tick_window("@hourly", t.replace(tzinfo=None))


def test_parse_duration_and_settle() -> None:
    texts = ["0", "0s", "60s", "1h30m", "1.5h", "2500ms"]
    assert [parse_duration(t).total_seconds() for t in texts] == [0, 0, 60, 5400, 5400, 2]
    for bad in ("", "90", "1x", "h"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)
    settle = timedelta(seconds=60)
    assert settle_seconds(tick(2), tick(2), settle) == 60.0
    assert settle_seconds(tick(2), tick(2) + timedelta(seconds=45), settle) == 15.0
    assert settle_seconds(tick(2), tick(3), settle) == 0.0  # a backfilled tick never waits


def _posts_bytes(rows: int = 3) -> tuple[bytes, Any]:
    table = pa.table(
        {
            name: pa.nulls(rows, type=f.type)
            if f.nullable
            else pa.array([_value(f.type, i) for i in range(rows)], type=f.type)
            for name, f in zip(SCHEMAS[POSTS].names, SCHEMAS[POSTS], strict=True)
        },
        schema=SCHEMAS[POSTS],
    )
    return parquet_bytes(table), table


def _value(dtype: Any, i: int) -> Any:
    if pa.types.is_boolean(dtype):
        return False
    if pa.types.is_timestamp(dtype):
        return tick(1)
    return f"0x{i + 1:02x}"


def test_parse_export_reads_parquet_and_names_each_failure() -> None:
    data, table = _posts_bytes()
    assert parse_export(POSTS, data).equals(table)
    csv = b"post_id,profile_id\n0x01-0x01,0x01\n"
    cases = {
        b"": "empty object (0 bytes)",
        csv: "not Parquet: looks like CSV",
        b'[{"post_id": "0x01-0x01"}]': "not Parquet: looks like JSON",
        b'  {"post_id": "0x01-0x01"}\n': "not Parquet: looks like JSON",
        b"\x89PNG\r\n": "not Parquet: no PAR1 magic at the start",
        data[: len(data) // 2]: f"truncated Parquet: no footer in {len(data) // 2} bytes",
        b"PAR1PAR1": "truncated Parquet: no footer in 8 bytes",
    }
    for blob, verdict in cases.items():
        with pytest.raises(ExportError) as caught:
            parse_export(POSTS, blob)
        assert str(caught.value) == verdict
    garbled = data[:4] + b"\x00" * (len(data) - 8) + data[-4:]
    with pytest.raises(ExportError, match=r"^unreadable Parquet \(public_profile_post\): "):
        parse_export(POSTS, garbled)


def test_write_atomic_stays_inside_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert write_atomic(out, "/a/b.json", b"{}").read_bytes() == b"{}"
    for path in ("/../escape.json", "/a/../../escape.json", "/"):
        with pytest.raises(ValueError, match="outside"):
            write_atomic(out, path, b"x")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.json", "out"]
