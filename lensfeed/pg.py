"""The PostgreSQL side of the Lens feed: connect, schema, atomic replaces, the trust read.

Tables (the ts-lens layout, with NOT NULL added):

- ``globaltrust(strategy_name, i, v, date)``: one row per (strategy, date, profile),
  unique on ``(strategy_name, date, i)``; written by ``eigentrust``, read by ``trust``.
- ``feed(strategy_name, post_id, v)``: one row per (strategy, post), larger ``v`` is
  better; read by the feed server, written by ``feed``.
- ``feed_runs``: one row per successful feed replace (which commit, how many rows,
  from which input commits, the SHA-256 of ``feed.csv``).

Every write replaces exactly one strategy's rows (one date's, for ``globaltrust``)
in one transaction: lock, ``DELETE``, ``COPY FROM STDIN`` (binary format), commit.
A failure anywhere, including the server dying mid-``COPY``, rolls back and leaves
the previous rows.
Re-running a replace with the same rows is a no-op in effect (idempotent).

The transaction's first statement takes the strategy's advisory lock
(:func:`load_lock_key`, one key per table and strategy), so two replaces of one
strategy serialise: the later one waits for the earlier to commit, then deletes
its rows, and the table ends up holding exactly the rows of the last commit,
never the union of both (under READ COMMITTED an unlocked ``DELETE`` cannot see
rows another open transaction is inserting). Different strategies never wait
for each other.

SQL is parameterised; table names are module constants; strategy names are
checked against :data:`STRATEGY_RE`. Messages name host, port, database and user,
never the password.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.types.json import Jsonb

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

# Takes the load locks of a sorted key list in order (unnest keeps array order), in one
# statement: a transaction locking several strategies cannot deadlock with another.
_LOCK_LOADS = sql.SQL("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k")

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


class PgError(RuntimeError):
    """A PostgreSQL operation failed; the message never holds a password."""


# --- connection ---------------------------------------------------------------


def _conninfo(dsn: str) -> dict[str, Any]:
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(dsn))
    except psycopg.Error:
        # the parser's message quotes the DSN: never pass it on
        raise PgError("PGSQL_URL is not a valid libpq connection string or URL") from None


def describe_dsn(dsn: str) -> str:
    """``host=... port=... dbname=... user=...`` for messages: no password, no other options."""
    info = _conninfo(dsn)
    parts = [f"{key}={info[key]}" for key in ("host", "port", "dbname", "user") if info.get(key)]
    return " ".join(parts) or "libpq defaults"


def _secrets_of(dsn: str) -> list[str]:
    try:
        password = str(_conninfo(dsn).get("password") or "")
    except PgError:
        return []
    return [password, quote(password, safe="")] if password else []


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def connect(
    dsn: str,
    *,
    attempts: int = 5,
    backoff_s: float = 0.5,
    max_backoff_s: float = 8.0,
    connect_timeout_s: int = 10,
    sleep: Callable[[float], None] = time.sleep,
) -> psycopg.Connection[Any]:
    """Open an autocommit connection, retrying with exponential backoff.

    Args:
        dsn: a libpq URL or key=value string (``PGSQL_URL``).
        attempts: connection attempts before giving up (>= 1).
        backoff_s: wait after the first failure, doubled after each one.
        max_backoff_s: cap on one wait.
        connect_timeout_s: libpq ``connect_timeout`` of each attempt.
        sleep: the wait function (tests pass a fake).

    Returns:
        The connection, in autocommit mode: writes use explicit transactions.

    Raises:
        PgError: every attempt failed; names host and database, never the password.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    where = describe_dsn(dsn)
    secrets = _secrets_of(dsn)
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            return psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=connect_timeout_s,
                application_name="lensfeed",
            )
        except psycopg.Error as exc:
            problem = _scrub(str(exc).strip(), secrets)
            if attempt < attempts:
                wait = min(max_backoff_s, backoff_s * 2 ** (attempt - 1))
                _log.warning(
                    "PostgreSQL (%s) attempt %d/%d failed, retrying in %.1f s: %s",
                    where,
                    attempt,
                    attempts,
                    wait,
                    problem,
                )
                sleep(wait)
    raise PgError(f"cannot connect to PostgreSQL ({where}) after {attempts} attempts: {problem}")


