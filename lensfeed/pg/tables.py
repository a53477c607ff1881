"""The feed's tables: their schema, the atomic replaces of ``feed`` and
``globaltrust``, and the reads of both (see :mod:`lensfeed.pg`)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.types.json import Jsonb

from lensfeed.pg.bulk import copy_columns, lock_loads, run_atomically
from lensfeed.pg.connection import PgError, problem_of, where

_log = logging.getLogger(__name__)


GLOBALTRUST = "globaltrust"


FEED = "feed"


FEED_RUNS = "feed_runs"


#: Allowed strategy names: lower-case letters, digits, ``_`` and ``-``, up to 63 characters.
STRATEGY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


GLOBALTRUST_COLUMNS = ("strategy_name", "i", "v", "date")


FEED_COLUMNS = ("strategy_name", "post_id", "v")


TRUST_COLUMNS = ("strategy_name", "i", "v", "rank", "date")


# Serialises concurrent ensure_schema calls (CREATE ... IF NOT EXISTS can race).
_SCHEMA_LOCK_KEY = 0x4C454E53  # "LENS"


#: The contract of ``feed.v``, also the column's comment in PostgreSQL.
FEED_V_CONTRACT = (
    "Rank of the post in its strategy's feed: n for the best of n posts down to 1 "
    "(larger is better; read ORDER BY v DESC). Whole numbers stored as float8. "
    "The 2023 pipeline wrote 0 for its best post."
)


_SCHEMA = (
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (strategy_name text NOT NULL, i text NOT NULL,"
        " v float8 NOT NULL, date date NOT NULL, UNIQUE (strategy_name, date, i))"
    ).format(sql.Identifier(GLOBALTRUST)),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (strategy_name text NOT NULL, post_id text NOT NULL,"
        " v float8 NOT NULL)"
    ).format(sql.Identifier(FEED)),
    sql.SQL("COMMENT ON COLUMN {}.v IS {}").format(
        sql.Identifier(FEED), sql.Literal(FEED_V_CONTRACT)
    ),
    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (strategy_name)").format(
        sql.Identifier(f"{FEED}_strategy_name_idx"), sql.Identifier(FEED)
    ),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (strategy_name text NOT NULL, commit_id text NOT NULL,"
        " row_count int NOT NULL, input_commits jsonb NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(), feed_sha256 text NOT NULL)"
    ).format(sql.Identifier(FEED_RUNS)),
)


# ROW_NUMBER over the latest date of one strategy; COLLATE "C" orders `i` by
# code point, as Python and pandas do, whatever the database's locale.
_READ_GLOBALTRUST = sql.SQL(
    "SELECT strategy_name, i, v,"
    ' ROW_NUMBER() OVER (ORDER BY v DESC, i COLLATE "C" ASC) AS rank, date'
    " FROM {t} WHERE strategy_name = %(s)s"
    " AND date = (SELECT max(date) FROM {t} WHERE strategy_name = %(s)s)"
    " ORDER BY rank"
).format(t=sql.Identifier(GLOBALTRUST))


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create ``globaltrust``, ``feed`` (indexed on strategy_name) and ``feed_runs`` if absent.

    Idempotent; concurrent callers are serialised by an advisory lock.
    """
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in _SCHEMA:
                cur.execute(statement)
    except psycopg.Error as exc:
        problem = problem_of(conn, exc)
        raise PgError(f"cannot create the feed tables ({where(conn)}): {problem}") from None


def validate_strategy(name: str) -> str:
    """Return ``name`` if it matches :data:`STRATEGY_RE`, else raise ValueError."""
    if not isinstance(name, str) or not STRATEGY_RE.fullmatch(name):
        raise ValueError(f"invalid strategy name {name!r}: must match {STRATEGY_RE.pattern}")
    return name


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{name} is missing column(s): {', '.join(missing)}")


def _where_rows(mask: np.ndarray[Any, np.dtype[np.bool_]]) -> str:
    """``N rows, the first at position P`` of a row mask (positions count from 0)."""
    positions = np.flatnonzero(mask)
    return f"{len(positions)} row(s), the first at position {positions[0]}"


