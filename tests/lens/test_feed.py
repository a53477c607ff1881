"""Tests for lensfeed.feed (pure) and the feed pipeline (files, then PostgreSQL)."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from lensfeed import pg
from lensfeed.feed import (
    DEFAULT_STRATEGY,
    WEIGHTS,
    FeedParams,
    age_bucket,
    candidate_posts,
    cap_buckets,
    engagement_score,
    exclusion_masks,
    feed_csv,
    generate_feed,
    latest_per_post,
    popularity_tertile,
    post_weights,
    rank_feed,
    seed_from_bytes,
    weighted_sample,
)
from pachlocal.spec import load_spec_documents, parse_pipeline_spec
from tests.conftest import Database
from tests.lens.entry_points import load_entry_point
from tests.lens.layouts import random_predictions

ROOT = Path(__file__).resolve().parents[2]
FT = pd.Timestamp("2024-05-10T00:00:00Z")
HOUR, DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)


def post(
    post_id: str,
    label: str | None = "YES",
    age: pd.Timedelta = 2 * HOUR,
    upvotes: int | None = 1,
    **overrides: Any,
) -> dict[str, Any]:
    row = {
        "post_id": post_id,
        "label": label,
        "p_maybe": 0.1,
        "p_no": 0.1,
        "p_yes": 0.8,
        "block_timestamp": FT - age,
        "feature_time": FT,
        "is_original": True,
        "content_warning": None,
        "is_hidden": False,
        "is_gated": False,
        "custom_filters_gardener_flagged": False,
        "has_error": False,
        "upvotes": upvotes,
        "mirrors": 0,
        "comments": 0,
        "collects": 0,
    }
    row.update(overrides)
    return row


def predictions(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


# --- candidates ---------------------------------------------------------------------


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


# --- age buckets --------------------------------------------------------------------------


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


# --- caps, tertiles, weights, sampling ---------------------------------------------------------


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


# --- the whole feed -----------------------------------------------------------------------------


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


# --- the pipeline ---------------------------------------------------------------------------------


@pytest.fixture
def feed_pipeline() -> ModuleType:
    return load_entry_point("feed")


@pytest.fixture
def predictions_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pfs" / "predictions"
    directory.mkdir(parents=True)
    random_predictions(8000, seed=11).to_parquet(directory / "predictions.parquet", index=False)
    return directory


def read_feed_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"strategy_name": object, "post_id": object, "v": np.float64})


def test_main_is_byte_reproducible_without_push(
    feed_pipeline, predictions_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("FEED_PUSH", "0")
    monkeypatch.delenv("PGSQL_URL", raising=False)
    monkeypatch.setenv("predictions_COMMIT", "in123")
    assert (
        feed_pipeline.main(["--predictions", str(predictions_dir), "--out", str(tmp_path / "o1")])
        == 0
    )
    assert (
        feed_pipeline.main(["--predictions", str(predictions_dir), "--out", str(tmp_path / "o2")])
        == 0
    )
    data = (tmp_path / "o1" / "feed.csv").read_bytes()
    assert data == (tmp_path / "o2" / "feed.csv").read_bytes()
    meta = json.loads((tmp_path / "o1" / "feed_meta.json").read_text())
    raw = (predictions_dir / "predictions.parquet").read_bytes()
    assert meta["seed"] == seed_from_bytes(raw)
    assert meta["input_commits"] == {"predictions": "in123"}
    assert meta["feed_sha256"] == hashlib.sha256(data).hexdigest()
    feed = read_feed_csv(tmp_path / "o1" / "feed.csv")
    expected, _ = generate_feed(
        pd.read_parquet(predictions_dir / "predictions.parquet"), meta["seed"]
    )
    pd.testing.assert_frame_equal(feed, expected)


def test_main_requires_the_dsn_unless_push_is_off(
    feed_pipeline, predictions_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("FEED_PUSH", raising=False)
    monkeypatch.delenv("PGSQL_URL", raising=False)
    assert (
        feed_pipeline.main(["--predictions", str(predictions_dir), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "PGSQL_URL is not set" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_feed_strategy_names_the_rows_and_is_validated(
    feed_pipeline, predictions_dir, tmp_path, monkeypatch, capsys
):
    """The README documents ``FEED_STRATEGY``: before, nothing read it."""
    monkeypatch.setenv("FEED_PUSH", "0")
    monkeypatch.setenv("FEED_STRATEGY", "ml-xgb-test")
    out = tmp_path / "o"
    assert feed_pipeline.main(["--predictions", str(predictions_dir), "--out", str(out)]) == 0
    assert set(read_feed_csv(out / "feed.csv")["strategy_name"]) == {"ml-xgb-test"}
    monkeypatch.setenv("FEED_STRATEGY", "bad name;")
    bad = tmp_path / "bad"
    assert feed_pipeline.main(["--predictions", str(predictions_dir), "--out", str(bad)]) == 2
    assert "FEED_STRATEGY: invalid strategy name 'bad name;'" in capsys.readouterr().err
    assert not bad.exists()


def test_main_without_predictions_fails(feed_pipeline, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEED_PUSH", "0")
    assert feed_pipeline.main(["--predictions", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "predictions.parquet not found" in capsys.readouterr().err


def test_feed_spec_is_valid_and_matches_the_entry_point():
    text = (ROOT / "specs" / "feed.pipeline.json").read_text()
    (doc,) = load_spec_documents(text, "feed.pipeline.json")
    spec = parse_pipeline_spec(doc)
    assert spec["pipeline"]["name"] == "feed"
    assert (
        spec["input"]["pfs"]["name"],
        spec["input"]["pfs"]["repo"],
        spec["input"]["pfs"]["glob"],
    ) == (
        "predictions",
        "predict",
        "/",
    )
    transform = spec["transform"]
    assert transform["cmd"] == [
        "python3",
        "pipelines/feed.py",
        "--predictions",
        "/pfs/predictions",
        "--out",
        "/pfs/out",
    ]
    assert transform["image"] == "ghcr.io/lens-feed/pipelines:0.1.0"
    assert transform["secrets"] == [{"name": "lens-postgres", "key": "dsn", "envVar": "PGSQL_URL"}]


# --- the pipeline with PostgreSQL -----------------------------------------------------------------


@pytest.fixture
def conn(pg_db: Database) -> Iterator[psycopg.Connection[Any]]:
    connection = pg.connect(pg_db.dsn)
    for table in (pg.FEED, pg.FEED_RUNS, pg.GLOBALTRUST):
        connection.execute(f"DROP TABLE IF EXISTS {table}")
    pg.ensure_schema(connection)
    yield connection
    connection.close()


@pytest.mark.integration
def test_main_writes_files_then_replaces_the_feed(
    feed_pipeline, predictions_dir, tmp_path, monkeypatch, pg_db, conn
):
    pg.replace_feed(
        conn,
        "other",
        pd.DataFrame({"post_id": ["x"], "v": [1.0]}),
        {"commit_id": "", "input_commits": {}, "feed_sha256": ""},
    )
    monkeypatch.setenv("PGSQL_URL", pg_db.dsn)
    monkeypatch.delenv("FEED_PUSH", raising=False)
    monkeypatch.setenv("PACH_OUTPUT_COMMIT_ID", "out789")
    monkeypatch.setenv("predictions_COMMIT", "in123")
    out = tmp_path / "out"
    assert feed_pipeline.main(["--predictions", str(predictions_dir), "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(
        pg.read_feed(conn, "ml-xgb-followship"), read_feed_csv(out / "feed.csv")
    )
    assert pg.read_feed(conn, "other")["post_id"].tolist() == ["x"]
    sha = hashlib.sha256((out / "feed.csv").read_bytes()).hexdigest()
    runs = conn.execute(
        "SELECT commit_id, row_count, input_commits, feed_sha256 FROM feed_runs"
        " WHERE strategy_name = 'ml-xgb-followship'"
    ).fetchall()
    assert runs == [("out789", 2000, {"predictions": "in123"}, sha)]


@pytest.mark.integration
def test_a_failed_push_fails_the_job_and_keeps_the_old_feed(
    feed_pipeline, predictions_dir, tmp_path, monkeypatch, pg_db, conn, capsys
):
    old = pd.DataFrame({"post_id": ["old1", "old2"], "v": [2.0, 1.0]})
    pg.replace_feed(
        conn, "ml-xgb-followship", old, {"commit_id": "", "input_commits": {}, "feed_sha256": ""}
    )
    # the pg_db refuses one of the new rows mid-COPY
    feed, _ = generate_feed(
        pd.read_parquet(predictions_dir / "predictions.parquet"),
        seed_from_bytes((predictions_dir / "predictions.parquet").read_bytes()),
    )
    poison = feed["post_id"].iloc[1500]
    conn.execute(
        psycopg.sql.SQL("ALTER TABLE feed ADD CONSTRAINT poison CHECK (post_id <> {})").format(
            psycopg.sql.Literal(poison)
        )
    )
    monkeypatch.setenv("PGSQL_URL", pg_db.dsn)
    monkeypatch.delenv("FEED_PUSH", raising=False)
    out = tmp_path / "out"
    assert feed_pipeline.main(["--predictions", str(predictions_dir), "--out", str(out)]) == 1
    assert "push to PostgreSQL failed" in capsys.readouterr().err
    assert (out / "feed.csv").exists()  # files first, then the push
    pd.testing.assert_frame_equal(
        pg.read_feed(conn, "ml-xgb-followship"),
        old.assign(strategy_name="ml-xgb-followship")[["strategy_name", "post_id", "v"]],
    )


def lock_waiters(
    conn: psycopg.Connection[Any], key: int, count: int, timeout_s: float = 60
) -> None:
    """Wait until ``count`` backends wait for the advisory lock ``key`` (a bigint key)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF  # pg_locks splits it into two oids
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        (waiting,) = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFF_FFFF),
        ).fetchone()
        if waiting == count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{count} pushes never waited together on the strategy's lock")


