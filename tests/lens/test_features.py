"""Tests for the features stage: lensfeed.features transforms and pipelines/features.py."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
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
from lensfeed import frames
from lensfeed.schemas import POSTS, POSTS_SPEC, STATS, STATS_SPEC, TABLES, TIMESTAMP
from pachlocal.spec import load_spec_documents, parse_pipeline_spec
from tests.lens.entry_points import load_entry_point
from tests.lens.layouts import compact_ticks, features_layout, write_features_inputs

ROOT = Path(__file__).resolve().parents[2]
FEATURE_TIME = datetime(2024, 5, 10, tzinfo=UTC)
T1 = datetime(2024, 5, 9, 1, tzinfo=UTC)
T2 = datetime(2024, 5, 9, 2, tzinfo=UTC)


entry = load_entry_point("features")


@pytest.fixture(scope="session")
def session() -> Iterator[Any]:
    """One in-process DuckDB session (sqlframe) for the whole run: no JVM."""
    opened = frames.open_session("tests", "duckdb")
    yield opened
    frames.close_session(opened)


# ---------------------------------------------------------------------------
# tiny frames


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def post(
    post_id: str,
    block_timestamp: str,
    *,
    dtime: datetime = T1,
    related_post: str | None = None,
    related_comment: str | None = None,
    content_warning: str | None = None,
    language: str | None = "en",
    source_ms: int = 0,
    hidden: bool = False,
    has_error: bool | None = False,
) -> dict[str, Any]:
    """A public_profile_post row (author = the id before the dash) plus ``dtime``."""
    return {
        "post_id": post_id,
        "profile_id": post_id.split("-")[0],
        "is_related_to_post": related_post,
        "is_related_to_comment": related_comment,
        "is_hidden": hidden,
        "is_gated": post_id.endswith("3"),
        "custom_filters_gardener_flagged": False,
        "has_error": has_error,
        "block_timestamp": ts(block_timestamp),
        "language": language,
        "region": None,
        "content_warning": content_warning,
        "main_content_focus": "TEXT_ONLY",
        "datastream_metadata": {"uuid": f"u-{post_id}-{source_ms}", "source_timestamp": source_ms},
        "dtime": dtime,
    }


def stat(
    publication_id: str,
    collects: int = 0,
    mirrors: int = 0,
    comments: int = 0,
    upvotes: int = 0,
    downvotes: int = 0,
    *,
    source_ms: int = 0,
    dtime: datetime = T1,
) -> dict[str, Any]:
    return {
        "publication_id": publication_id,
        "total_amount_of_collects": collects,
        "total_amount_of_mirrors": mirrors,
        "total_amount_of_comments": comments,
        "total_upvotes": upvotes,
        "total_downvotes": downvotes,
        "datastream_metadata": {
            "uuid": f"s-{publication_id}-{source_ms}",
            "source_timestamp": source_ms,
        },
        "dtime": dtime,
    }


def _frame(session: Any, spec: Any, rows: list[dict[str, Any]]) -> Any:
    """Rows in the canonical schema of ``spec`` plus ``dtime`` (UTC timestamp)."""
    schema = spec.schema.append(pa.field("dtime", TIMESTAMP))
    table = pa.Table.from_pylist([{n: row.get(n) for n in schema.names} for row in rows], schema)
    return frames.from_arrow(session, table)


def posts_frame(session: Any, rows: list[dict[str, Any]]) -> Any:
    return _frame(session, POSTS_SPEC, rows)


def stats_frame(session: Any, rows: list[dict[str, Any]]) -> Any:
    return _frame(session, STATS_SPEC, rows)


def tuples_frame(session: Any, schema: pa.Schema, rows: list[tuple[Any, ...]]) -> Any:
    """``rows`` (values in ``schema``'s column order) as a frame of exactly that schema."""
    records = [dict(zip(schema.names, row, strict=True)) for row in rows]
    return frames.from_arrow(session, pa.Table.from_pylist(records, schema))


TRUST_SCHEMA = pa.schema(
    [("strategy_name", pa.string()), ("i", pa.string()), ("v", pa.float64()), ("rank", pa.int64())]
)


def trust_frame(session: Any, rows: list[tuple[str, float, int]]) -> Any:
    return tuples_frame(session, TRUST_SCHEMA, [("followship", i, v, r) for i, v, r in rows])


def counters(names: str) -> pa.Schema:
    """``post_id`` (string) and int64 columns, named in one space-separated string."""
    return pa.schema([(n, pa.string() if n == "post_id" else pa.int64()) for n in names.split()])


def collect(frame: Any, columns: list[str]) -> pd.DataFrame:
    """A small result as pandas (through Arrow: exact types), ordered by its first column."""
    table = frame.select(*columns).toArrow()
    return table.to_pandas().sort_values(columns[0]).reset_index(drop=True)


def utc(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


# ---------------------------------------------------------------------------
# current state of the increments


def test_current_posts_keeps_the_newest_change_whatever_lands_last(session: Any) -> None:
    """One rule for every table: the largest source_timestamp wins, then the newest partition.
    Before, the newest partition won: a late-landing older copy made a hidden post visible."""
    rows = [
        post("0x01-0x01", "2024-05-01", dtime=T1, source_ms=200, hidden=True),  # hidden later
        post("0x01-0x01", "2024-05-01", dtime=T2, source_ms=100),  # older copy, landed late
        post("0x01-0x02", "2024-05-02", dtime=T1, language="en", source_ms=100),
        post("0x01-0x02", "2024-05-02", dtime=T2, language="de", source_ms=100),  # tie: newest
        post("0x02-0x01", "2024-05-03", dtime=T1, language="es", source_ms=5),
        post("0x02-0x01", "2024-05-03", dtime=T1, language="pt", source_ms=9),  # same partition
    ]
    got = collect(
        feat.current_posts(posts_frame(session, rows)),
        ["post_id", "is_hidden", "language", "dtime"],
    )
    expected = pd.DataFrame(
        {
            "post_id": ["0x01-0x01", "0x01-0x02", "0x02-0x01"],
            "is_hidden": [True, False, False],
            "language": ["en", "de", "pt"],
            "dtime": utc(["2024-05-09 01:00", "2024-05-09 02:00", "2024-05-09 01:00"]),
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["dtime"].dtype.kind == "M"


def test_current_stats_picks_the_newest_snapshot(session: Any) -> None:
    rows = [
        stat("0x01-0x01", mirrors=1, source_ms=100, dtime=T2),
        stat("0x01-0x01", mirrors=5, source_ms=200, dtime=T1),  # larger source_timestamp wins
        stat("0x01-0x02", mirrors=2, source_ms=100, dtime=T1),
        stat("0x01-0x02", mirrors=3, source_ms=100, dtime=T2),  # tie: newest partition wins
        stat("0x02-0x01", mirrors=7, source_ms=50, dtime=T1),
    ]
    got = collect(
        feat.current_stats(stats_frame(session, rows)),
        ["publication_id", "total_amount_of_mirrors"],
    )
    expected = pd.DataFrame(
        {
            "publication_id": ["0x01-0x01", "0x01-0x02", "0x02-0x01"],
            "total_amount_of_mirrors": [5, 3, 7],
        }
    )
    pd.testing.assert_frame_equal(got, expected)


# ---------------------------------------------------------------------------
# post_features


@pytest.fixture
def tiny(session: Any) -> tuple[Any, Any, Any]:
    posts = posts_frame(
        session,
        [
            post("0x01-0x01", "2024-05-01 00:00:00"),  # age 9 exactly
            # one second old, but of the day before: 1 calendar day, as datediff counts
            post("0x01-0x02", "2024-05-09 23:59:59", related_post="0x02-0x01", has_error=None),
            post(
                "0x01-0x03",
                "2024-05-05 12:00:00",  # 4.5 days: 5 calendar days
                has_error=True,
                related_comment="0x02-0x05",
                content_warning="NSFW",
                language=None,
            ),
            post("0x02-0x01", "2024-05-08 00:00:00"),  # age 2, no stats at all
            post("0x03-0x01", "2024-05-10 00:00:00"),  # age 0, every maximum is zero
        ],
    )
    stats = stats_frame(
        session,
        [
            stat("0x01-0x01", collects=2, mirrors=4, comments=1, upvotes=10, downvotes=0),
            stat("0x01-0x03", collects=0, mirrors=1, comments=3, upvotes=1, downvotes=2),
            stat("0x03-0x01"),
            stat("0x09-0x01", collects=99, mirrors=99),  # stats of an unknown post
        ],
    )
    trust = trust_frame(session, [("0x01", 0.6, 1), ("0x03", 0.1, 2), ("0x77", 0.3, 3)])
    return posts, stats, trust


EXPECTED_TYPES = [
    ("post_id", "string"),
    ("profile_id", "string"),
    ("block_timestamp", "timestamp"),
    ("feature_time", "timestamp"),
    ("region", "string"),
    ("language", "string"),
    ("main_content_focus", "string"),
    ("content_warning", "string"),
    ("is_content_warning", "boolean"),
    ("is_original", "boolean"),
    ("custom_filters_gardener_flagged", "boolean"),
    ("is_hidden", "boolean"),
    ("is_gated", "boolean"),
    ("has_error", "boolean"),
    ("collects", "bigint"),
    ("mirrors", "bigint"),
    ("comments", "bigint"),
    ("upvotes", "bigint"),
    ("downvotes", "bigint"),
    ("age", "bigint"),
    ("followship_rank", "bigint"),
    ("followship_score", "double"),
    ("max_age", "bigint"),
    ("max_mirrors", "bigint"),
    ("max_collects", "bigint"),
    ("max_comments", "bigint"),
    ("post_score", "double"),
]


def test_post_features_whole_frame(tiny: tuple[Any, Any, Any]) -> None:
    posts, stats, trust = tiny
    features = feat.post_features(posts, stats, trust, FEATURE_TIME)
    assert list(frames.column_types(features).items()) == EXPECTED_TYPES
    assert tuple(features.columns) == feat.FEATURE_COLUMNS
    got = collect(features, list(feat.FEATURE_COLUMNS))
    ids = ["0x01-0x01", "0x01-0x02", "0x01-0x03", "0x02-0x01", "0x03-0x01"]
    expected = pd.DataFrame(
        {
            "post_id": ids,
            "profile_id": ["0x01", "0x01", "0x01", "0x02", "0x03"],
            "block_timestamp": utc(
                [
                    "2024-05-01 00:00:00",
                    "2024-05-09 23:59:59",
                    "2024-05-05 12:00:00",
                    "2024-05-08 00:00:00",
                    "2024-05-10 00:00:00",
                ]
            ),
            "feature_time": utc(["2024-05-10"] * 5),
            "region": [None] * 5,
            "language": ["en", "en", None, "en", "en"],
            "main_content_focus": ["TEXT_ONLY"] * 5,
            "content_warning": [None, None, "NSFW", None, None],
            "is_content_warning": [False, False, True, False, False],
            "is_original": [True, False, False, True, True],
            "custom_filters_gardener_flagged": [False] * 5,
            "is_hidden": [False] * 5,
            "is_gated": [False, False, True, False, False],
            "has_error": [False, None, True, False, False],
            "collects": [2, 0, 0, 0, 0],
            "mirrors": [4, 0, 1, 0, 0],
            "comments": [1, 0, 3, 0, 0],
            "upvotes": [10, 0, 1, 0, 0],
            "downvotes": [0, 0, 2, 0, 0],
            "age": [9, 1, 5, 2, 0],
            "followship_rank": [1.0, 1.0, 1.0, np.nan, 2.0],  # null -> NaN in pandas
            "followship_score": [0.6, 0.6, 0.6, np.nan, 0.1],
            "max_age": [9, 9, 9, 2, 0],
            "max_mirrors": [4, 4, 4, 0, 0],
            "max_collects": [2, 2, 2, 0, 0],
            "max_comments": [3, 3, 3, 0, 0],
            "post_score": [
                4 / 4 + 2 / 2 + 3 * 1 / 3 - 5 * 9 / 9,
                -5 * 1 / 9,
                1 / 4 + 0 / 2 + 3 * 3 / 3 - 5 * 5 / 9,
                -5 * 2 / 2,  # zero maxima count as 1e10: 0 / 1e10, never 0 / 0
                0.0,  # max_age 0 as well: a score of 0, not NaN
            ],
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert str(got["age"].dtype) == "int64" and str(got["post_score"].dtype) == "float64"


def test_post_score_counts_a_zero_maximum_as_1e10(session: Any) -> None:
    frame = tuples_frame(
        session,
        counters(
            "post_id mirrors collects comments age max_mirrors max_collects max_comments max_age"
        ),
        [("a", 3, 0, 2, 4, 0, 0, 4, 8), ("b", 1, 2, 0, 0, 2, 4, 0, 0)],
    )
    got = collect(feat.add_post_score(frame), ["post_id", "post_score"])
    expected = pd.DataFrame(
        {
            "post_id": ["a", "b"],
            "post_score": [3 / 1e10 + 0 / 1e10 + 3 * 2 / 4 - 5 * 4 / 8, 1 / 2 + 2 / 4 + 0.0 - 0.0],
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_post_features_without_trust_has_typed_nulls(tiny: tuple[Any, Any, Any]) -> None:
    posts, stats, _ = tiny
    features = feat.post_features(posts, stats, None, FEATURE_TIME)
    assert list(frames.column_types(features).items()) == EXPECTED_TYPES
    got = collect(features, ["post_id", "followship_rank", "followship_score"])
    assert got["followship_rank"].isna().all() and got["followship_score"].isna().all()
    assert len(got) == 5


def test_post_features_keeps_the_best_rank_of_a_repeated_author(
    tiny: tuple[Any, Any, Any], session: Any
) -> None:
    posts, stats, _ = tiny
    trust = trust_frame(session, [("0x01", 0.2, 7), ("0x01", 0.6, 1)])
    got = collect(
        feat.post_features(posts, stats, trust, FEATURE_TIME),
        ["post_id", "followship_rank", "followship_score"],
    )
    assert got["post_id"].tolist() == [
        "0x01-0x01",
        "0x01-0x02",
        "0x01-0x03",
        "0x02-0x01",
        "0x03-0x01",
    ]
    assert got["followship_rank"].tolist()[:3] == [1.0, 1.0, 1.0]


def write_partition(root: Path, table: str, tick: datetime, rows: list[dict[str, Any]]) -> None:
    """One ingest partition: ``root/<table>/dtime=<tick>/<object>.parquet``, conformed."""
    directory = root / table / f"dtime={tick:%Y-%m-%dT%H:%M:%SZ}"
    directory.mkdir(parents=True, exist_ok=True)
    schema = TABLES[table].schema
    frame = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)
    pq.write_table(frame, directory / f"{tick:%Y%m%dT%H%M%SZ}-0.parquet")


def test_author_maxima_span_the_whole_history(session: Any, tmp_path: Path) -> None:
    # author 0x01 has its big post in the older partition and a small one in the newer
    write_partition(tmp_path, POSTS, T1, [post("0x01-0x01", "2024-05-01")])
    write_partition(
        tmp_path, POSTS, T2, [post("0x01-0x02", "2024-05-08"), post("0x02-0x01", "2024-05-09")]
    )
    write_partition(
        tmp_path,
        STATS,
        T1,
        [stat("0x01-0x01", collects=5, mirrors=6, comments=7, source_ms=1)],
    )
    write_partition(
        tmp_path,
        STATS,
        T2,
        [
            stat("0x01-0x02", collects=1, mirrors=1, comments=1, source_ms=2),
            stat("0x02-0x01", collects=2, source_ms=2),
        ],
    )
    posts = feat.current_posts(feat.read_partitions(session, tmp_path / POSTS))
    stats = feat.current_stats(feat.read_partitions(session, tmp_path / STATS))
    assert frames.column_types(posts)["dtime"] == "timestamp"
    features = feat.post_features(posts, stats, None, FEATURE_TIME)
    got = collect(
        features, ["post_id", "age", "max_age", "max_mirrors", "max_collects", "max_comments"]
    )
    expected = pd.DataFrame(
        {
            "post_id": ["0x01-0x01", "0x01-0x02", "0x02-0x01"],
            "age": [9, 2, 1],
            "max_age": [9, 9, 1],
            "max_mirrors": [6, 6, 0],
            "max_collects": [5, 5, 2],
            "max_comments": [7, 7, 0],
        }
    )
    pd.testing.assert_frame_equal(got, expected)


def test_read_partitions_parses_dtime(session: Any, tmp_path: Path) -> None:
    write_partition(tmp_path, POSTS, T1, [post("0x01-0x01", "2024-05-01")])
    write_partition(tmp_path, POSTS, T2, [post("0x01-0x02", "2024-05-02")])
    got = collect(feat.read_partitions(session, tmp_path / POSTS), ["post_id", "dtime"])
    expected = pd.DataFrame(
        {
            "post_id": ["0x01-0x01", "0x01-0x02"],
            "dtime": utc(["2024-05-09 01:00", "2024-05-09 02:00"]),
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_read_partitions_of_an_empty_table_has_the_canonical_schema(
    session: Any, tmp_path: Path
) -> None:
    (tmp_path / STATS).mkdir()
    frame = feat.read_partitions(session, tmp_path / STATS)
    assert frame.columns == [*STATS_SPEC.columns, "dtime"]
    assert frames.column_types(frame)["dtime"] == "timestamp"
    assert frame.count() == 0


# ---------------------------------------------------------------------------
# failure paths: a missing column is named before Spark analyses anything


def test_post_features_names_a_missing_post_column(tiny: tuple[Any, Any, Any]) -> None:
    posts, stats, trust = tiny
    with pytest.raises(KeyError, match="posts is missing column\\(s\\): region"):
        feat.post_features(posts.drop("region"), stats, trust, FEATURE_TIME)


def test_post_features_names_a_missing_stats_column(tiny: tuple[Any, Any, Any]) -> None:
    posts, stats, trust = tiny
    with pytest.raises(KeyError, match="total_upvotes"):
        feat.post_features(posts, stats.drop("total_upvotes"), trust, FEATURE_TIME)


def test_post_features_names_a_missing_trust_column(tiny: tuple[Any, Any, Any]) -> None:
    posts, stats, trust = tiny
    with pytest.raises(KeyError, match="trust is missing column\\(s\\): rank"):
        feat.post_features(posts, stats, trust.drop("rank"), FEATURE_TIME)


def test_post_features_refuses_a_naive_feature_time(tiny: tuple[Any, Any, Any]) -> None:
    posts, stats, trust = tiny
    with pytest.raises(ValueError, match="no time zone"):
        feat.post_features(posts, stats, trust, datetime(2024, 5, 10))


def test_current_posts_names_a_missing_column(session: Any) -> None:
    posts = posts_frame(session, [post("0x01-0x01", "2024-05-01")])
    with pytest.raises(KeyError, match="posts is missing column\\(s\\): dtime"):
        feat.current_posts(posts.drop("dtime"))


def test_current_stats_names_a_missing_struct_field(session: Any) -> None:
    F = frames.api(session).F
    stats = stats_frame(session, [stat("0x01-0x01")]).withColumn(
        "datastream_metadata", F.struct(F.lit("u").alias("uuid"))
    )
    with pytest.raises(KeyError, match=r"datastream_metadata\.source_timestamp"):
        feat.current_stats(stats)


def test_add_post_score_names_a_missing_maximum(session: Any) -> None:
    schema = counters("post_id mirrors collects comments age")
    frame = tuples_frame(session, schema, [("a", 1, 1, 1, 1)])
    with pytest.raises(KeyError, match="max_mirrors"):
        feat.add_post_score(frame)


# ---------------------------------------------------------------------------
# partitions and feature time (no Spark)


def test_feature_time_is_the_newest_partition(tmp_path: Path) -> None:
    for table, tick in [(POSTS, T1), (POSTS, T2), (STATS, T1)]:
        (tmp_path / table / f"dtime={tick:%Y-%m-%dT%H:%M:%SZ}").mkdir(parents=True)
    (tmp_path / POSTS / "_SUCCESS").touch()  # ignored, as Spark does
    assert feat.partition_times(tmp_path / POSTS) == [T1, T2]
    assert feat.partition_times(tmp_path / "absent") == []
    later = datetime(2024, 6, 1, tzinfo=UTC)
    assert feat.feature_time_of([T1, T2], [later]) == later
    assert feat.feature_time_of(feat.partition_times(tmp_path / POSTS), []) == T2


def test_feature_time_needs_a_partition() -> None:
    with pytest.raises(ValueError, match="no dtime partition"):
        feat.feature_time_of([], [])


def test_partition_times_names_a_foreign_entry(tmp_path: Path) -> None:
    (tmp_path / POSTS / "dtime=yesterday").mkdir(parents=True)
    with pytest.raises(ValueError, match="dtime=yesterday"):
        feat.partition_times(tmp_path / POSTS)


# ---------------------------------------------------------------------------
# the entry point


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
