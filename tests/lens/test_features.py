"""The feature transforms on tiny frames: current state, whole-frame features, failure paths."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from lensfeed import features as feat
from lensfeed import frames
from tests.lens.feature_rows import (
    FEATURE_TIME,
    T1,
    T2,
    collect,
    counters,
    post,
    posts_frame,
    stat,
    stats_frame,
    trust_frame,
    tuples_frame,
    utc,
)

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
