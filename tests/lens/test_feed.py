"""The feed's rules one by one: candidates and exclusions, age buckets, caps, tertiles, weights, sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensfeed.feed import (
    DEFAULT_STRATEGY,
    WEIGHTS,
    FeedParams,
    age_bucket,
    candidate_posts,
    cap_buckets,
    engagement_score,
    exclusion_masks,
    latest_per_post,
    popularity_tertile,
    post_weights,
    rank_feed,
    weighted_sample,
)
from tests.lens.feed_rows import DAY, FT, HOUR, post, predictions


def test_engagement_score_weights_and_null_counters():
    frame = predictions(
        post("a", upvotes=1, mirrors=2, comments=3, collects=4),
        post("b", upvotes=None, mirrors=1, comments=None, collects=None),
    )
    assert engagement_score(frame).tolist() == [1 + 6 + 15 + 28, 3]


@pytest.mark.parametrize(
    ("rule", "override"),
    [
        ("not_original", {"is_original": False}),
        ("content_warning", {"content_warning": "sensitive"}),
        ("hidden", {"is_hidden": True}),
        ("gated", {"is_gated": True}),
        ("gardener_flagged", {"custom_filters_gardener_flagged": True}),
        ("has_error", {"has_error": True}),
        ("label_no", {"label": "NO"}),
        ("no_engagement", {"upvotes": 0}),
        # a null flag never lets a post through
        ("not_original", {"is_original": None}),
        ("hidden", {"is_hidden": None}),
        ("gated", {"is_gated": None}),
        ("gardener_flagged", {"custom_filters_gardener_flagged": None}),
    ],
)
def test_candidate_posts_applies_each_exclusion(rule, override):
    """Each rule alone excludes the post (has_error: its metadata failed to load)."""
    frame = predictions(post("p2_bad", **override), post("p1_good"))
    assert candidate_posts(frame)["post_id"].tolist() == ["p1_good"]
    masks = exclusion_masks(latest_per_post(frame))
    assert {name: mask.tolist() for name, mask in masks.items() if mask.any()} == {
        rule: [False, True]
    }


def test_a_null_has_error_keeps_the_post():
    """has_error is nullable at the source: null means no error was reported (unlike the
    three required filter flags, where a null excludes)."""
    frame = predictions(post("p1", has_error=None), post("p2", has_error=False))
    assert candidate_posts(frame)["post_id"].tolist() == ["p1", "p2"]


def test_the_feed_ranks_a_yes_then_b_and_c_then_a_maybe():
    """The original's order (weight, then engagement), kept deliberately: a popular post
    the model did not endorse (A-MAYBE, 0.10) ranks below every B or C post (0.15)."""
    tiers = [
        ("a-maybe", "A", "MAYBE", 900),
        ("c-maybe", "C", "MAYBE", 3),
        ("a-yes", "A", "YES", 500),
        ("b-yes", "B", "YES", 40),
        ("a-yes-top", "A", "YES", 800),
        ("b-maybe", "B", "MAYBE", 50),
    ]
    sample = pd.DataFrame(tiers, columns=["post_id", "tertile", "label", "engagement_score"])
    sample["weight"] = post_weights(sample["tertile"], sample["label"], WEIGHTS)
    feed = rank_feed(sample, DEFAULT_STRATEGY)
    assert feed["post_id"].tolist() == [
        "a-yes-top",
        "a-yes",
        "b-maybe",
        "b-yes",
        "c-maybe",
        "a-maybe",
    ]
    assert feed["v"].tolist() == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def test_blank_content_warning_is_no_warning():
    frame = predictions(post("a", content_warning=""), post("b", content_warning="  "))
    assert candidate_posts(frame)["post_id"].tolist() == ["a", "b"]


def test_candidate_posts_whole_frame():
    frame = predictions(
        post("p2", label="MAYBE", upvotes=2, mirrors=1),
        post("p1", upvotes=1),
        post("p3", label="NO"),
    )
    expected = frame.iloc[[1, 0]].reset_index(drop=True).assign(engagement_score=[1, 5])
    pd.testing.assert_frame_equal(candidate_posts(frame), expected)


def test_a_post_predicted_twice_counts_once_with_its_newest_row():
    old, new = FT - DAY, FT
    frame = predictions(
        post("p1", upvotes=1, feature_time=old),
        post("p1", upvotes=5, feature_time=new),
        post("p2", feature_time=new, is_hidden=True),  # hidden since
        post("p2", feature_time=old),
    )
    got = candidate_posts(frame)
    assert got["post_id"].tolist() == ["p1"]
    assert got["engagement_score"].tolist() == [5]


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="unexpected value"):
        candidate_posts(predictions(post("a", label="yes")))
    with pytest.raises(ValueError, match="unexpected value"):
        candidate_posts(predictions(post("a", label=None)))


def test_missing_column_is_an_error():
    with pytest.raises(KeyError, match="is_gated"):
        candidate_posts(predictions(post("a")).drop(columns="is_gated"))


def test_age_bucket_edges():
    us = pd.Timedelta(microseconds=1)
    ages = [
        0 * DAY,
        DAY - us,
        DAY,
        7 * DAY - us,
        7 * DAY,
        28 * DAY - us,
        28 * DAY,
        400 * DAY,
        -HOUR,
    ]
    posted = pd.Series([FT - a for a in ages])
    got = age_bucket(posted, pd.Series([FT] * len(ages)))
    assert got.tolist() == ["1d", "1d", "1w", "1w", "4w", "4w", "older", "older", "1d"]


def test_age_bucket_uses_real_timestamps():
    posted = pd.Series(
        [
            pd.Timestamp("2024-04-30T23:00:00Z"),  # 2 hours across a month end
            pd.Timestamp("2024-04-25T00:00:00Z"),  # 6 days (yyyymmdd integers differ by 76)
            pd.Timestamp("2024-03-31T00:00:00Z"),  # 31 days
        ]
    )
    now = pd.Series([pd.Timestamp("2024-05-01T01:00:00Z")] * 3)
    assert age_bucket(posted, now).tolist() == ["1d", "1w", "older"]
    # a naive timestamp means UTC
    naive = pd.Series([pd.Timestamp("2024-05-01 00:30")])
    assert age_bucket(naive, now.iloc[:1]).tolist() == ["1d"]
    with pytest.raises(ValueError, match="null"):
        age_bucket(pd.Series([pd.NaT]), now.iloc[:1])


def test_cap_buckets_caps_each_bucket_reproducibly():
    frame = pd.DataFrame(
        {"post_id": [f"p{i:02d}" for i in range(35)], "bucket": ["1d"] * 30 + ["4w"] * 5}
    )
    caps = {"1d": 10, "1w": 10, "4w": 10, "older": 10}

    def capped(seed: int) -> pd.DataFrame:
        return cap_buckets(frame, caps, np.random.default_rng(seed))

    first = capped(1)
    assert first["bucket"].value_counts().to_dict() == {"1d": 10, "4w": 5}
    assert first["post_id"].is_unique and set(first["post_id"]) <= set(frame["post_id"])
    pd.testing.assert_frame_equal(capped(1), first)
    assert capped(2)["post_id"].tolist() != first["post_id"].tolist()
    with pytest.raises(KeyError, match="without a cap"):
        cap_buckets(frame, {"1d": 1}, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("engagement", "expected"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 8, 9], "CCCBBBAAA"),
        ([9, 1, 5], "ACB"),
        ([1, 1, 2, 2, 3, 3], "CCBBAA"),
        ([5, 5, 5], "AAA"),  # one distinct value: no bins at all
        ([7], "A"),
        ([1, 1, 1, 2], "AAAA"),  # ties merge all three bins into one
        ([1, 1, 1, 1, 2, 3], "BBBBAA"),  # two bins: the top one is A
    ],
)
def test_popularity_tertile_names_bins_from_the_top(engagement, expected):
    got = popularity_tertile(pd.Series(engagement, dtype=np.int64))
    assert "".join(got.tolist()) == expected


def test_popularity_tertile_of_nothing():
    assert popularity_tertile(pd.Series([], dtype=np.int64)).empty


def test_post_weights_table():
    tertile = pd.Series(["A", "A", "B", "B", "C", "C"])
    label = pd.Series(["YES", "MAYBE", "YES", "MAYBE", "YES", "MAYBE"])
    weights = post_weights(tertile, label, FeedParams().weights)
    assert weights.tolist() == [0.75, 0.10, 0.15, 0.15, 0.15, 0.15]
    with pytest.raises(KeyError, match="no weight"):
        post_weights(pd.Series(["A"]), pd.Series(["NO"]), FeedParams().weights)


def test_weighted_sample_is_without_replacement_and_skips_zero_weights():
    frame = pd.DataFrame({"post_id": list("abcdef"), "weight": [1, 1, 0, 1, 1, 1.0]})
    got = weighted_sample(frame, 10, np.random.default_rng(3))
    assert got["post_id"].tolist() == ["a", "b", "d", "e", "f"]
    three = weighted_sample(frame, 3, np.random.default_rng(3))
    assert len(three) == 3 and three["post_id"].is_unique and "c" not in set(three["post_id"])


def test_weighted_sample_follows_the_weights():
    frame = pd.DataFrame({"post_id": ["a_yes", "a_maybe"], "weight": [0.75, 0.10]})
    firsts = [
        weighted_sample(frame, 1, np.random.default_rng(seed))["post_id"].iloc[0]
        for seed in range(2000)
    ]
    share = firsts.count("a_yes") / len(firsts)
    assert 0.85 < share < 0.91  # 0.75 / 0.85 = 0.882
