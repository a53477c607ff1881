"""Concurrent replaces: a strategy's advisory lock serialises them and the last commit wins."""

from __future__ import annotations

import threading
import time
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from lensfeed import pg
from tests.lens.pg_rows import (
    DAY1,
    RUN,
    expected_feed,
    feed_rows,
    run_count,
    trust_frame,
    whole_feed,
)

pytestmark = pytest.mark.integration


class Push(threading.Thread):
    """Runs one replace on its own connection; keeps its result or its exception."""

    def __init__(self, connection: psycopg.Connection[Any], replace: Any, *args: Any) -> None:
        super().__init__(daemon=True)
        self.connection, self.replace, self.args = connection, replace, args
        self.pid = connection.info.backend_pid
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.replace(self.connection, *self.args)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> Any:
        self.join(60)
        assert not self.is_alive(), "the push never finished"
        if self.error is not None:
            raise self.error
        return self.result


def lock_wait_of(watcher: psycopg.Connection[Any], pid: int, timeout_s: float = 30) -> str:
    """Wait until backend ``pid`` waits on a heavyweight lock; return what it waits on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = watcher.execute(
            "SELECT wait_event FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            (pid,),
        ).fetchone()
        if row:
            return str(row[0])
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited on a lock")


def pause_before_the_run_row(
    connection: psycopg.Connection[Any], reached: threading.Event, resume: threading.Event
) -> None:
    """Hold ``connection``'s replace_feed open after its DELETE and COPY, until ``resume``."""

    class Pausing(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            text = query.as_string(self) if isinstance(query, sql.Composable) else str(query)
            if "feed_runs" in text:
                reached.set()
                assert resume.wait(60)
            return super().execute(query, params, **kwargs)

    connection.cursor_factory = Pausing


def latest_run(conn: psycopg.Connection[Any], strategy: str) -> tuple[str, int]:
    row = conn.execute(
        "SELECT commit_id, row_count FROM feed_runs WHERE strategy_name = %s"
        " ORDER BY created_at DESC LIMIT 1",
        (strategy,),
    ).fetchone()
    return (row[0], row[1])


def test_load_lock_key_is_stable_and_matches_the_documented_sql(conn):
    assert pg.load_lock_key(pg.FEED, "ml-xgb-followship") == 2923280087415455584
    assert pg.load_lock_key(pg.GLOBALTRUST, "followship") == 8640807271194096367
    documented = (
        "SELECT ('x' || left(encode(sha256(convert_to('lensfeed:' || %s || ':' || %s,"
        " 'UTF8')), 'hex'), 16))::bit(64)::bigint"
    )
    names = ["a", "ml-xgb-followship", "followship", "z" * 63]
    for table in (pg.FEED, pg.GLOBALTRUST):
        for name in names:
            (key,) = conn.execute(documented, (table, name)).fetchone()
            assert pg.load_lock_key(table, name) == key
    keys = {pg.load_lock_key(t, n) for t in (pg.FEED, pg.GLOBALTRUST) for n in names}
    assert len(keys) == 2 * len(names)  # one lock per table and strategy


def test_a_push_overlapping_an_open_push_waits_and_the_last_commit_wins(pg_db, conn):
    previous = feed_rows([f"old{i:03d}" for i in range(50)])
    pg.replace_feed(conn, "a", previous, RUN)
    first = feed_rows([f"first{i:03d}" for i in range(200)])
    second = feed_rows([f"second{i:03d}" for i in range(150)])
    reached, resume = threading.Event(), threading.Event()
    with pg.connect(pg_db.dsn) as one, pg.connect(pg_db.dsn) as two:
        pause_before_the_run_row(one, reached, resume)
        push_one = Push(one, pg.replace_feed, "a", first, {**RUN, "commit_id": "one"})
        push_two = Push(two, pg.replace_feed, "a", second, {**RUN, "commit_id": "two"})
        try:
            push_one.start()
            assert reached.wait(30), "the first push never reached its feed_runs row"
            # the first push has deleted the old rows and copied its own, uncommitted
            push_two.start()
            waited_on = lock_wait_of(conn, push_two.pid)
        finally:
            resume.set()
        assert push_one.finish() == 200
        assert push_two.finish() == 150
    # the second push committed last: its rows alone, not the union with the first's
    pd.testing.assert_frame_equal(
        whole_feed(conn), expected_feed(second.assign(strategy_name="a")[list(pg.FEED_COLUMNS)])
    )
    assert waited_on == "advisory"  # it waited on the strategy's lock, before its DELETE
    assert latest_run(conn, "a") == ("two", 150)  # feed_runs' newest row is the feed's push


def test_overlapping_pushes_of_one_strategy_leave_exactly_one_row_set(pg_db, conn):
    pg.replace_feed(conn, "a", feed_rows([f"old{i:03d}" for i in range(50)]), RUN)
    pg.replace_feed(conn, "b", feed_rows(["q1", "q2"]), RUN)
    row_sets = {
        "one": feed_rows([f"one{i:03d}" for i in range(300)], "a"),
        "two": feed_rows([f"two{i:03d}" for i in range(120)] + ["old007"], "a"),
    }
    key = pg.load_lock_key(pg.FEED, "a")
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))  # as if a third push were running
    with pg.connect(pg_db.dsn) as one, pg.connect(pg_db.dsn) as two:
        pushes = [
            Push(c, pg.replace_feed, "a", row_sets[n], {**RUN, "commit_id": n})
            for c, n in ((one, "one"), (two, "two"))
        ]
        try:
            for push in pushes:
                push.start()
            # both transactions are open, both waiting for the lock: they overlap
            assert [lock_wait_of(conn, p.pid) for p in pushes] == ["advisory", "advisory"]
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        assert [p.finish() for p in pushes] == [300, 121]
    winner, _ = latest_run(conn, "a")
    # the rows of the push that committed last, nothing of the other (nor of the old set)
    pd.testing.assert_frame_equal(
        whole_feed(conn), expected_feed(row_sets[winner], feed_rows(["q1", "q2"], "b"))
    )
    assert run_count(conn) == 4  # two earlier runs, then one per push


