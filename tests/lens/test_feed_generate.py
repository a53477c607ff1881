"""The whole feed from predictions: whole frames, seeded and reproducible, ``v`` larger is better, the CSV."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from lensfeed.feed import (
    FeedParams,
    candidate_posts,
    exclusion_masks,
    feed_csv,
    generate_feed,
    latest_per_post,
    seed_from_bytes,
)
from tests.lens.feed_rows import DAY, HOUR, post, predictions
from tests.lens.layouts import random_predictions


def tiny_predictions() -> pd.DataFrame:
    return predictions(
        post("a", "YES", 2 * HOUR, upvotes=30),
        post("b", "MAYBE", 3 * DAY, upvotes=20),
        post("c", "YES", 10 * DAY, upvotes=10),
        post("d", "MAYBE", 40 * DAY, upvotes=5),
        post("e", "YES", 5 * HOUR, upvotes=1),
        post("f", "YES", HOUR, upvotes=99, is_hidden=True),
        post("g", "NO", HOUR, upvotes=99),
    )


def test_generate_feed_tiny_input_whole_frame():
    feed, meta = generate_feed(tiny_predictions(), seed=42)
    # engagement 30, 20 -> A; 10 -> B; 5, 1 -> C. Order: weight (a 0.75; c, d, e 0.15;
    # b 0.10), then engagement; v = n - position, so larger is better.
    expected = pd.DataFrame(
        {
            "strategy_name": ["ml-xgb-followship"] * 5,
            "post_id": ["a", "c", "d", "e", "b"],
            "v": [5.0, 4.0, 3.0, 2.0, 1.0],
        }
    )
    pd.testing.assert_frame_equal(feed, expected)
    assert meta == {
        "strategy_name": "ml-xgb-followship",
        "seed": 42,
        "rows": {"predictions": 7, "posts": 7, "candidates": 5, "capped": 5, "feed": 5},
        "excluded": {
            "not_original": 0,
            "content_warning": 0,
            "hidden": 1,
            "gated": 0,
            "gardener_flagged": 0,
            "has_error": 0,
            "label_no": 1,
            "no_engagement": 0,
        },
        "candidates_by_bucket": {"1d": 2, "1w": 1, "4w": 1, "older": 1},
        "capped_by_bucket": {"1d": 2, "1w": 1, "4w": 1, "older": 1},
        "feed_by_bucket": {"1d": 2, "1w": 1, "4w": 1, "older": 1},
        "feed_by_label": {"YES": 3, "MAYBE": 2},
        "feed_by_tertile": {"A": 2, "B": 1, "C": 2},
    }
    json.dumps(meta)  # JSON-ready


def test_generate_feed_params_are_explicit():
    params = FeedParams(strategy_name="ml-test", size=2)
    feed, meta = generate_feed(tiny_predictions(), seed=42, params=params)
    assert len(feed) == 2 and set(feed["strategy_name"]) == {"ml-test"}
    assert meta["rows"]["feed"] == 2


def test_larger_v_is_better():
    frame = random_predictions(20_000)
    feed, _ = generate_feed(frame, seed=7)
    assert len(feed) == 2000 and feed["post_id"].is_unique
    assert feed["v"].tolist() == list(np.arange(2000, 0, -1, dtype=float))
    # the best post (highest weight, then engagement) gets the largest v
    info = candidate_posts(frame).set_index("post_id").loc[feed["post_id"]]
    top = info.iloc[0]
    chosen_yes = info[(info["label"] == "YES")]
    assert top["label"] == "YES"
    assert top["engagement_score"] == chosen_yes["engagement_score"].max()


def test_same_seed_same_feed_other_seed_other_sample():
    frame = random_predictions(20_000)
    first, meta = generate_feed(frame, seed=1)
    again, meta_again = generate_feed(frame.sample(frac=1, random_state=0), seed=1)
    assert feed_csv(first) == feed_csv(again) and meta == meta_again
    other, _ = generate_feed(frame, seed=2)
    assert set(other["post_id"]) != set(first["post_id"])


def test_sorted_predictions_skip_the_sort_with_the_same_result():
    """predict writes one row per post, sorted: that input skips the sort (linear), and
    gives the frame a shuffled copy gets through the general path."""
    frame = random_predictions(3000, seed=5)
    frame.loc[::7, "content_warning"] = "  \t"  # whitespace only: no warning
    frame.loc[::11, "content_warning"] = " cw "
    fast = latest_per_post(frame)
    general = latest_per_post(frame.sample(frac=1, random_state=3))
    pd.testing.assert_frame_equal(fast, general)
    warned = [isinstance(v, str) and v.strip() != "" for v in fast["content_warning"]]
    assert exclusion_masks(fast)["content_warning"].tolist() == warned
    assert sum(warned) > 0 and not all(warned)


def test_each_post_appears_once():
    frame = random_predictions(5000)
    doubled = pd.concat([frame, frame], ignore_index=True)
    feed, meta = generate_feed(doubled, seed=3)
    assert feed["post_id"].is_unique and meta["rows"]["posts"] == 5000


def test_empty_predictions_give_an_empty_feed():
    feed, meta = generate_feed(tiny_predictions().iloc[0:0], seed=1)
    assert feed.empty and list(feed.columns) == ["strategy_name", "post_id", "v"]
    assert meta["rows"]["feed"] == 0


def test_seed_from_bytes():
    assert seed_from_bytes(b"") == int.from_bytes(hashlib.sha256(b"").digest()[:8], "big")
    assert seed_from_bytes(b"a") != seed_from_bytes(b"b")


def test_feed_csv_format():
    feed = pd.DataFrame(
        {"strategy_name": ["s", "s"], "post_id": ["0x01-0x02", "x"], "v": [2.0, 0.1]}
    )
    assert feed_csv(feed) == b"strategy_name,post_id,v\ns,0x01-0x02,2\ns,x,0.10000000000000001\n"
