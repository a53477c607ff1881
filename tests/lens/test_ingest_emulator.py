"""Ingest against the GCS emulator: partitions equal the exports, backfills take every object once, bad objects get a verdict, retries are bounded."""

from __future__ import annotations

import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
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
)
from lensfeed.ingest import (
    ingest_tick,
    tick_window,
)
from lensfeed.parquet import parquet_bytes
from lensfeed.schemas import POSTS, SCHEMAS, TABLES
from lensrun.emulator import EmulatorServer, upload_bytes, upload_exports
from lensrun.generate import ExportObject
from tests.lens.ingest_objects import (
    BUCKET,
    HOUR,
    START,
    US,
    _closed_port,
    edge_landing,
    expected_tick,
    gs,
    info,
    manifests,
    tick,
    tree,
)


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
