"""Ingest's ``dtime=<T>`` partitions as the features and compact steps read them, and the feature time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pytest

from lensfeed import compact, frames
from lensfeed import features as feat
from lensfeed.parquet import list_partitions
from lensfeed.schemas import POSTS, STATS, STATS_SPEC
from tests.lens.feature_rows import (
    FEATURE_TIME,
    T1,
    T2,
    collect,
    post,
    stat,
    utc,
    write_partition,
)


def partition_times(table_dir: Path) -> list[datetime]:
    """The ticks of a table's partitions, oldest first (:func:`lensfeed.parquet.list_partitions`)."""
    return [partition.tick for partition in list_partitions(table_dir)]


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
    posts = feat.current_posts(compact.read_partitions(session, tmp_path / POSTS))
    stats = feat.current_stats(compact.read_partitions(session, tmp_path / STATS))
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
    got = collect(compact.read_partitions(session, tmp_path / POSTS), ["post_id", "dtime"])
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
    frame = compact.read_partitions(session, tmp_path / STATS)
    assert frame.columns == [*STATS_SPEC.columns, "dtime"]
    assert frames.column_types(frame)["dtime"] == "timestamp"
    assert frame.count() == 0


def test_feature_time_is_the_newest_partition(tmp_path: Path) -> None:
    for table, tick in [(POSTS, T1), (POSTS, T2), (STATS, T1)]:
        (tmp_path / table / f"dtime={tick:%Y-%m-%dT%H:%M:%SZ}").mkdir(parents=True)
    (tmp_path / POSTS / "_SUCCESS").touch()  # ignored, as Spark does
    assert partition_times(tmp_path / POSTS) == [T1, T2]
    assert partition_times(tmp_path / "absent") == []
    later = datetime(2024, 6, 1, tzinfo=UTC)
    assert feat.feature_time_of([T1, T2], [later]) == later
    assert feat.feature_time_of(partition_times(tmp_path / POSTS), []) == T2


def test_feature_time_needs_a_partition() -> None:
    with pytest.raises(ValueError, match="no dtime partition"):
        feat.feature_time_of([], [])


def test_partition_times_names_a_foreign_entry(tmp_path: Path) -> None:
    (tmp_path / POSTS / "dtime=yesterday").mkdir(parents=True)
    with pytest.raises(ValueError, match="dtime=yesterday"):
        partition_times(tmp_path / POSTS)