def _finite_floats(values: pd.Series, name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    try:
        floats: np.ndarray[Any, np.dtype[np.float64]] = pd.to_numeric(
            values, errors="raise"
        ).to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not numeric ({exc})") from None
    finite = np.isfinite(floats)
    if not finite.all():
        raise ValueError(f"{name}: holds NaN or infinite values ({_where_rows(~finite)})")
    return floats


def _no_nulls(values: pd.Series, name: str) -> None:
    nulls = values.isna().to_numpy(dtype=bool)
    if nulls.any():
        raise ValueError(f"{name}: holds nulls ({_where_rows(nulls)})")


def _text(values: pd.Series, name: str) -> list[str]:
    _no_nulls(values, name)
    return [str(v) for v in values.tolist()]


def _text_array(values: pd.Series, name: str) -> pa.Array:
    """:func:`_text` as an Arrow string array (strings pass without a Python round trip)."""
    try:
        text = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        _no_nulls(values, name)
        return pa.array([str(v) for v in values.tolist()], type=pa.string())
    if text.null_count:
        _no_nulls(values, name)
        raise ValueError(f"{name}: holds nulls")
    return text


def _unique_text(text: pa.Array, name: str) -> None:
    """Raise ValueError naming the first repeated value of ``text`` and where it is."""
    if len(pc.unique(text)) == len(text):
        return
    values = pd.Series(text.to_numpy(zero_copy_only=False))
    repeated = values[values.duplicated(keep=False)]
    first = repeated.iloc[0]
    at = repeated.index[repeated == first].tolist()
    shown = ", ".join(map(str, at[:5])) + (" ..." if len(at) > 5 else "")
    raise ValueError(f"{name}: a post appears more than once: {first!r} at positions {shown}")


def replace_feed(
    conn: psycopg.Connection[Any], strategy: str, rows: pd.DataFrame, run: Mapping[str, Any]
) -> int:
    """Replace one strategy's feed rows and record the run, in one transaction.

    Take this strategy's load lock (waiting for a concurrent replace of the same
    strategy to finish), ``DELETE`` its rows, ``COPY`` the new ones, insert a
    ``feed_runs`` row (``created_at`` read after the lock, so runs sort in commit
    order), commit. A failure rolls back: the previous feed stays exactly as it was.
    Of two concurrent replaces the feed holds the rows of the one that commits last.

    Args:
        conn: a connection from :func:`connect` (autocommit; the transaction is explicit).
        strategy: ``strategy_name`` to replace; checked against :data:`STRATEGY_RE`.
        rows: ``post_id`` and ``v`` (and optionally ``strategy_name``, which must
            equal ``strategy``); post ids unique and non-null, ``v`` finite.
        run: ``commit_id`` (str), ``input_commits`` (JSON-able mapping) and
            ``feed_sha256`` (str) for the ``feed_runs`` row.

    Returns:
        The number of feed rows written.

    Raises:
        ValueError, KeyError: invalid arguments; nothing was written (nothing was
            sent, but for repeated post ids: those are found while the rows stream
            and the transaction is rolled back before the run row).
        PgError: the database failed; the transaction was rolled back.
    """
    validate_strategy(strategy)
    _require_columns(rows, ("post_id", "v"), "feed rows")
    missing = [key for key in ("commit_id", "input_commits", "feed_sha256") if key not in run]
    if missing:
        raise KeyError(f"run is missing key(s): {', '.join(missing)}")
    if "strategy_name" in rows.columns and not (rows["strategy_name"] == strategy).all():
        raise ValueError(f"feed rows hold strategy names other than {strategy!r}")
    post_ids = _text_array(rows["post_id"], "post_id")
    scores = pa.array(_finite_floats(rows["v"], "v"))
    count = len(post_ids)
    runs_row = (
        strategy,
        str(run["commit_id"]),
        count,
        Jsonb(dict(run["input_commits"])),
        str(run["feed_sha256"]),
    )

    def body(cur: psycopg.Cursor[Any], unique: Future[None]) -> None:
        lock_loads(cur, FEED, [strategy])
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE strategy_name = %s").format(sql.Identifier(FEED)),
            (strategy,),
        )
        copy_columns(cur, FEED, FEED_COLUMNS, (pa.scalar(strategy), post_ids, scores))
        unique.result()  # a repeated post id raises here: the transaction rolls back
        # clock_timestamp(), not now(): now() is when the transaction began, possibly
        # before a concurrent replace of this strategy committed
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (strategy_name, commit_id, row_count, input_commits,"
                " feed_sha256, created_at) VALUES (%s, %s, %s, %s, %s, clock_timestamp())"
            ).format(sql.Identifier(FEED_RUNS)),
            runs_row,
        )

    started = time.perf_counter()
    # the uniqueness check (a hash of every post id) runs on another core while the
    # rows stream, instead of before them; it is awaited before the run row and the
    # commit, so repeated post ids still leave nothing written
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lensfeed-check") as pool:
        unique = pool.submit(_unique_text, post_ids, "post_id")
        run_atomically(
            conn,
            f"replace_feed({strategy!r})",
            "the previous feed is kept",
            lambda cur: body(cur, unique),
        )
    _log.info("feed %r replaced: %d rows in %.2f s", strategy, count, time.perf_counter() - started)
    return count


