"""The features step gives the same bytes on DuckDB (sqlframe) and on Spark.

Both engines run the steps ``compact``, ``history`` and ``features`` (with and
without a history) over the same awkward inputs: a
generated history plus hand-made partitions with nulls, ties, zero maxima,
duplicate and late exports, ids that differ only by case or by a non-ASCII
character, a repeated and a NaN trust score. Every step's files must be equal
byte for byte (so equal frames, schema and row order), and the features must
not depend on what the history holds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensfeed import frames
from lensfeed.features import FEATURES_SCHEMA
from lensfeed.schemas import POSTS, STATS, TABLES
from tests.lens.entry_points import load_entry_point
from tests.lens.layouts import compact_ticks, write_features_inputs

entry = load_entry_point("features")
history = load_entry_point("history")

START, END = datetime(2024, 5, 2, 12, tzinfo=UTC), datetime(2024, 5, 3, tzinfo=UTC)
LATE = datetime(2024, 5, 3, 1, tzinfo=UTC)
LATER = datetime(2024, 5, 3, 2, tzinfo=UTC)


def _post(post_id: str, block: datetime, source_ms: int, uuid: str, **extra: Any) -> dict[str, Any]:
    row = {
        "post_id": post_id,
        "profile_id": post_id.split("-")[0],
        "is_hidden": False,
        "is_gated": False,
        "custom_filters_gardener_flagged": False,
        "has_error": False,
        "block_timestamp": block,
        "language": None,
        "region": None,
        "main_content_focus": "TEXT_ONLY",
        "datastream_metadata": {"uuid": uuid, "source_timestamp": source_ms},
    }
    row.update(extra)
    return row


def _stat(
    publication_id: str, counts: tuple[int, ...], source_ms: int, uuid: str
) -> dict[str, Any]:
    names = (
        "total_amount_of_collects",
        "total_amount_of_mirrors",
        "total_amount_of_comments",
        "total_upvotes",
        "total_downvotes",
    )
    row: dict[str, Any] = dict(zip(names, counts, strict=True))
    row["publication_id"] = publication_id
    row["datastream_metadata"] = {"uuid": uuid, "source_timestamp": source_ms}
    return row


def _write(root: Path, table: str, tick: datetime, rows: list[dict[str, Any]]) -> None:
    directory = root / "ingest" / table / f"dtime={tick:%Y-%m-%dT%H:%M:%SZ}"
    directory.mkdir(parents=True, exist_ok=True)
    schema = TABLES[table].schema
    data = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)
    pq.write_table(data, directory / f"awkward-{len(list(directory.iterdir()))}.parquet")


def _awkward(root: Path) -> None:
    """Hand-made partitions after the generated history (see the module docstring)."""
    at_late = datetime(2024, 5, 3, 1, tzinfo=UTC)
    _write(
        root,
        POSTS,
        LATE,
        [
            # an author whose only post is as old as the feature time: every maximum is 0
            _post("0xzero-0x01", LATER, 5, "z1"),
            # ids that sort differently under a case-insensitive or locale collation
            _post("0xAB-0x01", START, 1, "c1", language="en"),
            _post("0xab-0x01", START, 1, "c2", region="FR"),
            _post("0xé-0x01", START, 1, "c3", content_warning="NSFW"),
            # a post exported twice in one partition with the same change time (uuid decides)
            _post("0xtie-0x01", START, 7, "t-a", language="de"),
            _post("0xtie-0x01", START, 7, "t-b", language="fr"),
            # a mirror and a comment
            _post("0xtie-0x02", at_late, 8, "t-c", is_related_to_post="0xtie-0x01"),
            _post("0xtie-0x03", at_late, 9, "t-d", is_related_to_comment="0xtie-0x02"),
        ],
    )
    _write(
        root,
        POSTS,
        LATER,
        # a late copy of an older change lands in a newer partition: it must not win
        [_post("0xtie-0x02", at_late, 2, "late", language="it")],
    )
    _write(
        root,
        STATS,
        LATE,
        [
            _stat("0xzero-0x01", (0, 0, 0, 0, 0), 5, "s1"),
            _stat("0xtie-0x01", (3, 2, 1, 4, 0), 10, "s-a"),
            _stat("0xtie-0x01", (9, 9, 9, 9, 9), 10, "s-b"),  # a tie on change time
            _stat("0xAB-0x01", (1, 0, 0, 0, 0), 3, "s2"),
        ],
    )
    _write(root, STATS, LATER, [_stat("0xtie-0x01", (5, 5, 5, 5, 5), 10, "s-a")])
    trust = pq.read_table(root / "trust" / "trust.parquet").to_pylist()
    trust += [
        {"strategy_name": "followship", "i": "0xtie", "v": 0.5, "rank": 7},
        {"strategy_name": "followship", "i": "0xtie", "v": 0.9, "rank": 7},  # a repeated rank
        {"strategy_name": "followship", "i": "0xAB", "v": float("nan"), "rank": 9},
        {"strategy_name": "followship", "i": "0xab", "v": None, "rank": None},
    ]
    schema = pq.read_schema(root / "trust" / "trust.parquet")
    pq.write_table(pa.Table.from_pylist(trust, schema), root / "trust" / "trust.parquet")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engines")
    write_features_inputs(root, 400, 5, START, END, trust_every=3)
    _awkward(root)
    return root


def _files(folder: Path) -> dict[str, bytes]:
    paths = sorted(folder.rglob("*"))
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in paths if p.is_file()}


def _run(root: Path, engine: str) -> dict[str, dict[str, bytes]]:
    """compact (every tick), history (every tick but the last), then features twice:
    with that history and with none; each step's files by name."""
    work = root / engine
    session = frames.open_session("tests", engine)
    try:
        ticks = compact_ticks(session, root / "ingest", work / "compact")
        partial = work / "compact-partial"
        shutil.copytree(work / "compact", partial)
        for folder in partial.glob(f"*/dtime={ticks[-1]}"):
            shutil.rmtree(folder)
        assert (
            history.main(["--compact", str(partial), "--out", str(work / "history")], session) == 0
        )
        (work / "no-history").mkdir()
        for name in ("history", "no-history"):
            argv = ["--out", str(work / f"out-{name}"), "--rows-per-part", "131072"]
            argv += ["--compact", str(work / "compact"), "--history", str(work / name)]
            assert entry.main([*argv, "--trust", str(root / "trust")], spark=session) == 0
    finally:
        frames.close_session(session)
    names = ("compact", "history", "out-history", "out-no-history")
    return {name: _files(work / name) for name in names}


