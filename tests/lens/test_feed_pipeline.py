"""The ``feed`` entry point and spec, alone and pushing to PostgreSQL (atomic, serialised, no password leaked)."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from lensfeed import pg
from lensfeed.feed import (
    FeedParams,
    generate_feed,
    seed_from_bytes,
)
from pachlocal.spec import load_spec_documents, parse_pipeline_spec
from tests.lens.entry_points import load_entry_point
from tests.lens.layouts import random_predictions

ROOT = Path(__file__).resolve().parents[2]


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
