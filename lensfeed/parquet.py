"""The repos' file contract: where files live and how Parquet is read and written.

Every stage reads and writes its repos through this module, so the layout is
stated once:

- partitions: ``<table>/dtime=<T>/``, ``<T>`` a tick's RFC 3339 name
  (:func:`tick_name`, ``2024-05-01T02:00:00Z``, as Pachyderm names cron ticks);
  entries starting with ``.`` or ``_`` are not partitions (as Spark reads them);
- part files: ``part-NNNNN.parquet`` (:func:`part_name`), read in name order;
- one file per repo elsewhere: :data:`FEATURES_DIR`, :data:`PREDICTIONS_FILE`,
  :data:`TRUST_FILE`, :data:`GLOBALTRUST_FILE`;
- Parquet bytes: one writer (:func:`write_table`, :func:`write_sorted`) with a
  named option set per repo, pinned so that equal tables give equal bytes, and
  one reader (:func:`read_table`, :func:`read_parts`).

(Byte equality also needs the same pyarrow version: it writes its version into
each file, which the pinned requirements guarantee.)
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# ---------------------------------------------------------------------------
# names

#: The partition column and folder key: ``dtime=<T>``.
DTIME = "dtime"
#: A tick's name: RFC 3339 in UTC, to the second.
TICK_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_PARTITION_PREFIX = f"{DTIME}="
#: The features repo's folder of part files.
FEATURES_DIR = "features"
#: The single file of the predict, trust and eigentrust repos.
PREDICTIONS_FILE = "predictions.parquet"
TRUST_FILE = "trust.parquet"
GLOBALTRUST_FILE = "globaltrust.parquet"


def tick_name(tick: datetime) -> str:
    """A tick's RFC 3339 name, as Pachyderm names cron files (``2024-05-01T02:00:00Z``)."""
    return tick.astimezone(UTC).strftime(TICK_FORMAT)


def parse_tick(name: str) -> datetime:
    """The tick a name from :func:`tick_name` stands for (aware, UTC).

    Raises:
        ValueError: ``name`` is not a tick name.
    """
    return datetime.strptime(name, TICK_FORMAT).replace(tzinfo=UTC)


def partition_name(tick: datetime | str) -> str:
    """The folder of a tick's partition: ``dtime=<T>`` (``tick`` a time or its name)."""
    return _PARTITION_PREFIX + (tick if isinstance(tick, str) else tick_name(tick))


def partition_path(table: str, tick: datetime, basename: str) -> str:
    """Where file ``basename`` of a tick's partition of ``table`` lives in a repo."""
    return f"/{table}/{partition_name(tick)}/{basename}"


def part_name(index: int) -> str:
    """The name of the ``index``-th part file: ``part-NNNNN.parquet``."""
    return f"part-{index:05d}.parquet"


def list_parts(directory: Path) -> list[Path]:
    """The Parquet files directly under ``directory``, in name order (none if absent)."""
    return sorted(directory.glob("*.parquet"))


@dataclass(frozen=True)
class Partition:
    """One ``dtime=<T>`` folder of a table: its tick and where it is."""

    tick: datetime
    path: Path

    @property
    def name(self) -> str:
        """The tick's name (``2024-05-01T02:00:00Z``)."""
        return tick_name(self.tick)


def _partition_tick(entry: Path) -> datetime | None:
    if not entry.is_dir() or not entry.name.startswith(_PARTITION_PREFIX):
        return None
    text = entry.name.removeprefix(_PARTITION_PREFIX)
    try:
        tick = parse_tick(text)
    except ValueError:
        return None
    return tick if tick_name(tick) == text else None


def list_partitions(table_dir: Path) -> list[Partition]:
    """The ``dtime=<T>`` partitions of one table, oldest first.

    Args:
        table_dir: ``<repo>/<table>``; a missing directory has no partitions.

    Raises:
        ValueError: an entry is not a ``dtime=<RFC 3339 UTC>`` directory
            (entries starting with ``.`` or ``_`` are ignored, as Spark does).
    """
    if not table_dir.is_dir():
        return []
    found = []
    for entry in sorted(table_dir.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        tick = _partition_tick(entry)
        if tick is None:
            raise ValueError(f"{entry}: not a dtime=<YYYY-MM-DDTHH:MM:SSZ> partition")
        found.append(Partition(tick, entry))
    return sorted(found, key=lambda partition: partition.tick)


# ---------------------------------------------------------------------------
# writer options, one set per repo

#: compact, history, features (``ParquetWriter``, row groups chosen by the writer).
WRITER_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "data_page_size": 1 << 20,
    "store_schema": True,
    "write_page_index": False,
    "write_page_checksum": False,
}
#: ingest, and the simulated exporter's uploads: the same with a fixed row-group size.
TABLE_OPTIONS: dict[str, Any] = {**WRITER_OPTIONS, "row_group_size": 1 << 20}
#: predict: zstd level 3 with statistics, pyarrow's defaults otherwise.
PREDICTIONS_OPTIONS: Mapping[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "write_statistics": True,
}
#: trust, eigentrust: pyarrow's defaults.
SCORES_OPTIONS: Mapping[str, Any] = {}


# ---------------------------------------------------------------------------
# the writer


def write_table(table: pa.Table, where: Path | IO[bytes], options: Mapping[str, Any]) -> None:
    """Write ``table`` as Parquet with ``options`` and no schema metadata.

    No pandas metadata or timestamp is written, so equal tables give equal bytes.
    """
    pq.write_table(table.replace_schema_metadata(None), where, **options)


