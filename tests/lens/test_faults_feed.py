"""Faults of the feed pipeline through pachlocal and the real spec: PostgreSQL SIGKILLed mid-``COPY``, and down when a job starts.

Each case creates the real pipeline with its secret, injects one fault and checks what an
operator relies on: the job ends ``failure`` with a reason naming the fault, no commit holds
partial output, data already published is intact, and a later run recovers exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import psycopg
import pytest
from psycopg import sql

from lensfeed import pg
from lensfeed.feed import FeedParams, feed_csv, generate_feed, seed_from_bytes
from lensrun.pgserver import EmbeddedPostgres
from tests.lens.faults_engine import (
    BACKOFF,
    DATUM_TRIES,
    ROOT,
    Cli,
    assert_failed_without_output,
    assert_fsck_clean,
    contents,
    create_secret,
    head_id,
    log_text,
)
from tests.lens.layouts import random_predictions

pytestmark = pytest.mark.integration

FEED_SPEC = str(ROOT / "specs" / "feed.pipeline.json")

STRATEGY = FeedParams().strategy_name

PG_PASSWORD = "pw-faults-5e1d0c9a"  # ignored by the embedded server, carried like a real one

HOLD_KEY = 0x46415554  # advisory lock that stops the feed's COPY mid-stream


class Postgres:
    """The module's embedded server, which a test may kill, stop and start on the same data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: EmbeddedPostgres | None = None
        self.dsn = ""

    def start(self) -> None:
        if self.server is None:
            self.server = EmbeddedPostgres(self.data_dir)
            dsn = self.server.dsn.replace(
                "postgresql://postgres@", f"postgresql://postgres:{PG_PASSWORD}@", 1
            )
            assert self.dsn in ("", dsn), "a restart moved the server: the secret would be stale"
            self.dsn = dsn

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None

    def connect(self) -> psycopg.Connection[Any]:
        return pg.connect(self.dsn, attempts=1)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("faults-pg") / "pgdata")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db(postgres: Postgres) -> Postgres:
    """The server, running, without the feed tables (each feed job creates them)."""
    postgres.start()
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS feed, feed_runs, globaltrust CASCADE")
        conn.execute("DROP FUNCTION IF EXISTS lens_fault_hold() CASCADE")
    return postgres


def predictions(n: int, seed: int) -> bytes:
    """``predictions.parquet`` as predict writes it, ids distinct per seed."""
    sink = io.BytesIO()
    random_predictions(n, seed, id_prefix=f"{seed:02x}-0x").to_parquet(sink, index=False)
    return sink.getvalue()


def expected_feed(raw: bytes) -> pd.DataFrame:
    """An independent run of the feed logic: what PostgreSQL must hold after a good job."""
    feed, _ = generate_feed(pd.read_parquet(io.BytesIO(raw)), seed_from_bytes(raw))
    return feed


def feed_in_db(db: Postgres) -> pd.DataFrame:
    with db.connect() as conn:
        return pg.read_feed(conn, STRATEGY)


def feed_runs(db: Postgres) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        return conn.execute(
            "SELECT commit_id, row_count, input_commits, feed_sha256 FROM feed_runs"
            " WHERE strategy_name = %s ORDER BY created_at",
            (STRATEGY,),
        ).fetchall()


def run_row(job_id: str, predict_commit: str, raw: bytes) -> tuple[Any, ...]:
    feed = expected_feed(raw)
    return (
        job_id,
        len(feed),
        {"predictions": predict_commit},
        hashlib.sha256(feed_csv(feed)).hexdigest(),
    )