def test_pushes_of_different_strategies_do_not_wait_for_each_other(pg_db, conn):
    reached, resume = threading.Event(), threading.Event()
    with pg.connect(pg_db.dsn) as one, pg.connect(pg_db.dsn) as other:
        pause_before_the_run_row(one, reached, resume)
        push_one = Push(one, pg.replace_feed, "a", feed_rows(["p1", "p2"]), RUN)
        try:
            push_one.start()
            assert reached.wait(30)
            # "a" is locked and mid-write; "b" must go through at once (or fail, not hang)
            other.execute("SET lock_timeout = '5s'")
            assert pg.replace_feed(other, "b", feed_rows(["q1"]), RUN) == 1
            assert push_one.is_alive()  # "a" is still open while "b" committed
        finally:
            resume.set()
        assert push_one.finish() == 2
    pd.testing.assert_frame_equal(
        whole_feed(conn), expected_feed(feed_rows(["p1", "p2"], "a"), feed_rows(["q1"], "b"))
    )


def assert_lock_free(dsn: str, strategy: str) -> None:
    """Another session can take the feed load lock of ``strategy`` at once."""
    with pg.connect(dsn) as other:
        key = pg.load_lock_key(pg.FEED, strategy)
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)


def test_a_push_failing_midway_keeps_the_previous_rows_and_frees_the_lock(pg_db, conn):
    previous = feed_rows([f"old{i:03d}" for i in range(20)])
    pg.replace_feed(conn, "a", previous, RUN)
    before = whole_feed(conn)
    bad = feed_rows([f"n{i}" for i in range(1000)])
    bad.loc[700, "post_id"] = "bad\x00id"  # the pg_db rejects row 701, mid-COPY
    with pytest.raises(pg.PgError, match="rolled back, the previous feed is kept"):
        pg.replace_feed(conn, "a", bad, RUN)
    pd.testing.assert_frame_equal(whole_feed(conn), before)
    assert run_count(conn) == 1
    assert_lock_free(pg_db.dsn, "a")  # the rollback released the strategy's lock


