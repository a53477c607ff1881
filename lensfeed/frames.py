"""The DataFrame engines of the features step: PySpark, or the same API on DuckDB.

The transforms (:mod:`lensfeed.features`) are written once against the PySpark
DataFrame API. Two engines run them:

- ``duckdb`` (the default): `sqlframe <https://github.com/eakmanrq/sqlframe>`_
  translates the DataFrame API to SQL for an in-process DuckDB. No JVM, no
  server: the right engine for one machine and a few million rows;
- ``spark``: PySpark on ``local[*]``, a standalone master or a Spark Connect
  server (:mod:`lensfeed.spark`), for a cluster.

``FEATURES_ENGINE`` chooses (``duckdb`` | ``spark``). Everything that differs
between the two lives in this module and nowhere else: which ``functions``
module and ``Window`` build a frame's expressions (:func:`api`), sessions,
reading Parquet and Arrow into a frame, column types, and streaming a sorted
frame out as Arrow record batches. DuckDB settings come from the environment:
``DUCKDB_THREADS`` (default: every core) and ``DUCKDB_MEMORY_LIMIT`` (DuckDB's
syntax, e.g. ``4GB``; default: DuckDB's 80 % of RAM). DuckDB spills to a
private directory under the temporary directory, removed when the session closes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lensfeed import parquet

ENGINE_VARIABLE = "FEATURES_ENGINE"
ENGINES = ("duckdb", "spark")
DEFAULT_ENGINE = "duckdb"

#: Any DataFrame or session of either engine (their classes share no base).
Frame = Any
Session = Any

_names = itertools.count()


def engine_name(value: str | None = None) -> str:
    """The engine to use: ``value``, else ``$FEATURES_ENGINE``, else ``duckdb``.

    Raises:
        ValueError: an unknown engine, naming the accepted ones.
    """
    name = (value if value is not None else os.environ.get(ENGINE_VARIABLE, "")).strip().lower()
    name = name or DEFAULT_ENGINE
    if name not in ENGINES:
        raise ValueError(
            f"{ENGINE_VARIABLE}={name!r} is not a features engine; use one of {', '.join(ENGINES)}"
        )
    return name


@dataclass(frozen=True)
class Api:
    """The expression builders of one engine: ``api.F.col(...)``, ``api.Window``."""

    engine: str
    F: ModuleType
    Window: Any
    types: ModuleType


def _is_duckdb(obj: Any) -> bool:
    return type(obj).__module__.startswith("sqlframe.")


def api(obj: Frame | Session) -> Api:
    """The expression builders for a frame's (or a session's) engine."""
    if _is_duckdb(obj):
        from sqlframe.duckdb import Window, functions, types

        return Api("duckdb", functions, Window, types)
    from pyspark.sql import Window as SparkWindow
    from pyspark.sql import functions as spark_functions
    from pyspark.sql import types as spark_types

    return Api("spark", spark_functions, SparkWindow, spark_types)


# ---------------------------------------------------------------------------
# sessions


def _duckdb_settings() -> dict[str, str]:
    settings = {"preserve_insertion_order": "false"}
    threads = os.environ.get("DUCKDB_THREADS", "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"DUCKDB_THREADS={threads!r} is not a positive integer")
        settings["threads"] = threads
    memory = os.environ.get("DUCKDB_MEMORY_LIMIT", "").strip()
    if memory:
        settings["memory_limit"] = memory
    return settings


def duckdb_session() -> Session:
    """A sqlframe session on a fresh in-memory DuckDB, in UTC, spilling to a private folder."""
    import duckdb
    from sqlframe.base.session import _BaseSession
    from sqlframe.duckdb import DuckDBSession

    spill = tempfile.mkdtemp(prefix="duckdb-spill-")
    try:
        conn = duckdb.connect(config={**_duckdb_settings(), "temp_directory": spill})
        conn.execute("SET TimeZone = 'UTC'")
    except BaseException:
        shutil.rmtree(spill, ignore_errors=True)
        raise
    # sqlframe keeps one session per process and ignores a new connection once it
    # has one: forget it, so that every call gets its own connection and settings
    _BaseSession._instance = None
    session = DuckDBSession(conn=conn)
    session._lensfeed_spill = spill  # type: ignore[attr-defined]
    return session


def open_session(app: str, engine: str | None = None) -> Session:
    """Open a session of ``engine`` (None: ``$FEATURES_ENGINE``, else DuckDB).

    A Spark session follows :func:`lensfeed.spark.spark_session` (``SPARK_REMOTE``,
    ``SPARK_MASTER`` ...).
    """
    if engine_name(engine) == "duckdb":
        return duckdb_session()
    from lensfeed.spark import spark_session

    return spark_session(app)


def close_session(session: Session) -> None:
    """Stop a session opened by :func:`open_session` and free what it holds."""
    if _is_duckdb(session):
        from sqlframe.base.session import _BaseSession

        session._conn.close()
        if _BaseSession._instance is session:
            _BaseSession._instance = None
        shutil.rmtree(getattr(session, "_lensfeed_spill", ""), ignore_errors=True)
    else:
        session.stop()


@contextlib.contextmanager
def session_scope(app: str, given: Session | None = None) -> Iterator[Session]:
    """``given`` as is (a caller's session, e.g. a test's), else a session of
    ``$FEATURES_ENGINE`` opened here and closed on the way out."""
    if given is not None:
        yield given
        return
    session = open_session(app)
    try:
        yield session
    finally:
        close_session(session)


# ---------------------------------------------------------------------------
# reading


def _spark_type(kind: pa.DataType, types: ModuleType) -> Any:
    if pa.types.is_struct(kind):
        return struct_type(pa.schema(list(kind)), types)
    if pa.types.is_timestamp(kind):
        return types.TimestampType()
    simple = {
        pa.string(): types.StringType,
        pa.large_string(): types.StringType,
        pa.bool_(): types.BooleanType,
        pa.int64(): types.LongType,
        pa.int32(): types.IntegerType,
        pa.float64(): types.DoubleType,
        pa.float32(): types.FloatType,
        pa.date32(): types.DateType,
    }
    if kind not in simple:
        raise TypeError(f"no Spark type for the Arrow type {kind}")
    return simple[kind]()


def struct_type(schema: pa.Schema, types: ModuleType) -> Any:
    """The Spark ``StructType`` (of ``types``: PySpark's or sqlframe's) of an Arrow schema."""
    return types.StructType(
        [
            types.StructField(field.name, _spark_type(field.type, types), field.nullable)
            for field in schema
        ]
    )


def from_arrow(session: Session, table: pa.Table) -> Frame:
    """A frame holding ``table``'s rows, with its column names and types."""
    if not _is_duckdb(session):
        if table.num_rows == 0:
            return session.createDataFrame([], struct_type(table.schema, api(session).types))
        return session.createDataFrame(table)
    name = f"lensfeed_arrow_{os.getpid()}_{next(_names)}"
    cursor = session._conn.cursor()  # its own: a result pending on the session's does not block it
    try:
        cursor.register(f"{name}_view", table)
        cursor.execute(f'CREATE TABLE "{name}" AS SELECT * FROM "{name}_view"')
    finally:
        cursor.close()
    return session.table(name)