@pytest.mark.integration
def test_two_overlapping_jobs_leave_one_jobs_feed(
    feed_pipeline, tmp_path, monkeypatch, pg_db, conn
):
    strategy = FeedParams().strategy_name
    pg.replace_feed(
        conn,
        strategy,
        pd.DataFrame({"post_id": ["old1", "old2"], "v": [2.0, 1.0]}),
        {"commit_id": "", "input_commits": {}, "feed_sha256": ""},
    )
    jobs = {}
    for name, seed in (("one", 11), ("two", 12)):
        inputs = tmp_path / name / "predictions"
        inputs.mkdir(parents=True)
        frame = random_predictions(3000, seed=seed, id_prefix=name)
        frame.to_parquet(inputs / "predictions.parquet", index=False)
        jobs[name] = (inputs, tmp_path / name / "out")
    monkeypatch.setenv("PGSQL_URL", pg_db.dsn)
    monkeypatch.delenv("FEED_PUSH", raising=False)
    codes: dict[str, int] = {}

    def job(name: str) -> None:
        inputs, out = jobs[name]
        codes[name] = feed_pipeline.main(["--predictions", str(inputs), "--out", str(out)])

    key = pg.load_lock_key(pg.FEED, strategy)
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))  # hold both pushes at their first step
    threads = [threading.Thread(target=job, args=(name,), daemon=True) for name in jobs]
    try:
        for thread in threads:
            thread.start()
        lock_waiters(conn, key, 2)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    for thread in threads:
        thread.join(120)
    assert codes == {"one": 0, "two": 0}
    feeds = {name: read_feed_csv(out / "feed.csv") for name, (_, out) in jobs.items()}
    assert len(feeds["one"]) > 500 and len(feeds["two"]) > 500
    assert not set(feeds["one"]["post_id"]) & set(feeds["two"]["post_id"])
    (last_sha,) = conn.execute(
        "SELECT feed_sha256 FROM feed_runs WHERE strategy_name = %s"
        " ORDER BY created_at DESC LIMIT 1",
        (strategy,),
    ).fetchone()
    shas = {
        hashlib.sha256((out / "feed.csv").read_bytes()).hexdigest(): name
        for name, (_, out) in jobs.items()
    }
    winner = shas[last_sha]
    # the feed of the job whose push committed last, row for row its feed.csv: no union
    pd.testing.assert_frame_equal(pg.read_feed(conn, strategy), feeds[winner])


@pytest.mark.integration
def test_an_unreachable_database_fails_without_leaking_the_password(
    feed_pipeline, predictions_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(pg, "connect", functools.partial(pg.connect, sleep=lambda s: None))
    monkeypatch.setenv("PGSQL_URL", f"postgresql://lens:hunter2pw@/lens?host={tmp_path}&port=5999")
    monkeypatch.delenv("FEED_PUSH", raising=False)
    assert (
        feed_pipeline.main(["--predictions", str(predictions_dir), "--out", str(tmp_path / "o")])
        == 1
    )
    captured = capsys.readouterr()
    assert "cannot connect to PostgreSQL" in captured.err and "dbname=lens" in captured.err
    assert "hunter2pw" not in captured.err + captured.out