def _connection_secrets(conn: psycopg.Connection[Any]) -> list[str]:
    try:
        password = conn.info.password or ""
    except Exception:  # a closed or broken connection may not answer
        return []
    return [password, quote(password, safe="")] if password else []


def _where(conn: psycopg.Connection[Any]) -> str:
    try:
        return f"host={conn.info.host} port={conn.info.port} dbname={conn.info.dbname}"
    except Exception:
        return "a closed connection"


# --- schema ---------------------------------------------------------------------


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
        problem = _scrub(str(exc).strip(), _connection_secrets(conn))
        raise PgError(f"cannot create the feed tables ({_where(conn)}): {problem}") from None


def validate_strategy(name: str) -> str:
    """Return ``name`` if it matches :data:`STRATEGY_RE`, else raise ValueError."""
    if not isinstance(name, str) or not STRATEGY_RE.fullmatch(name):
        raise ValueError(f"invalid strategy name {name!r}: must match {STRATEGY_RE.pattern}")
    return name


# --- frame checks -----------------------------------------------------------------


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


# --- atomic replaces ---------------------------------------------------------------


def load_lock_key(table: str, strategy: str) -> int:
    """The advisory-lock key that serialises replaces of ``table``'s rows of ``strategy``.

    The first 8 bytes of ``sha256("lensfeed:<table>:<strategy>")`` as a signed
    big-endian int64: the same in every process and every PostgreSQL version. Another
    writer of these tables takes the same lock in SQL with::

        pg_advisory_xact_lock(('x' || left(encode(sha256(convert_to(
            'lensfeed:feed:' || strategy_name, 'UTF8')), 'hex'), 16))::bit(64)::bigint)
    """
    digest = hashlib.sha256(f"lensfeed:{table}:{strategy}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_loads(cur: psycopg.Cursor[Any], table: str, strategies: Iterable[str]) -> None:
    """Wait for, then hold until commit or rollback, the load locks of these strategies."""
    keys = sorted({load_lock_key(table, s) for s in strategies})
    cur.execute(_LOCK_LOADS, (keys,))


#: COPY's binary format: the signature, no flags, no header extension; the trailer.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER = b"\xff\xff"
#: PostgreSQL counts dates from 2000-01-01, Arrow's ``date32`` from 1970-01-01.
_PG_EPOCH_DAYS = 10_957
#: Rows per COPY slice (a few MB).
_COPY_ROWS = 65_536


def _packed(fields: list[tuple[str, Any]], rows: int) -> pa.Array:
    """Fixed-width fields (NumPy dtype, per-row array or constant) side by side in each
    row, without padding, as an Arrow binary array of ``rows`` values."""
    layout = np.dtype([(f"f{i}", dtype) for i, (dtype, _) in enumerate(fields)])
    record = np.empty(rows, dtype=layout)
    for i, (_, value) in enumerate(fields):
        record[f"f{i}"] = value
    packed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(layout.itemsize), rows, [None, pa.py_buffer(record)]
    )
    return packed.cast(pa.binary())


def _binary_tuples(values: tuple[pa.Array | pa.Scalar, ...], start: int, rows: int) -> pa.Array:
    """Rows ``start`` to ``start + rows`` in COPY's binary format, one value per row.

    Each tuple is the field count, then per field its byte length and its bytes
    (network order): Arrow joins the per-row pieces, strings go through as they
    are (no escaping) and floats bit for bit (no text round trip).

    Raises:
        TypeError: a column type this writer does not handle.
    """
    parts: list[pa.Array] = []
    fixed: list[tuple[str, Any]] = [(">i2", len(values))]
    for value in values:
        if isinstance(value, pa.Scalar):  # a string, the same on every row
            raw = str(value.as_py()).encode()
            fixed.append((">i4", len(raw)))
            if raw:
                fixed.append((f"S{len(raw)}", raw))
            continue
        column = value.slice(start, rows)
        if pa.types.is_string(column.type):
            fixed.append((">i4", pc.binary_length(column).to_numpy(zero_copy_only=False)))
            parts += [_packed(fixed, rows), column.cast(pa.binary())]
            fixed = []
        elif pa.types.is_float64(column.type):
            fixed += [(">i4", 8), (">f8", column.to_numpy(zero_copy_only=False))]
        elif pa.types.is_date32(column.type):
            days = column.cast(pa.int32()).to_numpy(zero_copy_only=False)
            fixed += [(">i4", 4), (">i4", days - _PG_EPOCH_DAYS)]
        else:
            raise TypeError(f"COPY: no binary writer for {column.type}")
    if fixed:
        parts.append(_packed(fixed, rows))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, b"")


