"""Bulk loading: ``COPY FROM STDIN`` in binary format, inside one locked transaction.

A replace runs in one transaction (:func:`run_atomically`) whose first statement
takes the advisory lock of each strategy it writes (:func:`lock_loads`, one key
per table and strategy: :func:`load_lock_key`), so two replaces of one strategy
serialise and different strategies never wait for each other. The rows go in
with :func:`copy_columns`: Arrow builds the binary tuples a slice at a time.
A failure anywhere, including the server dying mid-``COPY``, rolls back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from lensfeed.pg.connection import PgError, problem_of, where

# Takes the load locks of a sorted key list in order (unnest keeps array order), in one
# statement: a transaction locking several strategies cannot deadlock with another.
_LOCK_LOADS = sql.SQL("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k")


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


def lock_loads(cur: psycopg.Cursor[Any], table: str, strategies: Iterable[str]) -> None:
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


def copy_columns(
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


def run_atomically(
    conn: psycopg.Connection[Any], what: str, kept: str, body: Callable[[psycopg.Cursor[Any]], None]
) -> None:
    stage = "write"
    try:
        with conn.transaction():
            with conn.cursor() as cur:
                body(cur)
            stage = "commit"  # leaving the transaction block commits
    except psycopg.Error as exc:
        problem = problem_of(conn, exc)
        if stage == "commit":
            outcome = "the connection failed while committing: the outcome is unknown, re-run it"
        else:
            outcome = f"rolled back, {kept}"
        raise PgError(f"{what} failed ({where(conn)}), {outcome}: {problem}") from None
