"""The ``globaltrust`` table: the ranked read of the latest date and the atomic replace of one date."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from lensfeed import pg
from lensfeed.eigentrust import rank_trust
from tests.lens.pg_rows import DAY1, DAY2, trust_frame

pytestmark = pytest.mark.integration


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