def replace_globaltrust(conn: psycopg.Connection[Any], frame: pd.DataFrame) -> int:
    """Replace the ``globaltrust`` rows of each (strategy_name, date) in ``frame``, in one transaction.

    The transaction first takes the load lock of each strategy in ``frame`` (in key
    order), so concurrent replaces of a strategy serialise and the last commit wins.

    Args:
        conn: a connection from :func:`connect`.
        frame: columns ``strategy_name, i, v, date`` (as ``global_trust_frame``
            returns); ``(strategy_name, date, i)`` unique, ``v`` finite.

    Returns:
        The number of rows written (0 for an empty frame, which changes nothing).

    Raises:
        ValueError, KeyError: invalid frame (nothing was sent).
        PgError: the database failed; the transaction was rolled back.
    """
    _require_columns(frame, GLOBALTRUST_COLUMNS, "globaltrust frame")
    if frame.empty:
        return 0
    strategies = _text(frame["strategy_name"], "strategy_name")
    for name in sorted(set(strategies)):
        validate_strategy(name)
    peers = _text(frame["i"], "i")
    scores = _finite_floats(frame["v"], "v").tolist()
    if frame["date"].isna().any():
        raise ValueError("date: holds nulls")
    dates = [pd.Timestamp(d).date() for d in frame["date"].tolist()]
    if len(set(zip(strategies, dates, peers, strict=True))) != len(peers):
        raise ValueError("(strategy_name, date, i) is not unique")
    keys = sorted(set(zip(strategies, dates, strict=True)))

    def body(cur: psycopg.Cursor[Any]) -> None:
        lock_loads(cur, GLOBALTRUST, (strategy for strategy, _ in keys))
        delete = sql.SQL("DELETE FROM {} WHERE strategy_name = %s AND date = %s").format(
            sql.Identifier(GLOBALTRUST)
        )
        for key in keys:
            cur.execute(delete, key)
        copy_columns(
            cur,
            GLOBALTRUST,
            GLOBALTRUST_COLUMNS,
            (
                pa.array(strategies, pa.string()),
                pa.array(peers, pa.string()),
                pa.array(scores, pa.float64()),
                pa.array(dates, pa.date32()),
            ),
        )

    what = f"replace_globaltrust({', '.join(f'{s!r} {d}' for s, d in keys)})"
    run_atomically(conn, what, "the previous trust rows are kept", body)
    _log.info("globaltrust replaced: %d rows for %s", len(peers), keys)
    return len(peers)


def read_globaltrust(conn: psycopg.Connection[Any], strategy: str) -> pd.DataFrame:
    """The latest date's global trust of one strategy, ranked.

    ``rank = ROW_NUMBER() OVER (ORDER BY v DESC, i ASC)`` (``i`` by code point).

    Args:
        conn: a connection from :func:`connect`.
        strategy: ``strategy_name``; checked against :data:`STRATEGY_RE`.

    Returns:
        Columns ``strategy_name, i, v, rank (int64), date (datetime.date)``, sorted
        by rank; empty (same columns) when the strategy has no rows.
    """
    validate_strategy(strategy)
    try:
        with conn.cursor() as cur:
            cur.execute(_READ_GLOBALTRUST, {"s": strategy})
            records = cur.fetchall()
    except psycopg.Error as exc:
        problem = problem_of(conn, exc)
        raise PgError(f"reading {GLOBALTRUST} failed ({where(conn)}): {problem}") from None
    frame = pd.DataFrame.from_records(records, columns=list(TRUST_COLUMNS))
    return frame.astype(
        {"strategy_name": object, "i": object, "v": np.float64, "rank": np.int64, "date": object}
    )


def read_feed(conn: psycopg.Connection[Any], strategy: str) -> pd.DataFrame:
    """One strategy's feed rows, sorted by ``v`` desc then ``post_id`` (code point)."""
    validate_strategy(strategy)
    query = sql.SQL(
        'SELECT strategy_name, post_id, v FROM {} WHERE strategy_name = %s ORDER BY v DESC, post_id COLLATE "C"'
    ).format(sql.Identifier(FEED))
    try:
        with conn.cursor() as cur:
            cur.execute(query, (strategy,))
            records = cur.fetchall()
    except psycopg.Error as exc:
        problem = problem_of(conn, exc)
        raise PgError(f"reading {FEED} failed ({where(conn)}): {problem}") from None
    frame = pd.DataFrame.from_records(records, columns=list(FEED_COLUMNS))
    return frame.astype({"strategy_name": object, "post_id": object, "v": np.float64})
