"""Small re-implementations of what the original Lens pipeline did, as benchmark baselines.

Written from the description in ``docs``/the domain notes (sections 3 to 7), not
copied. Each one reproduces the original's *method* (the cost that the project
replaced) while computing values comparable with ours, so that a benchmark can
check that both sides give the same answer:

- :func:`feed_push_to_sql`: ``DELETE`` then pandas ``DataFrame.to_sql(if_exists="append")``
  with pandas' defaults (no ``method``, no ``chunksize``) through SQLAlchemy and psycopg;
- :func:`feed_push_copy_csv`: the floor, a raw ``COPY ... FROM STDIN (FORMAT csv)``
  of an already written CSV with psycopg;
- :func:`post_score_apply`: per-author maxima by ``groupby`` and the post score
  by a row-wise ``DataFrame.apply``, as the original notebook and batch job did;
  the maxima are taken over the frame passed in (the original took them over a
  batch; here the frame is the whole history, so the values equal ours);
- :func:`pagerank_networkx`: a networkx ``DiGraph`` built edge by edge, then
  ``nx.pagerank`` with the pretrust as personalization and dangling weights.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

#: A zero per-author maximum divides as this (the original's rule).
ZERO_MAX = 1e10


# --- feed push ------------------------------------------------------------------


def sqlalchemy_url(dsn: str) -> str:
    """The SQLAlchemy URL (psycopg 3 driver) of a ``postgresql://`` libpq URL."""
    if not dsn.startswith("postgresql://"):
        raise ValueError("expected a postgresql:// URL")
    return "postgresql+psycopg://" + dsn.removeprefix("postgresql://")


def feed_push_to_sql(engine: Any, strategy: str, rows: pd.DataFrame) -> int:
    """The original feed write: ``DELETE`` the strategy's rows, then ``to_sql`` append.

    Two separate statements, as the original ran them (not atomic: a defect the
    project fixed; here it only matters for what it costs).
    """
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text("DELETE FROM feed WHERE strategy_name = :s"), {"s": strategy})
    frame = pd.DataFrame({"strategy_name": strategy, "post_id": rows["post_id"], "v": rows["v"]})
    frame.to_sql("feed", engine, if_exists="append", index=False)
    return len(frame)


def feed_csv(strategy: str, rows: pd.DataFrame) -> bytes:
    """The feed rows as the CSV the original wrote (``strategy_name,post_id,v``, header)."""
    frame = pd.DataFrame({"strategy_name": strategy, "post_id": rows["post_id"], "v": rows["v"]})
    text: str = frame.to_csv(index=False, float_format="%.17g")
    return text.encode()


def feed_push_copy_csv(conn: Any, strategy: str, csv: bytes) -> None:
    """``DELETE`` then ``COPY feed FROM STDIN (FORMAT csv, HEADER)``, one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM feed WHERE strategy_name = %s", (strategy,))
        with cur.copy(
            "COPY feed (strategy_name, post_id, v) FROM STDIN WITH (FORMAT csv, HEADER true)"
        ) as copy:
            copy.write(csv)


# --- post score ---------------------------------------------------------------------


def _row_score(row: pd.Series) -> float:
    def ratio(value: float, maximum: float) -> float:
        return float(value) / (ZERO_MAX if maximum == 0 else float(maximum))

    return (
        ratio(row["mirrors"], row["max_mirrors"])
        + ratio(row["collects"], row["max_collects"])
        + 3 * ratio(row["comments"], row["max_comments"])
        - 5 * ratio(row["age"], row["max_age"])
    )


def post_score_apply(posts: pd.DataFrame, feature_time: pd.Timestamp) -> pd.DataFrame:
    """Ages, per-author maxima and ``post_score`` the original way.

    Args:
        posts: ``post_id, profile_id, block_timestamp, mirrors, collects, comments``.
        feature_time: the time ages are counted to, in calendar days (UTC dates), as
            the original's ``datediff(feature_time, block_timestamp)`` counts them.

    Returns:
        ``posts`` plus ``age, max_age, max_mirrors, max_collects, max_comments, post_score``.
    """
    frame = posts.copy()
    days = feature_time.tz_convert("UTC").floor("D") - frame["block_timestamp"].dt.floor("D")
    frame["age"] = days // pd.Timedelta(days=1)
    maxima = frame.groupby("profile_id")[["age", "mirrors", "collects", "comments"]].max()
    maxima.columns = [f"max_{c}" for c in maxima.columns]
    frame = frame.merge(maxima, left_on="profile_id", right_index=True, how="left")
    frame["post_score"] = frame.apply(_row_score, axis=1)
    return frame


# --- EigenTrust -------------------------------------------------------------------------


def pagerank_networkx(
    n: int,
    src: npt.NDArray[np.int64],
    dst: npt.NDArray[np.int64],
    p: npt.NDArray[np.float64],
    alpha: float = 0.5,
    tol: float = 1e-12,
) -> npt.NDArray[np.float64]:
    """Global trust by networkx: build a ``DiGraph`` of the follows and run ``pagerank``.

    EigenTrust's ``t = (1 - a) C^T t + a p`` with zero rows replaced by ``p`` is
    PageRank with damping ``1 - a``, ``personalization = dangling = p``.
    Duplicate edges collapse in the ``DiGraph``; ``src`` must hold no self-follow.

    Returns:
        Scores for nodes ``0 .. n-1``.
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
    weights = {int(i): float(p[i]) for i in np.flatnonzero(p)}
    ranks = nx.pagerank(
        graph,
        alpha=1 - alpha,
        personalization=weights,
        dangling=weights,
        tol=tol,
        max_iter=10_000,
    )
    return np.fromiter((ranks[i] for i in range(n)), dtype=np.float64, count=n)
