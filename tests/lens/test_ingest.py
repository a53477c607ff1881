"""Tests of the ingest stage: lensfeed.gcs, lensfeed.ingest, pipelines/ingest.py and its spec.

Pure functions are tested on tiny inputs; the rest runs against the real GCS
emulator in-process with real generated exports (``integration``), and one
slice runs the real spec through the pachlocal engine.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core import exceptions as api_exceptions

from lensfeed.gcs import (
    GcsExportStore,
    ObjectGone,
    ObjectInfo,
    StoreError,
    make_client,
    parquet_bytes,
)
from lensfeed.ingest import (
    ExportError,
    check_object_name,
    ingest_tick,
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
from lensfeed.schemas import POSTS, SCHEMAS, TABLES
from lensrun.emulator import EmulatorServer, upload_bytes, upload_exports
from lensrun.generate import ExportObject, generate_dataset, plan_exports

REPO = Path(__file__).resolve().parents[2]
START = datetime(2024, 5, 1, tzinfo=UTC)
END = datetime(2024, 5, 1, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
BUCKET = "lens-exports"


def tick(hour: int) -> datetime:
    return START + hour * HOUR


def info(name: str, created: datetime, **kw: Any) -> ObjectInfo:
    return ObjectInfo(name=name, size=1, generation=1, md5=None, time_created=created, **kw)


# -- pure functions -------------------------------------------------------------------------


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


# -- against the GCS emulator ------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(BUCKET) as server:
        yield server


@pytest.fixture
def bucket(emulator: EmulatorServer) -> Any:
    emulator.wipe()
    return emulator.client().bucket(emulator.bucket)


@pytest.fixture
def store(emulator: EmulatorServer, bucket: Any) -> GcsExportStore:
    return GcsExportStore(emulator.client(), emulator.bucket, attempts=2, base_delay=0.001)


@pytest.fixture(scope="module")
def exports() -> list[ExportObject]:
    dataset = generate_dataset(300, 7, START, END)
    return plan_exports(dataset, START, END, 2, 7, snapshot_every_hours=2)


OFFSETS = (timedelta(0), US, -US, timedelta(minutes=17))


def edge_landing(exports: list[ExportObject]) -> dict[str, datetime]:
    """Landing times one hour after export, nudged onto, just after and just before tick edges."""
    return {o.name: o.export_time + HOUR + OFFSETS[i % 4] for i, o in enumerate(exports)}


def expected_tick(landed: datetime) -> datetime:
    """The scheduled hourly tick whose window (T - 1h, T] holds ``landed`` (an independent oracle)."""
    micros = (landed - START) // US
    hour_us = HOUR // US
    return START + -(-micros // hour_us) * HOUR


def manifests(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "_manifest").glob("*.json"))}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def gs(name: str) -> str:
    return f"gs://{BUCKET}/{name}"


@pytest.mark.integration
def test_ingested_partitions_equal_the_exports(
    bucket: Any, store: GcsExportStore, exports: list[ExportObject], tmp_path: Path
) -> None:
    upload_exports(bucket, exports, lambda o: o.export_time + timedelta(minutes=1), markers=False)
    for h in range(1, 8):
        report = ingest_tick(store, "lens", tick(h - 1), tick(h), tmp_path)
        assert report.rejected == []
    entries = {e["object"]: e for entries in manifests(tmp_path).values() for e in entries}
    assert sorted(entries) == sorted(gs(o.name) for o in exports)
    for obj in exports:
        entry = entries[gs(obj.name)]
        got = pq.read_table(tmp_path / entry["path"].lstrip("/"))
        assert got.schema.equals(SCHEMAS[obj.table])
        assert got.equals(obj.table_data)
        assert entry["rows"] == obj.table_data.num_rows
        assert entry["table"] == obj.table
        dtime = expected_tick(obj.export_time + timedelta(minutes=1))
        assert (
            entry["path"]
            == f"/{obj.table}/dtime={dtime:%Y-%m-%dT%H:%M:%SZ}/" + (obj.name.rsplit("/", 1)[1])
        )
    parquet = {p for p in tree(tmp_path) if p.endswith(".parquet")}
    assert parquet == {e["path"].lstrip("/") for e in entries.values()}
    assert not (tmp_path / "_rejected").exists()


@pytest.mark.integration
def test_downtime_and_backfill_take_every_object_exactly_once(
    bucket: Any, store: GcsExportStore, exports: list[ExportObject], tmp_path: Path
) -> None:
    landed = edge_landing(exports)
    remainders = {t - t.replace(minute=0, second=0, microsecond=0) for t in landed.values()}
    assert {timedelta(0), US, HOUR - US} <= remainders  # the edge cases really occur
    rng = random.Random(5)
    by_name = {o.name: o for o in exports}
    early = [n for n, t in landed.items() if t <= tick(2)]
    late = [n for n, t in landed.items() if t > tick(2)]
    rng.shuffle(early)
    rng.shuffle(late)

    def land(names: list[str]) -> None:
        upload_exports(bucket, [by_name[n] for n in names], lambda o: landed[o.name], markers=False)

    land(early)
    for h in (1, 2):  # live
        ingest_tick(store, "lens", tick(h - 1), tick(h), tmp_path)
    land(late)  # lands while the pipeline is down (ticks 3..5 missed), in random order
    for h in range(3, 9):  # backfill, tick by tick
        ingest_tick(store, "lens", *tick_window("@hourly", tick(h)), tmp_path)

    found = manifests(tmp_path)
    taken = Counter(e["object"] for entries in found.values() for e in entries)
    assert taken == Counter(gs(n) for n in landed)
    expected: dict[str, list[str]] = {f"{tick(h):%Y-%m-%dT%H:%M:%SZ}": [] for h in range(1, 9)}
    for name, t in landed.items():
        expected[f"{expected_tick(t):%Y-%m-%dT%H:%M:%SZ}"].append(gs(name))
    assert {k: [e["object"] for e in v] for k, v in found.items()} == {
        k: sorted(v) for k, v in expected.items()
    }


@pytest.mark.integration
def test_rerunning_a_tick_gives_identical_bytes(
    bucket: Any, store: GcsExportStore, exports: list[ExportObject], tmp_path: Path
) -> None:
    upload_exports(bucket, exports, lambda o: o.export_time + timedelta(minutes=1), markers=False)
    first, second = tmp_path / "first", tmp_path / "second"
    ingest_tick(store, "lens", tick(2), tick(3), first)
    ingest_tick(store, "lens", tick(2), tick(3), second)
    files = tree(first)
    assert len([p for p in files if p.endswith(".parquet")]) == 6
    assert files == tree(second)


def _bad_objects(exports: list[ExportObject]) -> dict[str, tuple[bytes, str | re.Pattern[str]]]:
    """Name -> (bytes, verdict) for every kind of bad object, all in the window of tick 1."""
    posts = next(o for o in exports if o.table == POSTS).table_data
    good = parquet_bytes(posts)
    base = "lens/public_profile_post/20240501T001500Z-"
    csv = io.BytesIO()
    posts.slice(0, 3).to_pandas().to_csv(csv, index=False)
    long_name = base + "9" * (1100 - len(base) - len(".parquet")) + ".parquet"
    return {
        base + "000000000001.parquet": (b"", "empty object (0 bytes)"),
        base + "000000000002.parquet": (
            good[:1000],
            "truncated Parquet: no footer in 1000 bytes",
        ),
        base + "000000000003.parquet": (csv.getvalue(), "not Parquet: looks like CSV"),
        base + "000000000004.parquet": (
            parquet_bytes(posts.drop_columns(["post_id"])),
            f"{POSTS}: missing column 'post_id'",
        ),
        base + "000000000005.parquet": (
            parquet_bytes(posts.set_column(6, "is_hidden", posts["is_hidden"].cast(pa.string()))),
            f"{POSTS}: column 'is_hidden' has type string, expected bool",
        ),
        base + "000000000006.parquet": (
            parquet_bytes(pa.concat_tables([posts, posts.slice(0, 2)])),
            re.compile(
                rf"{POSTS}: duplicate primary key post_id='0x[0-9a-f]+-0x[0-9a-f]+' "
                r"in 2 rows \(2 keys repeated\)"
            ),
        ),
        base + "\x01.parquet": (good, "name contains control character U+0001"),
        long_name: (good, "name is 1100 bytes; names must be under 1024"),
        "lens/public_comment/20240501T001500Z-000000000000.parquet": (
            good,
            f"unknown table 'public_comment'; known tables: {', '.join(sorted(TABLES))}",
        ),
        "lens/public_profile_post/posts.csv": (
            good,
            "name does not match lens/<table>/<YYYYmmddTHHMMSSZ>-<part>.parquet",
        ),
        # the emulator refuses '..' names (real GCS stores them): listed by a wrapper below
        "lens/public_profile_post/../public_profile/20240501T001500Z-000000000000.parquet": (
            good,
            "name has a '..' component",
        ),
    }


@dataclass
class WithUnstorable:
    """The emulator's objects plus objects it cannot store, as real GCS would list them.

    ``extra`` maps a name to its listing and its bytes (None: the generation is gone).
    """

    inner: GcsExportStore
    extra: dict[str, tuple[ObjectInfo, bytes | None]] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return self.inner.bucket

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        extra = [i for i, _ in self.extra.values() if i.name.startswith(prefix)]
        return sorted(self.inner.list_objects(prefix) + extra, key=lambda o: o.name)

    def read(self, name: str, generation: int) -> bytes:
        if name not in self.extra:
            return self.inner.read(name, generation)
        data = self.extra[name][1]
        if data is None:
            raise ObjectGone(f"generation {generation} no longer exists")
        return data


@pytest.mark.integration
def test_bad_objects_are_rejected_with_a_verdict_and_good_ones_ingested(
    bucket: Any, store: GcsExportStore, exports: list[ExportObject], tmp_path: Path
) -> None:
    valid = [o for o in exports if o.export_time <= START + HOUR / 2]
    upload_exports(bucket, valid, lambda o: o.export_time + timedelta(minutes=10), markers=False)
    bad = _bad_objects(exports)
    wrapped = WithUnstorable(store)
    landed = START + timedelta(minutes=20)
    for name, (data, _) in bad.items():
        if ".." in name.split("/"):
            meta = {"landed_at": "2024-05-01T00:20:00Z"}
            wrapped.extra[name] = (info(name, landed, metadata=meta), data)
        else:
            upload_bytes(bucket, name, data, landed)
    # what the emulator cannot produce: a bad landed_at, a changed or vanished generation
    base = "lens/public_profile_post/20240501T001500Z-00000000001"
    good = parquet_bytes(valid[-1].table_data)
    odd = {
        base + "0.parquet": (
            info(base + "0.parquet", landed, metadata={"landed_at": "2024-05-01 00:20"}),
            good,
            "metadata landed_at is not an RFC 3339 time with a zone",
        ),
        base + "1.parquet": (
            ObjectInfo(base + "1.parquet", len(good), 7, "bm90IHRoZSBtZDU=", landed),
            good,
            "content does not match the listed size and MD5 (changed since listing)",
        ),
        base + "2.parquet": (
            info(base + "2.parquet", landed),
            None,
            "generation 1 no longer exists",
        ),
    }
    for name, (listing, data, verdict) in odd.items():
        wrapped.extra[name] = (listing, data)
        bad[name] = (b"", verdict)

    report = ingest_tick(wrapped, "lens", START, tick(1), tmp_path)

    rejected = json.loads((tmp_path / "_rejected/2024-05-01T01:00:00Z.json").read_text())
    assert rejected == report.rejected
    assert [r["object"] for r in rejected] == sorted(gs(n) for n in bad)
    for row in rejected:
        verdict = bad[row["object"].removeprefix(f"gs://{BUCKET}/")][1]
        if isinstance(verdict, str):
            assert row["problem"] == verdict
        else:
            assert verdict.fullmatch(row["problem"]), row["problem"]
    manifest = manifests(tmp_path)["2024-05-01T01:00:00Z"]
    assert [e["object"] for e in manifest] == sorted(gs(o.name) for o in valid)
    parquet = sorted(p for p in tree(tmp_path) if p.endswith(".parquet"))
    assert parquet == sorted(e["path"].lstrip("/") for e in manifest)


@pytest.mark.integration
def test_a_crash_leaves_no_partial_file_and_no_manifest(
    bucket: Any,
    store: GcsExportStore,
    exports: list[ExportObject],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upload_exports(bucket, exports, lambda o: o.export_time + timedelta(minutes=1), markers=False)
    calls = []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("lensfeed.ingest.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        ingest_tick(store, "lens", tick(2), tick(3), tmp_path)
    files = tree(tmp_path)
    assert len(files) == 2
    assert all(p.endswith(".parquet") and not p.split("/")[-1].startswith(".") for p in files)
    for path in files:
        pq.read_table(tmp_path / path)  # complete, readable files only


@pytest.mark.integration
def test_retries_recover_from_5xx_and_stop_on_403(emulator: EmulatorServer, bucket: Any) -> None:
    upload_bytes(bucket, "lens/x", b"x", tick(1))

    class Flaky:
        def __init__(self, errors: list[Exception]) -> None:
            self.errors, self.client = errors, emulator.client()

        def list_blobs(self, *args: Any, **kw: Any) -> Any:
            if self.errors:
                raise self.errors.pop(0)
            return self.client.list_blobs(*args, **kw)

    sleeps: list[float] = []
    outage: list[Exception] = [
        api_exceptions.ServiceUnavailable("down"),
        api_exceptions.BadGateway("down"),
    ]
    client: Any = Flaky(outage)
    flaky = GcsExportStore(client, BUCKET, attempts=3, base_delay=0.01, sleep=sleeps.append)
    assert [o.name for o in flaky.list_objects("lens/")] == ["lens/x"]
    assert sleeps == [0.01, 0.02]
    client = Flaky([api_exceptions.Forbidden("no")])
    denied = GcsExportStore(client, BUCKET, sleep=sleeps.append)
    with pytest.raises(StoreError) as caught:
        denied.list_objects("lens/")
    assert str(caught.value) == f"gs://{BUCKET}: listing 'lens/' failed (Forbidden 403)"
    assert sleeps == [0.01, 0.02]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
def test_unreachable_bucket_fails_after_bounded_retries(tmp_path: Path) -> None:
    port = _closed_port()
    sleeps: list[float] = []
    store = GcsExportStore(
        make_client(f"http://127.0.0.1:{port}"),
        BUCKET,
        attempts=3,
        base_delay=0.001,
        sleep=sleeps.append,
    )
    with pytest.raises(StoreError) as caught:
        ingest_tick(store, "lens", tick(0), tick(1), tmp_path)
    assert str(caught.value) == (
        f"gs://{BUCKET}: listing 'lens/' failed after 3 attempts "
        "(last error: ConnectionError); is the bucket reachable?"
    )
    assert sleeps == [0.001, 0.002]
    assert list(tmp_path.iterdir()) == []


def _run_entry_point(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tick").mkdir(exist_ok=True)
    (tmp_path / "tick" / "2024-05-01T01:00:00Z").touch()
    args = ["--tick-dir", str(tmp_path / "tick"), "--out", str(tmp_path / "out")]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GCS_", "STORAGE_"))}
    return subprocess.run(
        [sys.executable, "pipelines/ingest.py", *args, "--schedule", "@hourly", "--attempts", "2"],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_entry_point_fails_with_one_line(tmp_path: Path) -> None:
    port = _closed_port()
    missing = _run_entry_point(tmp_path, {})
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == (
        "ingest: GCS_BUCKET is not set: the export bucket must come from a pipeline secret\n"
    )
    host = f"http://127.0.0.1:{port}"
    down = _run_entry_point(tmp_path, {"GCS_BUCKET": BUCKET, "STORAGE_EMULATOR_HOST": host})
    assert down.returncode == 1
    assert down.stderr == (
        f"ingest: gs://{BUCKET}: listing 'lens/' failed after 2 attempts "
        "(last error: ConnectionError); is the bucket reachable?\n"
    )
    assert str(port) not in down.stderr + down.stdout


# -- the real spec through the engine ----------------------------------------------------------


def test_spec_is_valid_and_matches_the_contract() -> None:
    from pachlocal.spec import load_spec_documents, parse_pipeline_spec

    path = REPO / "specs/ingest.pipeline.json"
    (doc,) = load_spec_documents(path.read_text(), source=str(path))
    spec = parse_pipeline_spec(doc)
    cron = spec["input"]["cron"]
    cmd = spec["transform"]["cmd"]
    assert spec["pipeline"]["name"] == "ingest"
    assert (cron["name"], cron["repo"], cron["overwrite"]) == ("tick", "ingest_tick", False)
    assert cmd[:6] == [
        "python3",
        "pipelines/ingest.py",
        "--tick-dir",
        "/pfs/tick",
        "--out",
        "/pfs/out",
    ]
    assert cmd[cmd.index("--schedule") + 1] == cron["spec"]  # the windows follow the ticks
    secrets = {
        (s.get("key"), s.get("envVar"), s.get("mountPath")) for s in spec["transform"]["secrets"]
    }
    assert secrets == {
        ("bucket", "GCS_BUCKET", None),
        ("prefix", "GCS_PREFIX", None),
        ("emulator_host", "STORAGE_EMULATOR_HOST", None),
        (None, None, "/var/secrets/gcs"),
    }


@pytest.mark.integration
@pytest.mark.slow
def test_spec_runs_through_the_engine(
    emulator: EmulatorServer,
    bucket: Any,
    store: GcsExportStore,
    exports: list[ExportObject],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pachlocal.cli import main

    monkeypatch.setenv("PACHLOCAL_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("PACHLOCAL_CODE_ROOT", str(REPO))
    landed = edge_landing(exports)
    upload_exports(bucket, exports, lambda o: landed[o.name], markers=False)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "lens-gcs"},
        "stringData": {
            "bucket": BUCKET,
            "prefix": "lens",
            "emulator_host": emulator.host,
            "service-account.json": '{"type": "placeholder"}',
        },
    }
    (tmp_path / "secret.json").write_text(json.dumps(secret))
    assert main(["create", "secret", "-f", str(tmp_path / "secret.json")]) == 0
    assert main(["create", "pipeline", "-f", str(REPO / "specs/ingest.pipeline.json")]) == 0
    assert main(["tick", "--until", "2024-05-01T03:00:00Z"]) == 0
    capsys.readouterr()
    assert main(["glob", "file", "ingest@master:/**", "--raw"]) == 0
    listing = json.loads(capsys.readouterr().out)
    got = {}
    for entry in (e for e in listing if e["type"] == "file"):
        target = tmp_path / "get.out"
        assert main(["get", "file", f"ingest@master:{entry['path']}", "-o", str(target)]) == 0
        got[entry["path"].lstrip("/")] = target.read_bytes()

    # the engine's output is exactly what the functions write for ticks 1..3
    direct = tmp_path / "direct"
    for h in (1, 2, 3):
        ingest_tick(store, "lens", tick(h - 1), tick(h), direct)
    assert got == tree(direct)
    names = Counter(e["object"] for entries in manifests(direct).values() for e in entries)
    assert names == Counter(gs(n) for n, t in landed.items() if t <= tick(3))
    assert sorted(manifests(direct)) == [f"2024-05-01T0{h}:00:00Z" for h in (1, 2, 3)]
