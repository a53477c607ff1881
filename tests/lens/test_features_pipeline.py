"""The ``features`` entry point and spec: end to end on generated inputs, deterministic, against pandas."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lensfeed import features as feat
from lensfeed.schemas import POSTS, STATS
from pachlocal.spec import load_spec_documents, parse_pipeline_spec
from tests.lens.entry_points import load_entry_point
from tests.lens.feature_rows import (
    FEATURE_TIME,
    T1,
    post,
    stat,
    write_partition,
)
from tests.lens.layouts import compact_ticks, features_layout, write_features_inputs

ROOT = Path(__file__).resolve().parents[2]

entry = load_entry_point("features")


def _args(root: Path, out: str, *extra: str, **dirs: Path) -> list[str]:
    """``root``'s compact, history and trust (``dirs`` replaces some), output ``root/out``."""
    paths = {n: root / n for n in ("compact", "history", "trust")} | dirs | {"out": root / out}
    return [*[a for name, path in paths.items() for a in (f"--{name}", str(path))], *extra]


@pytest.mark.parametrize("layout", ["absent", "empty", "stats only"])
def test_no_post_tick_writes_nothing(
    session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    if layout == "empty":
        (tmp_path / "compact").mkdir()
    if layout == "stats only":  # a tick compacted from a stats partition alone
        write_partition(tmp_path / "ingest", STATS, T1, [stat("0x01-0x01")])
        ticks = compact_ticks(session, tmp_path / "ingest", tmp_path / "compact")
        assert ticks == ["2024-05-09T01:00:00Z"]
    (tmp_path / "history").mkdir()
    (tmp_path / "out").mkdir()
    assert entry.main(_args(tmp_path, "out"), spark=session) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert list((tmp_path / "out").iterdir()) == []


def test_spec_is_valid_and_runs_the_entry_point() -> None:
    text = (ROOT / "specs" / "features.pipeline.json").read_text()
    (doc,) = load_spec_documents(text, "features.pipeline.json")
    spec = parse_pipeline_spec(doc)
    assert spec["pipeline"]["name"] == "features"
    assert spec["datumTries"] == 2
    assert spec["transform"]["image"] == "ghcr.io/lens-feed/pipelines:0.1.0"
    assert spec["transform"]["env"] == {"FEATURES_ENGINE": "duckdb", "SPARK_MASTER": "local[*]"}
    cmd = spec["transform"]["cmd"]
    assert cmd[:2] == ["python3", "pipelines/features.py"] and (ROOT / cmd[1]).is_file()
    inputs = {
        i["pfs"]["name"]: (i["pfs"]["repo"], i["pfs"]["glob"]) for i in spec["input"]["cross"]
    }
    assert inputs == {name: (name, "/") for name in ("compact", "history", "trust")}
    for name in inputs:
        assert cmd[cmd.index(f"--{name}") + 1] == f"/pfs/{name}"
    assert cmd[cmd.index("--out") + 1] == "/pfs/out"
    assert json.loads(text)["description"].count("\n") == 0


@pytest.fixture(scope="module")
def generated(session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~500 posts in ingest's layout, compacted per tick, an empty history, half trusted."""
    root = tmp_path_factory.mktemp("generated")
    start, end = datetime(2024, 5, 7, tzinfo=UTC), datetime(2024, 5, 8, tzinfo=UTC)
    write_features_inputs(root, 500, 11, start, end, trust_every=2)
    features_layout(session, root)
    return root


def pandas_features(root: Path) -> pd.DataFrame:
    """The same features computed with pandas from the raw ingest partitions, one per post."""

    def table(name: str) -> pd.DataFrame:
        parts = []
        for path in sorted((root / "ingest" / name).glob("dtime=*/*.parquet")):
            frame = pd.read_parquet(path)
            frame["dtime"] = pd.Timestamp(path.parent.name.removeprefix("dtime="))
            parts.append(frame)
        return pd.concat(parts, ignore_index=True)

    def newest_change(frame: pd.DataFrame, key: str) -> pd.DataFrame:
        frame["source"] = [m["source_timestamp"] for m in frame["datastream_metadata"]]
        frame["uuid"] = [m["uuid"] for m in frame["datastream_metadata"]]
        ordered = frame.sort_values(["source", "dtime", "uuid"])
        return ordered.drop_duplicates(key, keep="last")

    posts = newest_change(table(POSTS), "post_id")
    stats = newest_change(table(STATS), "publication_id")
    names = dict(feat.COUNTERS, publication_id="post_id")
    frame = posts.merge(stats.rename(columns=names)[list(names.values())], on="post_id", how="left")
    for column in feat.COUNTERS.values():
        frame[column] = frame[column].fillna(0).astype("int64")
    feature_time = max(table(POSTS)["dtime"].max(), table(STATS)["dtime"].max())
    days = feature_time.floor("D") - frame["block_timestamp"].dt.floor("D")
    frame["age"] = days // pd.Timedelta(days=1)  # calendar days, as datediff counts
    trust = pd.read_parquet(root / "trust" / "trust.parquet")
    frame = frame.merge(
        trust.rename(
            columns={"i": "profile_id", "rank": "followship_rank", "v": "followship_score"}
        ),
        on="profile_id",
        how="left",
    )
    for column in ("age", "mirrors", "collects", "comments"):
        frame[f"max_{column}"] = frame.groupby("profile_id")[column].transform("max")
    maxima = {
        c: frame[f"max_{c}"].replace(0, 1e10) for c in ("age", "mirrors", "collects", "comments")
    }
    frame["post_score"] = (
        frame["mirrors"] / maxima["mirrors"]
        + frame["collects"] / maxima["collects"]
        + 3 * frame["comments"] / maxima["comments"]
        - 5 * frame["age"] / maxima["age"]
    )
    frame["is_original"] = (
        frame["is_related_to_post"].isna() & frame["is_related_to_comment"].isna()
    )
    return frame.sort_values("post_id").reset_index(drop=True)


def read_dir(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def set_threads(session: Any, count: int) -> int:
    """Set DuckDB's worker threads (``DUCKDB_THREADS``) on a live session; the old count.
    Results are fetched whole: DuckDB refuses ``register`` while one is unfinished."""
    conn = session._conn
    ((before,),) = conn.execute("SELECT current_setting('threads')").fetchall()
    conn.execute(f"SET threads = {count}")
    assert conn.execute("SELECT current_setting('threads')").fetchall() == [(count,)]
    return int(before)


@pytest.mark.slow  # several seconds: the full tier only
def test_entry_point_end_to_end_is_deterministic_and_matches_pandas(
    session: Any, generated: Path
) -> None:
    # sqlframe keeps one DuckDB session per process, so the thread count changes in place
    before = set_threads(session, 3)
    try:
        assert entry.main(_args(generated, "out1"), spark=session) == 0
        # another split of DuckDB's work (one thread instead of three) must not change a byte
        set_threads(session, 1)
        assert entry.main(_args(generated, "out2"), spark=session) == 0
    finally:
        set_threads(session, before)
    first, second = read_dir(generated / "out1"), read_dir(generated / "out2")
    assert list(first) == ["features/part-00000.parquet"]
    assert first == second

    # compaction and features together against pandas over every raw ingest partition
    got = pq.read_table(generated / "out1" / "features" / "part-00000.parquet")
    assert got.schema == feat.FEATURES_SCHEMA
    frame = got.to_pandas()
    expected = pandas_features(generated)
    assert len(frame) == len(expected) == 500
    assert frame["post_id"].tolist() == expected["post_id"].tolist()
    assert (frame["feature_time"] == pd.Timestamp("2024-05-08", tz="UTC")).all()
    maxima = ["max_age", "max_mirrors", "max_collects", "max_comments"]
    for column in ["age", *feat.COUNTERS.values(), *maxima, "is_original"]:
        assert frame[column].tolist() == expected[column].tolist(), column
    pd.testing.assert_series_equal(
        frame["followship_rank"], expected["followship_rank"], check_dtype=False
    )
    np.testing.assert_allclose(frame["post_score"], expected["post_score"], rtol=0, atol=1e-12)
    assert frame["followship_rank"].isna().any() and frame["followship_rank"].notna().any()


@pytest.mark.slow  # shares a module fixture of several seconds: full tier only
def test_entry_point_splits_parts_by_row_count(session: Any, generated: Path) -> None:
    assert entry.main(_args(generated, "parts", "--rows-per-part", "200"), spark=session) == 0
    files = sorted((generated / "parts" / "features").iterdir())
    assert [p.name for p in files] == [f"part-0000{k}.parquet" for k in range(3)]
    assert [pq.ParquetFile(p).metadata.num_rows for p in files] == [200, 200, 100]
    assert list((generated / "parts").iterdir()) == [generated / "parts" / "features"]
    assert entry.main(_args(generated, "whole"), spark=session) == 0  # standalone: not out1
    whole = pq.read_table(generated / "whole" / "features" / "part-00000.parquet")
    assert pa.concat_tables([pq.read_table(p) for p in files]).equals(whole)


@pytest.mark.parametrize("case", ["all but the last tick", "every tick", "stale"])
def test_a_history_changes_no_byte(
    session: Any, generated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    compact, merged = tmp_path / "compact", tmp_path / "merged"
    shutil.copytree(generated / "compact", compact)
    ticks = sorted({p.name.removeprefix("dtime=") for p in compact.glob("*/dtime=*")})
    assert len(ticks) > 2
    shutil.copytree(compact, merged)
    if case == "all but the last tick":  # the daily merge ran before the newest tick came
        for folder in merged.glob(f"*/dtime={ticks[-1]}"):
            shutil.rmtree(folder)
    argv = ["--compact", str(merged), "--out", str(tmp_path / "history")]
    assert load_entry_point("history").main(argv, session=session) == 0
    if case == "stale":  # a tick re-ingested after the merge: a post seen in no other is gone
        files = sorted(compact.glob(f"{POSTS}/dtime=*/part-00000.parquet"))
        ids = [set(pq.ParquetFile(f).read(["post_id"])["post_id"].to_pylist()) for f in files]
        seen = Counter(i for s in ids for i in s)
        k, dropped = next((k, i) for k, s in enumerate(ids) for i in sorted(s) if seen[i] == 1)
        table = pq.ParquetFile(files[k]).read()
        pq.write_table(table.filter(pc.not_equal(table["post_id"], dropped)), files[k])
    (tmp_path / "empty").mkdir()
    here: dict[str, str] = {}
    for out, history in [("held", tmp_path / "history"), ("empty", tmp_path / "empty")]:
        argv = _args(tmp_path, f"out-{out}", trust=generated / "trust", history=history)
        assert entry.main(argv, spark=session) == 0
        summary = capsys.readouterr().out.splitlines()[-1]  # "...; ticks merged here: N (..) (T s)"
        here[out] = summary.partition("ticks merged here: ")[2].rpartition(" (")[0]
    # the ticks merged here show the history was read, or (stale) ignored
    every = f"{len(ticks)} ({ticks[0]} .. {ticks[-1]})"
    last = f"1 ({ticks[-1]} .. {ticks[-1]})"
    held = {"all but the last tick": last, "every tick": "none", "stale": every}[case]
    assert here == {"held": held, "empty": every}
    assert read_dir(tmp_path / "out-held") == read_dir(tmp_path / "out-empty")
    got = pq.read_table(tmp_path / "out-held" / "features")["post_id"].to_pylist()
    assert len(got) == 500 if case != "stale" else len(got) == 499 and dropped not in got


def test_write_features_refuses_a_repeated_post_id(
    tiny: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    posts, stats, trust = tiny
    features = feat.post_features(posts, stats, trust, FEATURE_TIME)
    with pytest.raises(RuntimeError, match="unique post_id"):
        feat.write_features(features.unionAll(features), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_features_needs_whole_row_groups_per_part(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        feat.write_features(None, tmp_path, rows_per_part=100, row_group_rows=64)


def test_compact_reports_a_missing_column(
    session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "ingest"
    write_partition(bad, POSTS, T1, [post("0x01-0x01", "2024-05-01")])
    (bad / STATS / "dtime=2024-05-09T01:00:00Z").mkdir(parents=True)
    pq.write_table(
        pa.table({"publication_id": ["0x01-0x01"], "dtime_x": [1]}),
        bad / STATS / "dtime=2024-05-09T01:00:00Z" / "x.parquet",
    )
    argv = ["--posts", str(bad), "--stats", str(bad), "--out", str(tmp_path / "compact")]
    assert load_entry_point("compact").main(argv, session=session) == 1
    # the inputs are projected first: every missing column is named, in the order read
    assert capsys.readouterr().err == (
        "compact: error: public_publication_stats is missing column(s): total_amount_of_collects, "
        "total_amount_of_mirrors, total_amount_of_comments, total_upvotes, total_downvotes, "
        "datastream_metadata.source_timestamp, datastream_metadata.uuid\n"
    )
