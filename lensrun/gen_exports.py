"""The export objects a BigQuery export lands in GCS over ``[start, end]``, and the
writer of those objects (Parquet parts and each snapshot run's completion marker).

Semantics per table: see :mod:`lensrun.generate`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lensfeed.parquet import TABLE_OPTIONS
from lensfeed.schemas import FOLLOWERS, POSTS, PROFILES, STATS, conform_table
from lensfeed.snapshots import plan_markers
from lensrun.gen_history import FollowerHistory, Grid, ProfileHistory, stats_updates
from lensrun.gen_values import (
    HOUR,
    STREAM_POST_LAGS,
    STREAM_STAT_UPDATES,
    STREAM_UNFOLLOWS,
    Ints,
    check_range,
    column_us,
    seeded_rng,
)

EXPORT_MODES: dict[str, str] = {
    POSTS: "increment",
    STATS: "increment",
    PROFILES: "snapshot",
    FOLLOWERS: "snapshot",
}

_PARQUET_OPTIONS = TABLE_OPTIONS


@dataclass(frozen=True)
class ExportObject:
    """One object of a BigQuery export as it lands in GCS.

    ``name`` is ``<prefix>/<table>/<export_time:%Y%m%dT%H%M%SZ>-<part:012d>.parquet``
    (BigQuery numbers the files of one export with 12 digits); ``parts`` is how
    many parts that export run has.
    """

    table: str
    name: str
    export_time: datetime
    table_data: Any  # pyarrow.Table in the table's canonical schema
    parts: int = 1


def _objects(
    table_name: str, table: Any, export_time: datetime, prefix: str, max_rows: int
) -> list[ExportObject]:
    stamp = export_time.strftime("%Y%m%dT%H%M%SZ")
    parts = max(1, -(-table.num_rows // max_rows))
    return [
        ExportObject(
            table=table_name,
            name=f"{prefix}/{table_name}/{stamp}-{part:012d}.parquet",
            export_time=export_time,
            table_data=table.slice(part * max_rows, max_rows),
            parts=parts,
        )
        for part in range(parts)
    ]


def _increment_objects(
    table_name: str, table: Any, ticks: Ints, grid: Grid, prefix: str, max_rows: int
) -> list[ExportObject]:
    order = np.argsort(ticks, kind="stable")
    ordered = table.take(pa.array(order))
    sorted_ticks = ticks[order]
    values, first = np.unique(sorted_ticks, return_index=True)
    bounds = [*first.tolist(), len(sorted_ticks)]
    objects = []
    for i, tick in enumerate(values.tolist()):
        chunk = ordered.slice(bounds[i], bounds[i + 1] - bounds[i])
        objects += _objects(table_name, chunk, grid.time(tick), prefix, max_rows)
    return objects


def _snapshot_objects(
    rng: np.random.Generator,
    dataset: Mapping[str, Any],
    grid: Grid,
    every_ticks: int,
    prefix: str,
    max_rows: int,
) -> list[ExportObject]:
    ticks = sorted({*range(0, grid.last_tick, every_ticks), grid.last_tick})
    profiles = ProfileHistory(dataset[PROFILES])
    followers = FollowerHistory(rng, dataset, grid)
    objects = []
    for tick in ticks:
        moment = grid.time(tick)
        if tick == grid.last_tick:  # the state at end is the dataset itself
            profile_state, follower_state = dataset[PROFILES], dataset[FOLLOWERS]
        else:
            moment_us = grid.start_us + tick * grid.interval_us
            profile_state, follower_state = profiles.at(moment_us), followers.at(moment_us)
        objects += _objects(PROFILES, profile_state, moment, prefix, max_rows)
        objects += _objects(FOLLOWERS, follower_state, moment, prefix, max_rows)
    return objects


def plan_exports(
    dataset: Mapping[str, Any],
    start: datetime,
    end: datetime,
    objects_per_hour: int,
    seed: int,
    *,
    prefix: str = "lens",
    snapshot_every_hours: int = 24,
    max_rows_per_object: int = 1_000_000,
) -> list[ExportObject]:
    """Cut a dataset into the export objects that would land in GCS over ``[start, end]``.

    Semantics per table: see the module docstring (posts and stats are
    increments, profiles and followers are full snapshots).

    Args:
        dataset: the four tables, e.g. from :func:`generate_dataset`.
        start, end: aware datetimes bounding the export ticks.
        objects_per_hour: export ticks per hour; must divide 3600.
        seed: seeds the arrival lags, stats updates and unfollowed edges.
        prefix: first component of every object name.
        snapshot_every_hours: period of the full snapshots of profiles and followers.
        max_rows_per_object: larger exports of one tick are split into parts.

    Returns:
        The export objects ordered by export time, then table, then name.
    """
    if objects_per_hour < 1 or 3600 % objects_per_hour:
        raise ValueError(f"objects_per_hour must divide 3600, got {objects_per_hour}")
    if snapshot_every_hours < 1 or max_rows_per_object < 1:
        raise ValueError("snapshot_every_hours and max_rows_per_object must be >= 1")
    if not prefix or prefix.startswith("/") or ".." in PurePosixPath(prefix).parts:
        raise ValueError(f"prefix must be a relative path, got {prefix!r}")
    start_us, end_us = check_range(start, end)
    interval_us = HOUR // objects_per_hour
    grid = Grid(start_us, end_us, interval_us, -((start_us - end_us) // interval_us))
    tables = {name: conform_table(name, dataset[name]) for name in EXPORT_MODES}

    post_ticks = grid.arrival_ticks(
        seeded_rng(seed, STREAM_POST_LAGS), column_us(tables[POSTS], "block_timestamp")
    )
    objects = _increment_objects(
        POSTS, tables[POSTS], post_ticks, grid, prefix, max_rows_per_object
    )
    updates, update_ticks = stats_updates(seeded_rng(seed, STREAM_STAT_UPDATES), tables, grid)
    objects += _increment_objects(STATS, updates, update_ticks, grid, prefix, max_rows_per_object)
    objects += _snapshot_objects(
        seeded_rng(seed, STREAM_UNFOLLOWS),
        tables,
        grid,
        snapshot_every_hours * objects_per_hour,
        prefix,
        max_rows_per_object,
    )
    table_order = {name: i for i, name in enumerate(EXPORT_MODES)}
    return sorted(objects, key=lambda o: (o.export_time, table_order[o.table], o.name))


def write_exports(objects: Sequence[ExportObject], directory: str | os.PathLike[str]) -> list[Path]:
    """Write export objects as Parquet files under ``directory``, one per object.

    The writer options are pinned and schema metadata is cleared, so the same
    objects give byte-identical files (with the same pyarrow version). Each file
    is written to a temporary name and renamed, so a reader never sees half a file.
    Right after the last part of a snapshot run whose parts are all in
    ``objects``, the run's completion marker is written.

    Returns:
        The paths written, in write order: ``objects``' order, each marker after its run.
    """
    root = Path(directory)
    markers = {max(m.members): m for m in plan_markers(objects)}
    paths = []
    for i, obj in enumerate(objects):
        path = _export_path(root, obj.name)
        partial = path.with_name(path.name + ".partial")
        pq.write_table(obj.table_data.replace_schema_metadata(None), partial, **_PARQUET_OPTIONS)
        partial.replace(path)
        paths.append(path)
        if i in markers:
            path = _export_path(root, markers[i].name)
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(markers[i].data)
            partial.replace(path)
            paths.append(path)
    return paths


def _export_path(root: Path, name: str) -> Path:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"object name must be a relative path, got {name!r}")
    path = root.joinpath(*relative.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
