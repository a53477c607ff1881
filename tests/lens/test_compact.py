"""The compact and history steps: per-day state, daily merge, and datum reuse on the engine."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensfeed import compact
from lensfeed.schemas import POSTS, STATS, TABLES
from pachlocal.spec import load_spec_documents
from tests.lens.layouts import compact_ticks, write_features_inputs

ROOT = Path(__file__).resolve().parents[2]
START, END = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compact")
    write_features_inputs(root, 300, 9, START, END, trust_every=2)
    return root / "ingest"


@pytest.fixture(scope="module")
def compacted(session: Any, ingest: Path) -> tuple[Path, list[str]]:
    """Every tick of ``ingest`` compacted (tests copy it before changing anything)."""
    out = ingest.parent / "compact"
    return out, compact_ticks(session, ingest, out)


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


def test_a_tick_keeps_the_newest_row_per_key_sorted(session, tmp_path):
    tick = "2024-05-01T01:00:00Z"
    rows = [_stat("0x02", 5, 1), _stat("0x01", 1, 1), _stat("0x02", 3, 9)]  # a late copy
    _partition(tmp_path / "in", STATS, tick, rows)
    inputs = {POSTS: tmp_path / "none", STATS: tmp_path / "in" / STATS}
    assert compact.compact_partition(session, inputs, tmp_path / "out") == tick
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.*"))
    assert [p.as_posix() for p in written] == [f"{STATS}/dtime={tick}/part-00000.parquet"]
    table = pq.read_table(tmp_path / "out" / STATS / f"dtime={tick}" / "part-00000.parquet")
    assert table.schema == compact.TABLES_KEPT[1].schema
    got = [(r["publication_id"], r["total_amount_of_collects"]) for r in table.to_pylist()]
    assert got == [("0x01", 1), ("0x02", 1)]  # the newest change wins, not the row order
    assert {r["dtime"] for r in table.to_pylist()} == {datetime(2024, 5, 1, 1, tzinfo=UTC)}


def test_a_datum_of_two_ticks_is_refused_naming_them(session, tmp_path):
    for tick in ("2024-05-01T23:00:00Z", "2024-05-02T00:00:00Z"):
        _partition(tmp_path / "in", STATS, tick, [_stat("0x01", 1, 1)])
    inputs = {POSTS: tmp_path / "none", STATS: tmp_path / "in" / STATS}
    with pytest.raises(ValueError, match=r"one tick's partitions, got \['2024-05-01T23"):
        compact.compact_partition(session, inputs, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_datum_writes_nothing(session, tmp_path):
    inputs = {POSTS: tmp_path / "a", STATS: tmp_path / "b"}
    assert compact.compact_partition(session, inputs, tmp_path / "out") is None
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # several seconds: the full tier only
def test_merging_in_steps_equals_merging_at_once(session, compacted, tmp_path):
    source, ticks = compacted
    shutil.copytree(source, tmp_path / "compact")
    assert len(ticks) >= 20
    compact.merge_history(session, tmp_path / "compact", tmp_path / "all")
    for table in compact.TABLES_KEPT:
        at_once = pq.read_table(tmp_path / "all" / table.name)
        parts = compact.part_files(tmp_path / "compact", table.name)
        for held in (0, 1, len(ticks) // 2, len(ticks) - 1, len(ticks)):  # the first `held`
            partial = tmp_path / f"partial-{held}"
            for tick in ticks[:held]:
                for path in parts.get(tick, []):
                    target = partial / table.name / f"dtime={tick}" / path.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(path.read_bytes())
            compact.merge_history(session, partial, tmp_path / f"history-{held}")
            state = compact.current_state(
                session, tmp_path / "compact", tmp_path / f"history-{held}"
            )
            assert state.recent[table.name] == [t for t in ticks[held:] if t in parts]
            frame = state.posts if table.name == POSTS else state.stats
            got = frame.orderBy(table.key).toArrow().select(at_once.schema.names)
            assert got.cast(at_once.schema).equals(at_once), (table.name, held)


@pytest.mark.slow  # shares a module fixture of several seconds: full tier only
def test_a_history_of_a_tick_compacted_since_differently_is_ignored(session, compacted, tmp_path):
    shutil.copytree(compacted[0], tmp_path / "compact")
    merged = compact.merge_history(session, tmp_path / "compact", tmp_path / "history")
    parts = {t.name: compact.part_files(tmp_path / "compact", t.name) for t in compact.TABLES_KEPT}
    assert {name: set(ticks) for name, ticks in merged.items()} == {
        name: set(ticks) for name, ticks in parts.items()
    }
    state = compact.current_state(session, tmp_path / "compact", tmp_path / "history")
    assert state.recent == {POSTS: [], STATS: []}
    # a tick compacted again with one row fewer (a re-ingested tick)
    (path,) = parts[STATS][sorted(parts[STATS])[1]]
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    state = compact.current_state(session, tmp_path / "compact", tmp_path / "history")
    assert state.recent == {name: list(ticks) for name, ticks in parts.items()}  # all again
    fresh = compact.current_state(session, tmp_path / "compact", None)
    for name in ("posts", "stats"):
        key = "post_id" if name == "posts" else "publication_id"
        got = getattr(state, name).orderBy(key).toArrow()
        assert got.equals(getattr(fresh, name).orderBy(key).toArrow()), name


@pytest.mark.slow  # shares a module fixture of several seconds: full tier only
def test_feature_time_is_the_newest_tick_of_any_table(session, ingest, compacted):
    state = compact.current_state(session, compacted[0], None)
    newest = max(
        datetime.strptime(p.name[6:], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        for table in (POSTS, STATS)
        for p in (ingest / table).iterdir()
    )
    assert state.feature_time == newest


# ---------------------------------------------------------------------------
# the spec on the engine: one datum per day, unchanged days skipped


def _put_partitions(engine: Any, ingest: Path, ticks: list[str]) -> None:
    puts = [
        (f"/{path.relative_to(ingest).as_posix()}", path)
        for path in sorted(ingest.rglob("*.parquet"))
        if path.parent.name.removeprefix("dtime=") in ticks
    ]
    engine.commit_files("ingest", "master", puts)


@pytest.mark.integration
def test_the_spec_runs_one_datum_per_tick_and_skips_the_old_ones(ingest, tmp_path):
    from pachlocal.engine import Engine

    ticks = sorted({p.name.removeprefix("dtime=") for p in ingest.glob("*/dtime=*")})
    path = ROOT / "specs" / "compact.pipeline.json"
    (doc,) = load_spec_documents(path.read_text(), str(path))
    with Engine(tmp_path / "state") as engine:
        engine.store.create_repo("ingest")
        _put_partitions(engine, ingest, ticks[:3])
        engine.create_pipeline(doc, code_root=ROOT)
        engine.run_pending()
        store = engine.store
        first = store.manifest(store.resolve("compact@master"))
        _put_partitions(engine, ingest, ticks[3:4])
        engine.run_pending()
        second = store.manifest(store.resolve("compact@master"))
        jobs = sorted(engine.jobs("compact"), key=lambda j: j["seq"])
    assert [(j["state"], j["processed"], j["skipped"]) for j in jobs] == [
        ("success", 3, 0),
        ("success", 1, 3),
    ]
    expected = {
        f"/{table}/dtime={tick}/part-00000.parquet"
        for tick in ticks[:3]
        for table in (POSTS, STATS)
        if (ingest / table / f"dtime={tick}").is_dir()
    }
    assert set(first) == expected
    assert {k: v.hash for k, v in second.items() if k in first} == {
        k: v.hash for k, v in first.items()
    }
    assert set(second) - set(first) == {
        f"/{table}/dtime={ticks[3]}/part-00000.parquet"
        for table in (POSTS, STATS)
        if (ingest / table / f"dtime={ticks[3]}").is_dir()
    }