@pytest.fixture(scope="module")
def duckdb_output(inputs: Path) -> dict[str, dict[str, bytes]]:
    return _run(inputs, "duckdb")


@pytest.fixture
def local_spark(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not os.environ.get("SPARK_REMOTE"):
        monkeypatch.setenv("SPARK_MASTER", "local[2]")
    yield


def _digest(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


@pytest.mark.slow  # several seconds: the full tier only
def test_duckdb_output_covers_the_awkward_cases(inputs, duckdb_output):
    table = pq.read_table(inputs / "duckdb" / "out-history" / "features")
    assert table.schema == FEATURES_SCHEMA
    rows = {r["post_id"]: r for r in table.to_pylist()}
    assert rows["0xzero-0x01"]["max_age"] == 0 and rows["0xzero-0x01"]["post_score"] == 0.0
    assert rows["0xtie-0x01"]["language"] == "fr"  # the larger uuid of a tie
    assert rows["0xtie-0x01"]["collects"] == 5  # the newest partition of a change-time tie
    assert rows["0xtie-0x01"]["followship_score"] == 0.9
    assert rows["0xtie-0x02"]["language"] is None  # posts too: the newest change wins
    ids = table.column("post_id").to_pylist()
    assert ids == sorted(ids, key=lambda s: s.encode())  # byte order, not a collation
    assert {"0xAB-0x01", "0xab-0x01", "0xé-0x01"} <= set(ids)


def test_the_history_changes_no_byte_of_the_features(duckdb_output):
    assert duckdb_output["history"]  # it did hold every tick but the last
    assert duckdb_output["out-history"] == duckdb_output["out-no-history"]


@pytest.mark.spark
def test_spark_writes_the_same_bytes_as_duckdb(inputs, duckdb_output, local_spark):
    spark_output = _run(inputs, "spark")
    assert list(spark_output["out-history"]) == ["features/part-00000.parquet"]
    for step, files in duckdb_output.items():
        if spark_output[step] != files and step.startswith("out"):  # say which rows differ
            ours = pq.read_table(inputs / "duckdb" / step / "features")
            theirs = pq.read_table(inputs / "spark" / step / "features")
            assert theirs.schema == ours.schema
            for name in ours.column_names:
                assert theirs.column(name).to_pylist() == ours.column(name).to_pylist(), name
        assert _digest(spark_output[step]) == _digest(files), step
