"""The feed tables in PostgreSQL: schema, ``replace_feed`` (atomic, bit for bit, validated) and strategy names."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest

from lensfeed import pg
from lensfeed.feed import generate_feed
from lensfeed.pg import bulk
from tests.lens.layouts import random_predictions
from tests.lens.pg_rows import RUN, expected_feed, feed_rows, run_count, whole_feed

pytestmark = pytest.mark.integration

BAD_NAMES = [
    "followship'; DROP TABLE feed; --",
    "Followship",
    "",
    "-followship",
    "a" * 64,
    "follow ship",
    "followship\n",
]


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
    monkeypatch.setattr(bulk, "_COPY_ROWS", 3)
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
    monkeypatch.setattr(bulk, "_COPY_ROWS", 1000)
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
        bulk.copy_columns(
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

    monkeypatch.setattr(bulk, "_COPY_ROWS", 10)
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
