"""Parquet writer options shared by every stage, pinned so equal tables give equal bytes.

(Byte equality also needs the same pyarrow version: it writes its version into
each file, which the pinned requirements guarantee.)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: Options for ``pyarrow.parquet.write_table`` / ``ParquetWriter``.
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
#: The same with a fixed row-group size, for writers that do not chunk rows themselves.
TABLE_OPTIONS: dict[str, Any] = {**WRITER_OPTIONS, "row_group_size": 1 << 20}


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
                paths.append(target / f"part-{len(paths):05d}.parquet")
                writer = pq.ParquetWriter(paths[-1], schema, **options)
            writer.write_table(
                group.select(schema.names).cast(schema), row_group_size=group.num_rows
            )
    finally:
        if writer is not None:
            writer.close()
    if not paths:  # a well-formed empty snapshot rather than no file
        paths.append(target / "part-00000.parquet")
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
    ``min(row_group_rows, rows_per_part)`` rows, the pinned options above: file
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