def parquet_bytes(table: pa.Table, options: Mapping[str, Any] = TABLE_OPTIONS) -> bytes:
    """:func:`write_table` into memory (by default with :data:`TABLE_OPTIONS`)."""
    sink = io.BytesIO()
    write_table(table, sink, options)
    return sink.getvalue()


def write_frame(
    frame: pd.DataFrame, schema: pa.Schema, path: Path, options: Mapping[str, Any]
) -> None:
    """:func:`write_table` of a pandas frame in ``schema`` (its index dropped)."""
    write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path, options)


def _regroup(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one fewer), whatever the batch sizes."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch = batch.slice(take)
            count += take
            if count == rows:
                yield pa.Table.from_batches(pending).combine_chunks()
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending).combine_chunks()


def _check_order(table: pa.Table, key: str, what: str, previous: Any) -> Any:
    """Raise unless ``key`` strictly increases (sorted and unique); the last value."""
    keys = table.column(key)
    if not len(keys):
        return previous
    if previous is not None and keys[0].as_py() <= previous:
        raise RuntimeError(f"{what} not sorted by unique {key} at {keys[0].as_py()!r}")
    if len(keys) > 1 and not pc.all(pc.less(keys[:-1], keys[1:])).as_py():
        raise RuntimeError(f"{what} not sorted by unique {key}")
    return keys[-1].as_py()


def _write_parts(
    groups: Iterable[pa.Table], target: Path, schema: pa.Schema, key: str, groups_per_part: int
) -> list[Path]:
    # a dictionary for every column but the unique key, which it would only slow down
    options = {**WRITER_OPTIONS, "use_dictionary": [n for n in schema.names if n != key]}
    paths: list[Path] = []
    writer: Any = None
    previous: Any = None
    try:
        for index, group in enumerate(groups):
            previous = _check_order(group, key, target.name, previous)
            if index % groups_per_part == 0:
                if writer is not None:
                    writer.close()
                paths.append(target / part_name(len(paths)))
                writer = pq.ParquetWriter(paths[-1], schema, **options)
            writer.write_table(
                group.select(schema.names).cast(schema), row_group_size=group.num_rows
            )
    finally:
        if writer is not None:
            writer.close()
    if not paths:  # a well-formed empty snapshot rather than no file
        paths.append(target / part_name(0))
        pq.write_table(schema.empty_table(), paths[0], **options)
    return paths


def check_part_size(rows_per_part: int, row_group_rows: int) -> int:
    """The row group size, ``min(row_group_rows, rows_per_part)``.

    Raises:
        ValueError: ``rows_per_part`` is not a positive multiple of it.
    """
    group_rows = min(row_group_rows, rows_per_part)
    if group_rows < 1 or rows_per_part % group_rows:
        raise ValueError(
            f"rows_per_part {rows_per_part} must be a positive multiple of {group_rows}"
        )
    return group_rows


def write_sorted(
    batches: Iterable[pa.RecordBatch],
    target: Path,
    schema: pa.Schema,
    key: str,
    *,
    rows_per_part: int,
    row_group_rows: int,
) -> list[Path]:
    """Write rows sorted by a unique ``key`` as ``<target>/part-NNNNN.parquet``.

    Files of exactly ``rows_per_part`` rows (the last fewer), row groups of
    ``min(row_group_rows, rows_per_part)`` rows, :data:`WRITER_OPTIONS`: file
    names, row placement and bytes depend only on the rows, never on how they
    were batched. Memory holds one row group. ``target`` is replaced; on any
    error it is removed, never left half written. No row gives one empty file.

    Returns:
        The files written, in order.

    Raises:
        ValueError: ``rows_per_part`` is not a positive multiple of the row group size.
        RuntimeError: the rows are not sorted by a unique ``key``.
    """
    group_rows = check_part_size(rows_per_part, row_group_rows)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        groups = _regroup(batches, group_rows)
        return _write_parts(groups, target, schema, key, rows_per_part // group_rows)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------
# the reader


def read_table(
    source: Path | bytes,
    *,
    columns: Sequence[str] | None = None,
    read_dictionary: Sequence[str] | None = None,
) -> pa.Table:
    """One Parquet file (a path, or its bytes) as an Arrow table.

    Args:
        source: the file, or its bytes.
        columns: only these columns (None: every one).
        read_dictionary: string columns to read dictionary-encoded, as Parquet stores them.
    """
    where = io.BytesIO(source) if isinstance(source, bytes) else source
    return pq.read_table(where, columns=columns, read_dictionary=read_dictionary)


def read_parts(
    paths: Sequence[Path],
    *,
    columns: Sequence[str] | None = None,
    read_dictionary: Sequence[str] | None = None,
    promote: bool = False,
) -> pa.Table:
    """Parquet files in the given order as one table (:func:`read_table` each).

    ``promote`` unifies schemas that differ (a column of nulls, another
    nullability); without it parts must share one schema.
    """
    tables = [read_table(p, columns=columns, read_dictionary=read_dictionary) for p in paths]
    return pa.concat_tables(tables, promote_options="default" if promote else "none")


def read_dataset(
    directory: Path, *, kind: str, read_dictionary: Sequence[str] | None = None
) -> pa.Table:
    """Every part under ``directory`` (:func:`list_parts`) as one table, schemas unified.

    Raises:
        FileNotFoundError: no part; the message calls the files ``<kind> files``.
    """
    parts = list_parts(directory)
    if not parts:
        raise FileNotFoundError(f"no *.parquet {kind} files under {directory}")
    return read_parts(parts, read_dictionary=read_dictionary, promote=True)


def read_frame(data: bytes) -> pd.DataFrame:
    """A Parquet file's bytes as a pandas frame (pandas' own reading of its types)."""
    return pd.read_parquet(io.BytesIO(data))
