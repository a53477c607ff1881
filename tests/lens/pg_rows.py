"""Rows and reads shared by the PostgreSQL tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import psycopg

DAY1, DAY2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)
RUN = {"commit_id": "c0ffee", "input_commits": {"predictions": "abc123"}, "feed_sha256": "00ff"}


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


def trust_frame(strategy: str, day: dt.date, scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "strategy_name": strategy,
            "i": list(scores),
            "v": list(scores.values()),
            "date": day,
        }
    )