def _execute(session: Session, *statements: str) -> None:
    """Run statements on a cursor of their own (a result pending on the session's
    connection would otherwise block them); what they create is the database's."""
    cursor = session._conn.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


def _duckdb_statements(frame: Frame) -> tuple[list[str], str]:
    *before, query = frame.sql(
        dialect=frame.session.execution_dialect, optimize=False, pretty=False, as_list=True
    )
    return before, query


def view(frame: Frame) -> Frame:
    """``frame`` as a named view: the same rows, computed when used, a one-table plan.

    On DuckDB, sqlframe copies a frame's whole plan at every operation (tens of
    ms for a long one), so a long chain of transforms is cut into views; DuckDB
    still optimizes the query through them. On Spark it returns ``frame``.
    """
    if not _is_duckdb(frame):
        return frame
    session = frame.session
    before, query = _duckdb_statements(frame)
    name = f"lensfeed_view_{os.getpid()}_{next(_names)}"
    _execute(session, *before, f'CREATE VIEW "{name}" AS {query}')
    return session.table(name)


def materialize(frame: Frame) -> Frame:
    """``frame`` computed now and held by the engine, as Spark's ``localCheckpoint``.

    On DuckDB this also ends sqlframe's growing plan: every later operation on
    the result copies a one-table plan instead of the whole history of
    transforms before it (each copy of a long plan costs tens of ms).
    On Spark it returns ``frame`` unchanged: Spark plans lazily end to end.
    """
    if not _is_duckdb(frame):
        return frame
    session = frame.session
    name = f"lensfeed_step_{os.getpid()}_{next(_names)}"
    before, query = _duckdb_statements(frame)
    _execute(session, *before, f'CREATE TABLE "{name}" AS {query}')
    return session.table(name)


