"""The compact and history steps: per-day state, daily merge, and datum reuse on the engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensfeed import compact, frames
from lensfeed.schemas import POSTS, STATS, TABLES
from pachlocal.spec import load_spec_documents
from tests.lens.layouts import compact_days, write_features_inputs

ROOT = Path(__file__).resolve().parents[2]
START, END = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def session() -> Iterator[Any]:
    opened = frames.open_session("tests", "duckdb")
    yield opened
    frames.close_session(opened)


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compact")
    write_features_inputs(root, 300, 9, START, END, trust_every=2)
    return root / "ingest"


def _partition(root: Path, table: str, tick: str, rows: list[dict[str, Any]]) -> None:
    folder = root / table / f"dtime={tick}"
    folder.mkdir(parents=True)
    schema = TABLES[table].schema
    data = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)
    pq.write_table(data, folder / "x.parquet")


def _stat(publication_id: str, source_ms: int, collects: int) -> dict[str, Any]:
    return {
        "publication_id": publication_id,
        "total_amount_of_collects": collects,
        "total_amount_of_mirrors": 0,
        "total_amount_of_comments": 0,
        "total_upvotes": 0,
        "total_downvotes": 0,
        "datastream_metadata": {"uuid": f"u{source_ms}", "source_timestamp": source_ms},
    }


def test_a_day_keeps_the_newest_row_per_key_sorted_with_its_ticks(session, tmp_path):
    stats = tmp_path / "in" / STATS
    _partition(
        tmp_path / "in", STATS, "2024-05-01T01:00:00Z", [_stat("0x02", 5, 1), _stat("0x01", 1, 1)]
    )
    _partition(tmp_path / "in", STATS, "2024-05-01T02:00:00Z", [_stat("0x02", 3, 9)])  # late copy
    day = compact.compact_day(session, {POSTS: tmp_path / "none", STATS: stats}, tmp_path / "out")
    assert day == "2024-05-01"
    assert sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")
    ) == [
        "_ticks/2024-05-01.json",
        f"{STATS}/day=2024-05-01/part-00000.parquet",
    ]
    table = pq.read_table(tmp_path / "out" / STATS / "day=2024-05-01" / "part-00000.parquet")
    assert table.schema == compact.TABLES_KEPT[1].schema
    got = [(r["publication_id"], r["total_amount_of_collects"]) for r in table.to_pylist()]
    assert got == [("0x01", 1), ("0x02", 1)]  # the newest change wins, not the newest partition
    ticks = json.loads((tmp_path / "out" / "_ticks" / "2024-05-01.json").read_text())
    assert ticks == {"day": "2024-05-01", "ticks": ["2024-05-01T01:00:00Z", "2024-05-01T02:00:00Z"]}


def test_a_datum_spanning_two_days_is_refused_naming_them(session, tmp_path):
    for tick in ("2024-05-01T23:00:00Z", "2024-05-02T00:00:00Z"):
        _partition(tmp_path / "in", STATS, tick, [_stat("0x01", 1, 1)])
    inputs = {POSTS: tmp_path / "none", STATS: tmp_path / "in" / STATS}
    with pytest.raises(
        ValueError, match=r"one day's partitions, got \['2024-05-01', '2024-05-02'\]"
    ):
        compact.compact_day(session, inputs, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_datum_writes_nothing(session, tmp_path):
    inputs = {POSTS: tmp_path / "a", STATS: tmp_path / "b"}
    assert compact.compact_day(session, inputs, tmp_path / "out") is None
    assert not (tmp_path / "out").exists()


def test_merging_in_steps_equals_merging_at_once(session, ingest, tmp_path):
    days = compact_days(session, ingest, tmp_path / "compact")
    assert len(days) == 4
    compact.merge_history(session, tmp_path / "compact", tmp_path / "all")
    for table in compact.TABLES_KEPT:
        at_once = pq.read_table(tmp_path / "all" / table.name)
        for held in range(len(days)):  # a history holding the first `held` days
            partial = tmp_path / f"partial-{held}"
            for day in days[:held]:
                for path in compact.day_files(tmp_path / "compact", table.name)[day]:
                    target = partial / table.name / f"day={day}" / path.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(path.read_bytes())
            compact.merge_history(session, partial, tmp_path / f"history-{held}")
            state = compact.current_state(
                session, tmp_path / "compact", tmp_path / f"history-{held}"
            )
            assert state.recent_days[table.name] == days[held:]
            frame = state.posts if table.name == POSTS else state.stats
            got = frame.orderBy(table.key).toArrow().select(at_once.schema.names)
            assert got.cast(at_once.schema).equals(at_once), (table.name, held)


def test_a_history_of_a_day_compacted_since_differently_is_ignored(session, ingest, tmp_path):
    days = compact_days(session, ingest, tmp_path / "compact")
    merged = compact.merge_history(session, tmp_path / "compact", tmp_path / "history")
    assert set(merged[STATS]) == set(days)
    state = compact.current_state(session, tmp_path / "compact", tmp_path / "history")
    assert state.recent_days == {POSTS: [], STATS: []}
    # day 2 is compacted again with one row fewer (a re-ingested day)
    (path,) = compact.day_files(tmp_path / "compact", STATS)[days[1]]
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    state = compact.current_state(session, tmp_path / "compact", tmp_path / "history")
    assert state.recent_days == {POSTS: days, STATS: days}  # every day merged here again
    fresh = compact.current_state(session, tmp_path / "compact", None)
    for name in ("posts", "stats"):
        key = "post_id" if name == "posts" else "publication_id"
        got = getattr(state, name).orderBy(key).toArrow()
        assert got.equals(getattr(fresh, name).orderBy(key).toArrow()), name


def test_feature_time_is_the_newest_tick_of_any_day(session, ingest, tmp_path):
    compact_days(session, ingest, tmp_path / "compact")
    state = compact.current_state(session, tmp_path / "compact", None)
    newest = max(
        datetime.strptime(p.name[6:], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        for table in (POSTS, STATS)
        for p in (ingest / table).iterdir()
    )
    assert state.feature_time == newest


# ---------------------------------------------------------------------------
# the spec on the engine: one datum per day, unchanged days skipped


def _put_partitions(engine: Any, ingest: Path, days: set[str]) -> None:
    puts = [
        (f"/{path.relative_to(ingest).as_posix()}", path)
        for path in sorted(ingest.rglob("*.parquet"))
        if path.parent.name[6:16] in days
    ]
    engine.commit_files("ingest", "master", puts)


@pytest.mark.integration
def test_the_spec_runs_one_datum_per_day_and_skips_unchanged_days(ingest, tmp_path):
    from pachlocal.engine import Engine

    path = ROOT / "specs" / "compact.pipeline.json"
    (doc,) = load_spec_documents(path.read_text(), str(path))
    with Engine(tmp_path / "state") as engine:
        engine.store.create_repo("ingest")
        _put_partitions(engine, ingest, {"2024-05-01", "2024-05-02"})
        engine.create_pipeline(doc, code_root=ROOT)
        engine.run_pending()
        store = engine.store
        first = store.manifest(store.resolve("compact@master"))
        _put_partitions(engine, ingest, {"2024-05-03"})
        engine.run_pending()
        second = store.manifest(store.resolve("compact@master"))
        jobs = sorted(engine.jobs("compact"), key=lambda j: j["seq"])
    assert [(j["state"], j["processed"], j["skipped"]) for j in jobs] == [
        ("success", 2, 0),
        ("success", 1, 2),
    ]
    assert sorted(first) == [
        "/_ticks/2024-05-01.json",
        "/_ticks/2024-05-02.json",
        f"/{POSTS}/day=2024-05-01/part-00000.parquet",
        f"/{POSTS}/day=2024-05-02/part-00000.parquet",
        f"/{STATS}/day=2024-05-01/part-00000.parquet",
        f"/{STATS}/day=2024-05-02/part-00000.parquet",
    ]
    assert {k: v.hash for k, v in second.items() if k in first} == {
        k: v.hash for k, v in first.items()
    }
    assert f"/{STATS}/day=2024-05-03/part-00000.parquet" in second
