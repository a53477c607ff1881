"""The current state of the post and stats increments, kept per tick and merged daily.

Every ingest tick adds a ``dtime=<T>`` partition per table; the features need
the newest row per key over all of them (:func:`lensfeed.features.current_posts`,
:func:`~lensfeed.features.current_stats`). Re-deduplicating every partition
ever ingested at every tick costs time in proportion to the whole history.
Two repos keep that work in proportion to what changed, through Pachyderm's
datum reuse alone (no pipeline reads its own output):

``compact`` (pipeline ``compact``, a ``group`` input: one datum per ingest
tick, holding that tick's partition of each table). Grain: one file set per
(table, tick): ``/<table>/dtime=<T>/part-NNNNN.parquet``, the newest row per
key of the partition, only the columns the features read plus ``dtime``,
sorted by key. A tick is compacted once: its datum is skipped at every later
tick, and its files stay byte for byte.

``history`` (pipeline ``history``, reading ``compact`` through a branch
triggered ``@daily``). Grain: one file set per table,
``/<table>/part-NNNNN.parquet``, the newest row per key over every tick
compacted at the last trigger, sorted by key; ``/parts.json``, the SHA-256 of
each tick's files it merged.

The features read both: the history, plus the compacted ticks it does not
hold (:func:`current_state`), at most a day of them. Ticks whose files differ
from what the history merged (a re-ingested tick) make the history unusable,
and every tick is merged again. The result equals the deduplication of every
partition: the rules are the same and a total order, so merging in steps
changes nothing (tested).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from lensfeed import features as feat
from lensfeed.frames import (
    Frame,
    Session,
    from_arrow,
    materialize,
    read_parquet,
    read_partitioned,
    view,
    write_sorted,
)
from lensfeed.parquet import (
    DTIME,
    list_partitions,
    list_parts,
    parse_tick,
    partition_name,
)
from lensfeed.schemas import POSTS, STATS, TABLES, TIMESTAMP

PARTS_FILE = "parts.json"
#: Rows per file and per row group of the compacted files.
ROWS_PER_PART = 8 * feat.ROW_GROUP_ROWS


@dataclass(frozen=True)
class Table:
    """How one ingested table is reduced to its current state."""

    name: str
    key: str
    columns: tuple[str, ...]  # what the features read (``a.b``: a struct field)
    current: Callable[[Frame], Frame]

    @property
    def schema(self) -> pa.Schema:
        """The compacted files' schema: the columns read, in canonical order, plus ``dtime``."""
        wanted = {c.partition(".")[0] for c in self.columns}
        fields = [f for f in TABLES[self.name].schema if f.name in wanted]
        return pa.schema([*fields, pa.field(DTIME, TIMESTAMP)])


TABLES_KEPT = (
    Table(POSTS, "post_id", feat.POST_INPUT_COLUMNS, feat.current_posts),
    Table(STATS, "publication_id", feat.STATS_INPUT_COLUMNS, feat.current_stats),
)


def _write(frame: Frame, table: Table, target: Path, scratch: Path) -> list[Path]:
    return write_sorted(
        frame,
        target,
        table.schema,
        table.key,
        rows_per_part=ROWS_PER_PART,
        row_group_rows=feat.ROW_GROUP_ROWS,
        scratch=scratch,
    )


# ---------------------------------------------------------------------------
# reading the ingest repo


def _empty_table(session: Session, table: str) -> Frame:
    if table not in TABLES:
        raise ValueError(f"no partition under table directory {table!r} and no schema known for it")
    empty = TABLES[table].schema.empty_table()
    return from_arrow(
        session, empty.append_column(pa.field(DTIME, TIMESTAMP), pa.array([], TIMESTAMP))
    )


def read_partitions(session: Session, table_dir: str | Path) -> Frame:
    """Read every ``dtime=<T>/*.parquet`` of an ingested table.

    Args:
        session: a session of either engine (:mod:`lensfeed.frames`).
        table_dir: ``<input>/<table>``, named after the table (ingest's layout).

    Returns:
        The rows of all partitions plus ``dtime`` (timestamp, UTC) from the
        directory name. Without any Parquet file, an empty frame in the table's
        canonical schema (:mod:`lensfeed.schemas`) plus ``dtime``.

    Raises:
        ValueError: an entry of ``table_dir`` is not a partition.
    """
    root = Path(table_dir).absolute()
    partitions = list_partitions(root)  # fails early and clearly on a foreign entry
    if not any(list_parts(partition.path) for partition in partitions):
        return _empty_table(session, root.name)
    return read_partitioned(session, root, DTIME)


# ---------------------------------------------------------------------------
# compact: one tick