def put_predictions(pachlocal: Cli, tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / f"predictions-{hashlib.sha256(raw).hexdigest()[:8]}.parquet"
    path.write_bytes(raw)
    pachlocal("put", "file", "predict@master:/predictions.parquet", "-f", str(path))


def first_feed(pachlocal: Cli, home: Path, db: Postgres, tmp_path: Path, raw: bytes) -> str:
    """Secret, repo ``predict``, the feed pipeline and its first good job; returns that job's id."""
    create_secret(home, "lens-postgres", PGSQL_URL=db.dsn)
    pachlocal("create", "repo", "predict")
    put_predictions(pachlocal, tmp_path, raw)
    pachlocal("create", "pipeline", "-f", FEED_SPEC)
    (job,) = pachlocal("list", "job", "-p", "feed", "--raw")
    assert (job["state"], job["processed"]) == ("success", 1)
    pd.testing.assert_frame_equal(feed_in_db(db), expected_feed(raw))
    assert contents(home, f"feed@{job['id']}")["/feed.csv"] == feed_csv(expected_feed(raw))
    assert feed_runs(db) == [run_row(job["id"], head_id(home, "predict@master"), raw)]
    return str(job["id"])


def assert_recovered(pachlocal: Cli, home: Path, db: Postgres, raw: bytes) -> str:
    """The newest feed job succeeded and PostgreSQL, feed.csv and feed_meta.json agree with ``raw``."""
    job = pachlocal("list", "job", "-p", "feed", "--raw")[0]
    assert (job["state"], job["processed"]) == ("success", 1), job["reason"]
    pd.testing.assert_frame_equal(feed_in_db(db), expected_feed(raw))
    out = contents(home, "feed@master")
    assert head_id(home, "feed@master") == job["id"]
    assert out["/feed.csv"] == feed_csv(expected_feed(raw))
    meta = json.loads(out["/feed_meta.json"])
    assert meta["input_commits"] == {"predictions": head_id(home, "predict@master")}
    return str(job["id"])


def _kill_when_blocked(db: Postgres, seen: dict[str, Any]) -> None:
    """Wait until the feed job's COPY waits on :data:`HOLD_KEY`, then SIGKILL the server."""
    deadline = time.monotonic() + 90
    with psycopg.connect(db.dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT query, state, wait_event_type, wait_event, xact_start IS NOT NULL"
                " FROM pg_stat_activity WHERE application_name = 'lensfeed'"
                " AND wait_event = 'advisory'"
            ).fetchone()
            if row is not None:
                seen.update(
                    zip(("query", "state", "wait_type", "wait", "in_xact"), row, strict=True)
                )
                break
            time.sleep(0.02)
    db.kill()  # also after the deadline: a job blocked for good must not hang the suite


@pytest.mark.slow
def test_postgres_killed_mid_copy_keeps_the_previous_feed_and_a_rerun_recovers(
    db: Postgres, home: Path, pachlocal: Cli, tmp_path: Path
) -> None:
    old, new = predictions(6000, 1), predictions(6000, 2)
    first = first_feed(pachlocal, home, db, tmp_path, old)
    runs_before = feed_runs(db)

    # Stop the new feed's COPY at its middle row, inside the job's transaction (the DELETE
    # of the previous rows done, half the new rows sent), by a row trigger that waits on an
    # advisory lock this test holds; then SIGKILL the server.
    expected_new = expected_feed(new)
    middle = str(expected_new["post_id"].iloc[len(expected_new) // 2])
    holder = db.connect()
    holder.execute(
        sql.SQL(
            "CREATE FUNCTION lens_fault_hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.post_id = {} THEN PERFORM pg_advisory_xact_lock({}); END IF;"
            " RETURN NEW; END $$"
        ).format(sql.Literal(middle), sql.Literal(HOLD_KEY))
    )
    holder.execute(
        "CREATE TRIGGER lens_fault_hold BEFORE INSERT ON feed"
        " FOR EACH ROW EXECUTE FUNCTION lens_fault_hold()"
    )
    holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
    seen: dict[str, Any] = {}
    killer = threading.Thread(target=_kill_when_blocked, args=(db, seen), daemon=True)
    killer.start()
    put_predictions(pachlocal, tmp_path, new)  # runs the feed job: blocked, killed, retried
    killer.join(timeout=120)
    holder.close()
    assert seen.get("query", "").startswith('COPY "feed" ("strategy_name", "post_id", "v")')
    assert (seen["state"], seen["wait_type"], seen["in_xact"]) == ("active", "Lock", True)

    # the job failed on both tries, with the reason in its logs; no half-written commit
    job_id = head_id(home, "predict@master")  # the job shares the commit set of its input
    assert_failed_without_output(pachlocal, home, "feed", job_id, parent=first)
    logs = log_text(pachlocal, "feed", job_id)
    assert re.search(
        r"feed: push to PostgreSQL failed: replace_feed\('ml-xgb-followship'\) failed \(.+\),"
        r" rolled back, the previous feed is kept: .+",
        logs[1],
    ), logs[1]
    assert re.search(
        r"feed: push to PostgreSQL failed: cannot connect to PostgreSQL \(host=\S+ port=\d+"
        r" dbname=postgres user=postgres\) after 5 attempts: .+",
        logs[2],
    ), logs[2]
    assert f"attempt 1/{DATUM_TRIES} failed: command exited with code 1" in logs[1]
    job = pachlocal("inspect", "job", f"feed@{job_id}", "--raw")
    assert PG_PASSWORD not in "".join(logs.values()) + job["reason"]

    # crash recovery on the same data: the previous feed, row for row, and no new run
    db.start()
    with db.connect() as conn:
        conn.execute("DROP FUNCTION lens_fault_hold() CASCADE")
    pd.testing.assert_frame_equal(feed_in_db(db), expected_feed(old))
    assert feed_runs(db) == runs_before

    # a rerun (update pipeline queues a job on the same input) publishes the new feed
    pachlocal("update", "pipeline", "-f", FEED_SPEC)
    rerun = assert_recovered(pachlocal, home, db, new)
    assert feed_runs(db) == [*runs_before, run_row(rerun, job_id, new)]
    assert_fsck_clean(pachlocal)


@pytest.mark.slow
def test_postgres_down_at_job_start_retries_then_fails_and_a_later_run_recovers(
    db: Postgres, home: Path, pachlocal: Cli, tmp_path: Path
) -> None:
    old, missed, later = predictions(6000, 3), predictions(6000, 4), predictions(6000, 5)
    first = first_feed(pachlocal, home, db, tmp_path, old)
    runs_before = feed_runs(db)

    db.stop()
    put_predictions(pachlocal, tmp_path, missed)
    job_id = head_id(home, "predict@master")
    datum = assert_failed_without_output(pachlocal, home, "feed", job_id, parent=first)
    logs = log_text(pachlocal, "feed", job_id)
    for attempt in range(1, DATUM_TRIES + 1):
        text = logs[attempt]
        waits = re.findall(r"attempt (\d)/5 failed, retrying in ([\d.]+) s: .*\S", text)
        assert [(int(n), float(w)) for n, w in waits] == list(enumerate(BACKOFF, 1)), text
        assert re.search(
            r"feed: push to PostgreSQL failed: cannot connect to PostgreSQL \(host=\S+"
            r" port=\d+ dbname=postgres user=postgres\) after 5 attempts: .+",
            text,
        ), text
    # bounded: each try waits the whole backoff, and no more than a few seconds beyond it
    assert DATUM_TRIES * sum(BACKOFF) <= datum["seconds"] < DATUM_TRIES * sum(BACKOFF) + 30
    assert PG_PASSWORD not in "".join(logs.values())

    db.start()
    pd.testing.assert_frame_equal(feed_in_db(db), expected_feed(old))
    assert feed_runs(db) == runs_before

    put_predictions(pachlocal, tmp_path, later)  # the next upstream commit
    recovered = assert_recovered(pachlocal, home, db, later)
    assert feed_runs(db) == [*runs_before, run_row(recovered, recovered, later)]
    assert_fsck_clean(pachlocal)