def test_a_repeated_post_id_found_while_streaming_keeps_the_previous_rows(pg_db, conn):
    pg.replace_feed(conn, "a", feed_rows([f"old{i:03d}" for i in range(20)]), RUN)
    before = whole_feed(conn)
    bad = feed_rows([f"n{i}" for i in range(1000)])
    bad.loc[900, "post_id"] = "n5"
    with pytest.raises(ValueError, match=r"more than once: 'n5' at positions 5, 900$"):
        pg.replace_feed(conn, "a", bad, RUN)
    pd.testing.assert_frame_equal(whole_feed(conn), before)
    assert run_count(conn) == 1
    assert_lock_free(pg_db.dsn, "a")  # the rollback released the strategy's lock


def test_a_failed_push_lets_a_waiting_push_through(pg_db, conn):
    pg.replace_feed(conn, "a", feed_rows(["old1", "old2"]), {**RUN, "commit_id": "old"})
    conn.execute("ALTER TABLE feed_runs ADD CONSTRAINT not_c0ffee CHECK (commit_id <> 'c0ffee')")
    reached, resume = threading.Event(), threading.Event()
    with pg.connect(pg_db.dsn) as one, pg.connect(pg_db.dsn) as two:
        pause_before_the_run_row(one, reached, resume)
        # the first push dies at its feed_runs row, after its DELETE and COPY
        push_one = Push(one, pg.replace_feed, "a", feed_rows(["x1"]), RUN)
        push_two = Push(
            two, pg.replace_feed, "a", feed_rows(["y1", "y2"]), {**RUN, "commit_id": "two"}
        )
        try:
            push_one.start()
            assert reached.wait(30)
            push_two.start()
            assert lock_wait_of(conn, push_two.pid) == "advisory"
        finally:
            resume.set()
        with pytest.raises(pg.PgError, match="not_c0ffee"):
            push_one.finish()
        assert push_two.finish() == 2
    pd.testing.assert_frame_equal(whole_feed(conn), feed_rows(["y1", "y2"], "a"))
    assert latest_run(conn, "a") == ("two", 2)


def test_overlapping_globaltrust_replaces_of_one_date_serialise(pg_db, conn):
    pg.replace_globaltrust(conn, trust_frame("followship", DAY1, {"0x01": 1.0}))
    frames = {
        "one": trust_frame("followship", DAY1, {"0x01": 0.5, "0x02": 0.5}),
        "two": trust_frame("followship", DAY1, {"0x01": 0.2, "0x03": 0.8}),
    }
    key = pg.load_lock_key(pg.GLOBALTRUST, "followship")
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    with (
        pg.connect(pg_db.dsn) as one,
        pg.connect(pg_db.dsn) as two,
        pg.connect(pg_db.dsn) as other,
    ):
        pushes = [
            Push(c, pg.replace_globaltrust, frames[n]) for c, n in ((one, "one"), (two, "two"))
        ]
        try:
            for push in pushes:
                push.start()
            assert [lock_wait_of(conn, p.pid) for p in pushes] == ["advisory", "advisory"]
            # another strategy's trust is not held up, nor is this strategy's feed
            other.execute("SET lock_timeout = '5s'")
            influencer = trust_frame("influencer", DAY1, {"0x09": 1.0})
            assert pg.replace_globaltrust(other, influencer) == 1
            assert pg.replace_feed(other, "followship", feed_rows(["p1"]), RUN) == 1
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        # without the lock the later one would fail on the unique (strategy, date, i)
        assert [p.finish() for p in pushes] == [2, 2]
    got = pg.read_globaltrust(conn, "followship")[["strategy_name", "i", "v", "date"]]
    got = got.sort_values("i").reset_index(drop=True)
    assert any(got.equals(frame) for frame in frames.values()), got
