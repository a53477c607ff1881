"""How the tables changed over ``[start, end]``, for the export objects: the grid
of export ticks and when each change arrives on it, every exported state of a
publication's counters, the follow edges unfollowed before ``end``, and the
profiles and follow edges as they stood at any tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lensfeed.schemas import (
    DATASTREAM_METADATA,
    FOLLOWERS,
    FOLLOWERS_SPEC,
    POSTS,
    PROFILES,
    PROFILES_SPEC,
    STATS,
    STATS_SPEC,
)
from lensrun.gen_population import FINALISATION_DELAY
from lensrun.gen_values import (
    HOUR,
    SECOND,
    Bools,
    Ints,
    column_us,
    from_us,
    random_uuids,
    timestamps,
)

LATE_SHARE = 0.03
UNFOLLOW_SHARE = 0.03


@dataclass(frozen=True)
class Grid:
    """The export ticks ``start + k * interval``, k = 0 .. last_tick."""

    start_us: int
    end_us: int
    interval_us: int
    last_tick: int

    def time(self, tick: int) -> datetime:
        return from_us(self.start_us + tick * self.interval_us)

    def arrival_ticks(self, rng: np.random.Generator, event_us: Ints) -> Ints:
        """The first tick at or after each event's arrival (event time plus a lag)."""
        n = len(event_us)
        lag = rng.exponential(90 * SECOND, size=n)
        late = rng.random(n) < LATE_SHARE
        lag[late] = rng.uniform(1 * HOUR, 12 * HOUR, size=int(late.sum()))
        arrival = event_us + lag.astype(np.int64)
        ticks = -((self.start_us - arrival) // self.interval_us)
        return np.clip(ticks, 1, self.last_tick).astype(np.int64)


def stats_updates(
    rng: np.random.Generator, dataset: Mapping[str, Any], grid: Grid
) -> tuple[Any, Ints]:
    """Every exported state of every publication (creation, some updates, final) and its tick."""
    stats, posts = dataset[STATS], dataset[POSTS]
    n = stats.num_rows
    counters = (
        np.stack(
            [
                np.asarray(stats.column(name).to_numpy(), dtype=np.int64)
                for name in STATS_SPEC.columns[1:6]
            ],
            axis=1,
        )
        if n
        else np.zeros((0, 5), dtype=np.int64)
    )
    source_ms = pc.struct_field(stats.column("datastream_metadata"), "source_timestamp")
    final_us = (
        np.asarray(source_ms.fill_null(grid.end_us // 1000).to_numpy(), dtype=np.int64) * 1000
    )
    position = pc.index_in(stats.column("publication_id"), posts.column("post_id"))
    posted_us = column_us(posts, "block_timestamp")
    found = np.asarray(pc.is_valid(position).to_numpy(zero_copy_only=False), dtype=np.bool_)
    index = np.asarray(position.fill_null(0).to_numpy(), dtype=np.int64)
    created_us = np.where(found, posted_us[index] if len(posted_us) else 0, final_us)
    created_us = np.minimum(created_us, final_us)

    total = counters.sum(axis=1)
    middle = np.minimum(np.floor(np.log2(1.0 + total)), 4).astype(np.int64)
    rows = np.where(total > 0, 2 + middle, 1)
    owner = np.repeat(np.arange(n, dtype=np.int64), rows)
    first = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64) if n else rows
    rank = np.arange(len(owner), dtype=np.int64) - np.repeat(first, rows)
    is_final = rank == np.repeat(rows - 1, rows)
    share = rng.random(len(owner))
    share[rank == 0] = 0.0
    share[is_final] = 1.0
    share = share[np.lexsort((share, owner))]
    counts = np.floor(counters[owner] * share[:, None]).astype(np.int64)
    counts[is_final] = counters[owner[is_final]]
    moment = created_us[owner] + (share * (final_us - created_us)[owner]).astype(np.int64)
    moment[is_final] = final_us[owner[is_final]]

    ticks = grid.arrival_ticks(rng, moment)
    span = grid.last_tick + 1
    key = np.maximum.accumulate(owner * span + ticks)  # exports never go back in time
    ticks = key - owner * span
    keep = np.ones(len(key), dtype=np.bool_)
    keep[:-1] = key[1:] != key[:-1]  # one row per publication per export: its latest state

    datastream = stats.column("datastream_metadata").take(pa.array(owner[keep]))
    fresh = pa.StructArray.from_arrays(
        [random_uuids(rng, int(keep.sum())), pa.array(moment[keep] // 1000)],
        fields=list(DATASTREAM_METADATA),
    )
    datastream = pc.if_else(pa.array(is_final[keep]), datastream, fresh)
    arrays = [stats.column("publication_id").take(pa.array(owner[keep]))]
    arrays += [pa.array(counts[keep, i]) for i in range(5)]
    arrays.append(datastream)
    return pa.Table.from_arrays(arrays, schema=STATS_SPEC.schema), ticks[keep]


def _unfollowed_edges(
    rng: np.random.Generator, dataset: Mapping[str, Any], grid: Grid
) -> tuple[Any, Ints, Ints]:
    """Edges followed and unfollowed within the range: absent from the final state."""
    followers, profiles = dataset[FOLLOWERS], dataset[PROFILES]
    wanted = round(followers.num_rows * UNFOLLOW_SHARE)
    n_profiles = profiles.num_rows
    empty = (followers.slice(0, 0), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if wanted == 0 or n_profiles == 0:
        return empty
    wallets = pc.unique(followers.column("address"))
    profile_ids = profiles.column("profile_id")
    existing = np.asarray(
        pc.index_in(followers.column("address"), wallets).to_numpy(), dtype=np.int64
    ) * n_profiles + np.asarray(
        pc.index_in(followers.column("follow_profile_id"), profile_ids).fill_null(0).to_numpy(),
        dtype=np.int64,
    )
    source = rng.integers(0, len(wallets), size=wanted)
    picked = followers.column("follow_profile_id").take(
        pa.array(rng.integers(0, followers.num_rows, size=wanted))
    )
    target = np.asarray(pc.index_in(picked, profile_ids).fill_null(0).to_numpy(), dtype=np.int64)
    candidate = source * n_profiles + target
    first = np.sort(np.unique(candidate, return_index=True)[1])
    first = first[~np.isin(candidate[first], existing)]  # unfollowed edges are not current
    source, target = source[first], target[first]
    low = np.maximum(column_us(profiles, "block_timestamp")[target], grid.start_us)
    followed = low + (rng.random(len(source)) * np.maximum(grid.end_us - low, 0)).astype(np.int64)
    unfollowed = followed + (rng.random(len(source)) * (grid.end_us - followed)).astype(np.int64)
    table = pa.Table.from_arrays(
        [
            wallets.take(pa.array(source)),
            profile_ids.take(pa.array(target)),
            timestamps(followed),
            pa.array(np.ones(len(source), dtype=np.bool_)),
        ],
        schema=FOLLOWERS_SPEC.schema,
    )
    return table, followed, unfollowed


def _bools(table: Any, name: str) -> tuple[Bools, Bools]:
    """A boolean column as (values, validity) numpy arrays."""
    column = table.column(name)
    values = np.asarray(column.fill_null(False).to_numpy(), dtype=np.bool_)
    valid = np.asarray(pc.is_valid(column).to_numpy(), dtype=np.bool_)
    return values, valid


class ProfileHistory:
    """The profiles as they stood at a given time: those created by then, with the
    metadata timestamp hidden until it happens."""

    def __init__(self, profiles: Any) -> None:
        created = column_us(profiles, "block_timestamp")
        order = np.argsort(created, kind="stable")
        self.table = profiles.take(pa.array(order))
        self.created = created[order]
        self.metadata = column_us(self.table, "metadata_block_timestamp")
        self.has_metadata = np.asarray(
            pc.is_valid(self.table.column("metadata_block_timestamp")).to_numpy(), dtype=np.bool_
        )
        self.metadata_index = self.table.schema.get_field_index("metadata_block_timestamp")

    def at(self, moment_us: int) -> Any:
        count = int(np.searchsorted(self.created, moment_us, side="right"))
        valid = self.has_metadata[:count] & (self.metadata[:count] <= moment_us)
        return self.table.slice(0, count).set_column(
            self.metadata_index,
            PROFILES_SPEC.schema.field("metadata_block_timestamp"),
            timestamps(self.metadata[:count], valid),
        )


class FollowerHistory:
    """The follow edges alive at a given time: current edges followed by then, plus
    edges followed by then and unfollowed later; recent edges are not yet finalised."""

    def __init__(self, rng: np.random.Generator, dataset: Mapping[str, Any], grid: Grid) -> None:
        current = dataset[FOLLOWERS]
        created = column_us(current, "block_timestamp")
        order = np.argsort(created, kind="stable")
        self.current = current.take(pa.array(order))
        self.created = created[order]
        self.finalised, self.finalised_valid = _bools(self.current, "is_finalised_on_chain")
        self.gone, self.gone_created, self.gone_removed = _unfollowed_edges(rng, dataset, grid)
        self.index = FOLLOWERS_SPEC.schema.get_field_index("is_finalised_on_chain")
        self.delay_us = FINALISATION_DELAY // timedelta(microseconds=1)

    def _finalised(self, table: Any, created: Ints, values: Bools, valid: Bools, at: int) -> Any:
        pending = created > at - self.delay_us
        column = pa.array(values & ~pending, mask=~valid & ~pending)
        return table.set_column(self.index, FOLLOWERS_SPEC.schema.field(self.index), column)

    def at(self, moment_us: int) -> Any:
        count = int(np.searchsorted(self.created, moment_us, side="right"))
        current = self._finalised(
            self.current.slice(0, count),
            self.created[:count],
            self.finalised[:count],
            self.finalised_valid[:count],
            moment_us,
        )
        alive = (self.gone_created <= moment_us) & (self.gone_removed > moment_us)
        ones = np.ones(int(alive.sum()), dtype=np.bool_)
        gone = self._finalised(
            self.gone.filter(pa.array(alive)), self.gone_created[alive], ones, ones, moment_us
        )
        return pa.concat_tables([current, gone])