def _spark_path(path: Path) -> str:
    from lensfeed.spark import spark_path

    return spark_path(path)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _duckdb_scan(session: Session, pattern: list[str], options: str) -> Frame:
    """A view over ``read_parquet`` on DuckDB, as a one-table plan for sqlframe.

    sqlframe's own reader spells every column out with a cast and reads the
    schema twice; a view costs one catalog lookup and keeps later plans small.
    """
    name = f"lensfeed_scan_{os.getpid()}_{next(_names)}"
    files = ", ".join(_sql_text(item) for item in pattern)
    _execute(session, f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{files}], {options})')
    return session.table(name)


def read_parquet(session: Session, *paths: Path) -> Frame:
    """The rows of Parquet files (at least one), which share one schema.

    Only what the files hold: no column from ``key=value`` folders in the path.
    """
    if not paths:
        raise ValueError("read_parquet needs at least one file")
    if _is_duckdb(session):
        files = [str(path.absolute()) for path in paths]
        return _duckdb_scan(session, files, "hive_partitioning = false")
    return session.read.parquet(*[_spark_path(path) for path in paths])


def read_partitioned(session: Session, root: Path, key: str) -> Frame:
    """Every ``<root>/<key>=<value>/*.parquet``, plus ``key`` parsed as a UTC timestamp.

    The value must be an ISO 8601 time (``2024-05-01T01:00:00Z``).
    """
    folder = root.absolute()
    F = api(session).F
    if _is_duckdb(session):
        pattern = [str(folder / f"{key}=*" / "*.parquet")]
        frame = _duckdb_scan(
            session, pattern, "hive_partitioning = true, hive_types_autocast = false"
        )
    else:
        frame = session.read.parquet(_spark_path(folder))
    if column_types(frame).get(key) == "string":
        frame = frame.withColumn(key, F.to_timestamp(F.col(key)))
    return frame


def column_types(frame: Frame) -> dict[str, str]:
    """Column name -> Spark's simple type name (``string``, ``bigint``, ``timestamp`` ...)."""
    if _is_duckdb(frame):
        # as Spark spells them: no space after a comma in struct<a:string,b:bigint>
        return {
            field.name: field.dataType.simpleString().replace(", ", ",")
            for field in frame.schema.fields
        }
    return dict(frame.dtypes)


# ---------------------------------------------------------------------------
# writing


def _spark_parts(directory: Path) -> list[Path]:
    """Spark's output files in partition order (the order of a global sort)."""
    numbered = []
    for path in directory.glob("part-*.parquet"):
        match = re.match(r"part-(\d+)", path.name)
        if match is None:
            raise RuntimeError(f"unexpected Spark output file {path.name}")
        numbered.append((int(match.group(1)), path.name, path))
    return [path for _, _, path in sorted(numbered)]


def sorted_batches(
    frame: Frame, key: str, batch_rows: int, scratch: Path
) -> Iterator[pa.RecordBatch]:
    """The rows of ``frame`` ordered by ``key``, as Arrow record batches.

    DuckDB streams its sorted result. Spark writes the sorted frame to
    ``scratch`` (a folder its executors can write, removed afterwards) and the
    parts are read back in order, one batch in memory at a time.
    """
    ordered = frame.orderBy(key)
    if _is_duckdb(frame):
        yield from ordered.toArrow(batch_rows)
        return
    columns = list(frame.columns)
    try:
        ordered.write.mode("overwrite").parquet(_spark_path(scratch))
        for path in _spark_parts(scratch):
            yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_sorted(
    frame: Frame,
    target: Path,
    schema: pa.Schema,
    key: str,
    *,
    rows_per_part: int,
    row_group_rows: int,
    scratch: Path,
) -> list[Path]:
    """Write ``frame`` sorted by its unique ``key`` as ``<target>/part-NNNNN.parquet``.

    The engine sorts (:func:`sorted_batches`; Spark through ``scratch``, a folder
    under the output that its executors can write); the rows are then streamed
    in order into :func:`lensfeed.parquet.write_sorted`, so file names, row
    placement and bytes depend only on the rows, never on the engine.

    Raises:
        ValueError: ``rows_per_part`` is not a positive multiple of the row group size.
        RuntimeError: the rows are not sorted by a unique ``key``.
    """
    group_rows = parquet.check_part_size(rows_per_part, row_group_rows)
    batches = sorted_batches(frame.select(*schema.names), key, group_rows, scratch)
    return parquet.write_sorted(
        batches,
        target,
        schema,
        key,
        rows_per_part=rows_per_part,
        row_group_rows=row_group_rows,
    )
