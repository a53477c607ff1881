"""Deterministic Lens-shaped sample data and the export objects that carry it.

:func:`generate_dataset` builds the four source tables as they stand at ``end``
(one ``pyarrow.Table`` each, canonical schemas of :mod:`lensfeed.schemas`).
:func:`plan_exports` cuts them into the objects a BigQuery export would land in
GCS over ``[start, end]``, and :func:`write_exports` writes those as Parquet.

Export semantics, per table (``EXPORT_MODES``), on a grid of export ticks
``start + k * 3600 s / objects_per_hour``:

- ``public_profile_post``: **increments**. Each post is exported exactly once,
  in the first tick at or after it arrives (``block_timestamp`` plus a lag of
  about a minute; ``LATE_SHARE`` of the rows arrive 1 to 12 hours late). Rows
  that would arrive after the last tick are flushed in the last tick. Current
  state = union of all objects.
- ``public_publication_stats``: **increments of changed rows**. A publication's
  creation (all counters 0) and some of its later updates are exported; the
  changes that arrive within one tick collapse into the latest, so an object
  holds at most one row per publication. Counters and
  ``datastream_metadata.source_timestamp`` never decrease from one export of a
  publication to the next, and its last export equals its row in the dataset.
  Current state = for each ``publication_id``, its row in the newest object.
- ``public_profile`` and ``public_follower``: **full snapshots** every
  ``snapshot_every_hours`` from ``start`` (tick 0) and at the last tick, split
  into parts of at most ``max_rows_per_object`` rows; a snapshot with no rows is
  still written (one empty part). Current state = all parts of the newest
  snapshot; the last snapshot equals the dataset. Earlier follower snapshots
  also hold edges that were unfollowed before ``end`` (``UNFOLLOW_SHARE``), so a
  reader that unions snapshots instead of taking the newest one is caught.
  Each part knows its run's part count (``ExportObject.parts``); after a run's
  last part the exporter writes its completion marker
  ``<prefix>/<table>/<stamp>.complete.json``, ``{"parts": N}``
  (:mod:`lensfeed.snapshots`), which :func:`write_exports` writes too.

Rows stamped before ``start`` land in the first tick and rows after ``end`` in
the last one; the last snapshot is the dataset as given. Posts and their stats
arrive independently: a stats row can land before the post it counts.

Randomness comes only from ``numpy.random.Generator`` objects seeded from the
given seed, one independent stream per part; every step is vectorised.

This module is the entry point (``python -m lensrun generate``); the parts are
:mod:`lensrun.gen_population` (profiles, follow graph), :mod:`lensrun.gen_posts`
(posts, stats), :mod:`lensrun.gen_history` (export ticks and the changes over the
range), :mod:`lensrun.gen_exports` (export objects and their writer),
:mod:`lensrun.gen_values` (vectorised columns) and :mod:`lensrun.gen_vocabulary`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lensfeed.schemas import FOLLOWERS, POSTS, PROFILES, STATS
from lensrun.gen_exports import EXPORT_MODES, ExportObject, plan_exports, write_exports
from lensrun.gen_history import LATE_SHARE, UNFOLLOW_SHARE
from lensrun.gen_population import (
    BURNT_SHARE,
    FINALISATION_DELAY,
    MIN_PROFILES,
    OG_PROFILE_NUMBERS,
    default_profiles,
    generate_followers,
    generate_profiles,
)
from lensrun.gen_posts import (
    COMMENT_MIRROR_SHARE,
    DATA_AVAILABILITY_SHARE,
    ERROR_SHARE,
    FLAGGED_SHARE,
    GATED_SHARE,
    HIDDEN_SHARE,
    METADATA_UNPROCESSED_SHARE,
    MIRROR_SHARE,
    generate_posts,
    generate_stats,
)
from lensrun.gen_values import (
    STREAM_FOLLOWERS,
    STREAM_POSTS,
    STREAM_PROFILES,
    STREAM_STATS,
    Bools,
    Floats,
    Ints,
    check_range,
    hex_ids,
    seeded_rng,
)
from lensrun.gen_vocabulary import APPS, CONTENT_WARNINGS, LANGUAGES, MAIN_CONTENT_FOCUS, REGIONS

__all__ = [
    "APPS",
    "BURNT_SHARE",
    "COMMENT_MIRROR_SHARE",
    "CONTENT_WARNINGS",
    "DATA_AVAILABILITY_SHARE",
    "ERROR_SHARE",
    "EXPORT_MODES",
    "FINALISATION_DELAY",
    "FLAGGED_SHARE",
    "GATED_SHARE",
    "HIDDEN_SHARE",
    "LANGUAGES",
    "LATE_SHARE",
    "MAIN_CONTENT_FOCUS",
    "METADATA_UNPROCESSED_SHARE",
    "MIN_PROFILES",
    "MIRROR_SHARE",
    "OG_PROFILE_NUMBERS",
    "REGIONS",
    "UNFOLLOW_SHARE",
    "Bools",
    "ExportObject",
    "Floats",
    "Ints",
    "default_profiles",
    "generate_dataset",
    "hex_ids",
    "plan_exports",
    "write_exports",
]


def generate_dataset(
    n_posts: int,
    seed: int,
    start: datetime,
    end: datetime,
    n_profiles: int | None = None,
) -> dict[str, Any]:
    """Generate the four Lens source tables as they stand at ``end``.

    Args:
        n_posts: rows of ``public_profile_post`` (posts and mirrors).
        seed: seeds every random draw; the same arguments give the same tables.
        start, end: aware datetimes; posts are spread over ``[start, end)``,
            profiles and follows start up to a year earlier.
        n_profiles: profiles to create; :func:`default_profiles` when None.

    Returns:
        ``{table name: pyarrow.Table}`` in the canonical schemas: one row per
        profile, per (wallet, followed profile), per post, and per post in
        ``public_publication_stats`` (latest counters).

    Raises:
        ValueError: a negative ``n_posts``, too few profiles, naive or reversed
            datetimes, or a range outside what :func:`validate_table` accepts.
    """
    if n_posts < 0:
        raise ValueError(f"n_posts must be >= 0, got {n_posts}")
    n_profiles = default_profiles(n_posts) if n_profiles is None else n_profiles
    if n_profiles < MIN_PROFILES:
        raise ValueError(f"n_profiles must be >= {MIN_PROFILES}, got {n_profiles}")
    start_us, end_us = check_range(start, end)
    profiles = generate_profiles(seeded_rng(seed, STREAM_PROFILES), n_profiles, start_us, end_us)
    followers, in_degree = generate_followers(seeded_rng(seed, STREAM_FOLLOWERS), profiles, end_us)
    posts = generate_posts(seeded_rng(seed, STREAM_POSTS), profiles, n_posts, start_us, end_us)
    stats = generate_stats(seeded_rng(seed, STREAM_STATS), posts, in_degree, end_us)
    return {POSTS: posts.table, STATS: stats, PROFILES: profiles.table, FOLLOWERS: followers}