def compact_partition(session: Session, inputs: Mapping[str, Path], out: Path) -> str | None:
    """Compact one tick's partition of each table into ``out/<table>/dtime=<T>/``.

    Args:
        session: a session of either engine.
        inputs: table name -> ``<input>/<table>`` holding that tick's ``dtime=<T>``
            partition (a missing or empty folder: no rows that tick).
        out: the output root (``/pfs/out``).

    Returns:
        The tick's partition name (``2024-05-01T01:00:00Z``), or None when no
        table has a partition.

    Raises:
        ValueError: partitions of more than one tick, or a foreign entry.
        KeyError: a table lacks a column the features read.
    """
    found = {table.name: list_partitions(inputs[table.name]) for table in TABLES_KEPT}
    ticks = {partition.name for partitions in found.values() for partition in partitions}
    if not ticks:
        return None
    if len(ticks) > 1:
        raise ValueError(f"one datum must hold one tick's partitions, got {sorted(ticks)}")
    (tick,) = ticks
    for table in TABLES_KEPT:
        if not found[table.name]:
            continue
        rows = read_partitions(session, inputs[table.name])
        current = table.current(feat.project(rows, table.columns, table.name))
        target = out / table.name / partition_name(tick)
        _write(current, table, target, out / "_compact_spark")
    return tick


# ---------------------------------------------------------------------------
# reading the compacted ticks


def part_files(compact: Path, table: str) -> dict[str, list[Path]]:
    """Tick -> that tick's files of ``table`` in ``compact``, oldest tick first."""
    return {p.name: list_parts(p.path) for p in list_partitions(compact / table)}


def digest(paths: list[Path]) -> str:
    """SHA-256 over the names and bytes of ``paths``."""
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.name.encode() + b"\0")
        sha.update(path.read_bytes())
    return sha.hexdigest()


def _read_parts(session: Session, table: Table, files: list[Path]) -> Frame:
    if not files:
        return from_arrow(session, table.schema.empty_table())
    return read_parquet(session, *files)


# ---------------------------------------------------------------------------
# history: every tick, merged


def merge_history(session: Session, compact: Path, out: Path) -> dict[str, dict[str, str]]:
    """Merge every compacted tick of each table into ``out/<table>/``; write ``parts.json``.

    Returns:
        table -> tick -> digest of the tick's files, as written to ``parts.json``.
    """
    merged: dict[str, dict[str, str]] = {}
    for table in TABLES_KEPT:
        parts = part_files(compact, table.name)
        files = [path for paths in parts.values() for path in paths]
        current = table.current(_read_parts(session, table, files))
        _write(current, table, out / table.name, out / "_history_spark")
        merged[table.name] = {tick: digest(paths) for tick, paths in parts.items()}
    (out / PARTS_FILE).write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return merged


def _usable_history(
    history: Path | None, parts: Mapping[str, dict[str, list[Path]]]
) -> dict[str, Any] | None:
    """The history's ``parts.json`` if every tick it merged is still as compacted now
    (``parts``: table -> :func:`part_files`)."""
    if history is None or not (history / PARTS_FILE).is_file():
        return None
    merged: dict[str, dict[str, str]] = json.loads((history / PARTS_FILE).read_text())
    for table in TABLES_KEPT:
        parts_now = parts[table.name]
        for tick, value in merged.get(table.name, {}).items():
            if tick not in parts_now or digest(parts_now[tick]) != value:
                return None
    return merged


def _merge(table: Table, history: Frame, recent: Frame) -> Frame:
    """The current state of ``history`` plus ``recent`` (both possibly with repeats)."""
    fresh = materialize(table.current(recent))
    keys = fresh.select(table.key)
    kept = history.join(keys, on=table.key, how="left_anti")
    contested = history.join(keys, on=table.key, how="left_semi")
    winners = materialize(table.current(fresh.unionByName(contested)))
    return view(kept.unionByName(winners))


@dataclass(frozen=True)
class CurrentState:
    """What the features step reads: current posts and stats, and the newest tick."""

    posts: Frame
    stats: Frame
    feature_time: datetime | None
    recent: dict[str, list[str]]  # table -> ticks merged here, not from the history


def current_state(session: Session, compact: Path, history: Path | None) -> CurrentState:
    """The current posts and stats from the compacted ticks and, when usable, the history.

    ``feature_time`` is the newest compacted tick (None without any). The
    result never depends on whether or how much of the history is used.
    """
    listed = {table.name: part_files(compact, table.name) for table in TABLES_KEPT}
    merged = _usable_history(history, listed)
    frames: dict[str, Frame] = {}
    recent: dict[str, list[str]] = {}
    for table in TABLES_KEPT:
        parts = listed[table.name]
        held = (merged or {}).get(table.name, {})
        recent[table.name] = [tick for tick in parts if tick not in held]
        files = [path for tick in recent[table.name] for path in parts[tick]]
        rows = _read_parts(session, table, files)
        if merged is None or history is None:
            frames[table.name] = view(table.current(rows))
            continue
        past = _read_parts(session, table, list_parts(history / table.name))
        frames[table.name] = _merge(table, past, rows) if files else past
    ticks = sorted({tick for parts in listed.values() for tick in parts})
    newest = parse_tick(ticks[-1]) if ticks else None
    return CurrentState(frames[POSTS], frames[STATS], newest, recent)
