"""The engine adapter of the features step: sessions, configuration, Arrow in and out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensfeed import frames
from lensfeed.schemas import TIMESTAMP


def _threads(session: frames.Session) -> int:
    value: int = session._conn.execute("SELECT current_setting('threads')").fetchone()[0]
    return value


def test_engine_name_defaults_to_duckdb_and_refuses_an_unknown_one(monkeypatch):
    monkeypatch.delenv(frames.ENGINE_VARIABLE, raising=False)
    assert frames.engine_name() == "duckdb"
    monkeypatch.setenv(frames.ENGINE_VARIABLE, " Spark ")
    assert frames.engine_name() == "spark"
    with pytest.raises(ValueError, match=r"FEATURES_ENGINE='polars' is not a features engine"):
        frames.engine_name("polars")


def test_each_duckdb_session_has_its_own_connection_and_settings(monkeypatch):
    first = frames.open_session("a", "duckdb")
    monkeypatch.setenv("DUCKDB_THREADS", "1")
    second = frames.open_session("b", "duckdb")
    try:
        assert first is not second
        assert _threads(second) == 1
        spill = Path(second._lensfeed_spill)
        assert spill.is_dir()
    finally:
        frames.close_session(second)
    assert not spill.exists()
    assert first._conn.execute("SELECT 41 + 1").fetchone() == (42,)  # still open
    frames.close_session(first)
    again = frames.open_session("c", "duckdb")  # a closed session is never handed back
    try:
        assert again._conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        frames.close_session(again)


def test_a_bad_thread_count_is_refused(monkeypatch):
    monkeypatch.setenv("DUCKDB_THREADS", "two")
    with pytest.raises(ValueError, match="DUCKDB_THREADS='two' is not a positive integer"):
        frames.open_session("x", "duckdb")


def test_from_arrow_and_materialize_keep_rows_and_types(session):
    struct = pa.struct([("uuid", pa.string()), ("source_timestamp", pa.int64())])
    table = pa.table(
        {
            "id": pa.array(["b", "a", None]),
            "at": pa.array([datetime(2024, 5, 1, tzinfo=UTC), None, None], TIMESTAMP),
            "meta": pa.array([{"uuid": "u", "source_timestamp": 3}, None, None], struct),
            "n": pa.array([1, None, 3], pa.int64()),
        }
    )
    frame = frames.from_arrow(session, table)
    assert frames.column_types(frame) == {
        "id": "string",
        "at": "timestamp",
        "meta": "struct<uuid:string,source_timestamp:bigint>",
        "n": "bigint",
    }
    kept = frames.materialize(frame.where(frames.api(frame).F.col("n") > 0))
    got = kept.orderBy("n").toArrow()
    assert got.to_pylist() == [table.to_pylist()[0], table.to_pylist()[2]]


def test_from_arrow_of_an_empty_table_keeps_its_schema(session):
    empty = pa.schema([("id", pa.string()), ("at", TIMESTAMP)]).empty_table()
    frame = frames.from_arrow(session, empty)
    assert frame.columns == ["id", "at"] and frame.count() == 0


def test_read_partitioned_parses_the_key_as_utc_time(session, tmp_path):
    for tick in ("2024-05-01T01:00:00Z", "2024-05-01T02:00:00Z"):
        folder = tmp_path / f"dtime={tick}"
        folder.mkdir()
        pq.write_table(pa.table({"x": [tick[11:13]]}), folder / "a.parquet")
    frame = frames.read_partitioned(session, tmp_path, "dtime")
    assert frames.column_types(frame)["dtime"] == "timestamp"
    rows = frame.orderBy("x").toArrow().to_pylist()
    assert rows == [
        {"x": "01", "dtime": datetime(2024, 5, 1, 1, tzinfo=UTC)},
        {"x": "02", "dtime": datetime(2024, 5, 1, 2, tzinfo=UTC)},
    ]


def test_sorted_batches_stream_in_key_order(session):
    table = pa.table({"k": [f"{i:04d}" for i in range(999, -1, -1)]})
    batches = list(frames.sorted_batches(frames.from_arrow(session, table), "k", 256, Path("-")))
    assert max(b.num_rows for b in batches) <= 256
    assert pa.Table.from_batches(batches).column("k").to_pylist() == sorted(table["k"].to_pylist())


def test_a_result_pending_on_the_session_does_not_block_new_frames(session):
    pending = session._conn.execute("SELECT * FROM range(10)")
    assert pending.fetchone() == (0,)  # nine rows left unread
    frame = frames.from_arrow(session, pa.table({"k": ["a"]}))
    assert frames.view(frame).toArrow().to_pylist() == [{"k": "a"}]
    assert frames.materialize(frame).count() == 1


def test_session_scope_closes_only_the_session_it_opened(session):
    with frames.session_scope("x", session) as given:
        assert given is session
    assert session._conn.execute("SELECT 1").fetchone() == (1,)  # still open
    with frames.session_scope("x") as opened:
        assert opened is not session
        spill = Path(opened._lensfeed_spill)
        assert opened._conn.execute("SELECT 2").fetchone() == (2,)
    assert not spill.exists()
    with pytest.raises(Exception, match="closed"):
        opened._conn.execute("SELECT 3")