def _copy_columns(
    cur: psycopg.Cursor[Any],
    table: str,
    columns: tuple[str, ...],
    values: tuple[pa.Array | pa.Scalar, ...],
) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT binary)`` of non-null columns.

    Columns are Arrow ``string``, ``float64`` or ``date32`` arrays, or a string
    scalar that repeats. Arrow builds the tuples a slice of rows at a time (no
    Python object per row) and each slice goes out as one write, so the server
    parses one slice while the next is built. Binary rather than text: the
    server does not parse floats or scan for delimiters and escapes, and the
    values arrive bit for bit.

    Raises:
        ValueError: a column holds nulls (nothing is sent; callers check earlier).
        TypeError: a column of another type.
    """
    for name, value in zip(columns, values, strict=True):
        if isinstance(value, pa.Array) and value.null_count:
            raise ValueError(f"COPY {table}: column {name} holds nulls")
    rows = max((len(v) for v in values if isinstance(v, pa.Array)), default=0)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(statement) as copy:
        copy.write(_BINARY_HEADER)
        for start in range(0, rows, _COPY_ROWS):
            tuples = _binary_tuples(values, start, min(_COPY_ROWS, rows - start))
            offsets = np.frombuffer(
                tuples.buffers()[1], dtype=np.int32, count=len(tuples) + 1, offset=tuples.offset * 4
            )
            copy.write(memoryview(tuples.buffers()[2])[int(offsets[0]) : int(offsets[-1])])
        copy.write(_BINARY_TRAILER)


def _run_atomically(
    conn: psycopg.Connection[Any], what: str, kept: str, body: Callable[[psycopg.Cursor[Any]], None]
) -> None:
    stage = "write"
    try:
        with conn.transaction():
            with conn.cursor() as cur:
                body(cur)
            stage = "commit"  # leaving the transaction block commits
    except psycopg.Error as exc:
        problem = _scrub(str(exc).strip(), _connection_secrets(conn))
        if stage == "commit":
            outcome = "the connection failed while committing: the outcome is unknown, re-run it"
        else:
            outcome = f"rolled back, {kept}"
        raise PgError(f"{what} failed ({_where(conn)}), {outcome}: {problem}") from None


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
        _lock_loads(cur, FEED, [strategy])
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE strategy_name = %s").format(sql.Identifier(FEED)),
            (strategy,),
        )
        _copy_columns(cur, FEED, FEED_COLUMNS, (pa.scalar(strategy), post_ids, scores))
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
        _run_atomically(
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
        _lock_loads(cur, GLOBALTRUST, (strategy for strategy, _ in keys))
        delete = sql.SQL("DELETE FROM {} WHERE strategy_name = %s AND date = %s").format(
            sql.Identifier(GLOBALTRUST)
        )
        for key in keys:
            cur.execute(delete, key)
        _copy_columns(
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
    _run_atomically(conn, what, "the previous trust rows are kept", body)
    _log.info("globaltrust replaced: %d rows for %s", len(peers), keys)
    return len(peers)


# --- reads ------------------------------------------------------------------------------


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
        problem = _scrub(str(exc).strip(), _connection_secrets(conn))
        raise PgError(f"reading {GLOBALTRUST} failed ({_where(conn)}): {problem}") from None
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
        problem = _scrub(str(exc).strip(), _connection_secrets(conn))
        raise PgError(f"reading {FEED} failed ({_where(conn)}): {problem}") from None
    frame = pd.DataFrame.from_records(records, columns=list(FEED_COLUMNS))
    return frame.astype({"strategy_name": object, "post_id": object, "v": np.float64})
