"""The posts (``public_profile_post``: posts and mirrors by the simulated
profiles) and their counters as of ``end`` (``public_publication_stats``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lensfeed.schemas import DATASTREAM_METADATA, POSTS_SPEC, STATS_SPEC
from lensrun.gen_population import Profiles
from lensrun.gen_values import (
    DAY,
    Bools,
    Ints,
    categorical,
    group_starts,
    hex_ids,
    null_where,
    random_content_uris,
    random_uuids,
    text_pool,
    timestamps,
    tsvectors,
    weighted_draw,
    zipf_weights,
)
from lensrun.gen_vocabulary import (
    APPS,
    CONTENT_WARNINGS,
    LANGUAGES,
    MAIN_CONTENT_FOCUS,
    REGIONS,
    WORDS,
)

MIRROR_SHARE = 0.15
COMMENT_MIRROR_SHARE = 0.10  # of the mirrors: mirrors of a comment, not of a post
HIDDEN_SHARE = 0.01
GATED_SHARE = 0.02
FLAGGED_SHARE = 0.005
METADATA_UNPROCESSED_SHARE = 0.02
ERROR_SHARE = 0.003
DATA_AVAILABILITY_SHARE = 0.35


@dataclass(frozen=True)
class Posts:
    """The posts table and what the stats draw from it."""

    table: Any
    authors: Ints
    posted_us: Ints
    is_mirror: Bools
    mirror_target: Ints  # index of the mirrored post, -1 when not a mirror of a post


def _mirror_targets(rng: np.random.Generator, rows: Ints, pool: Ints) -> tuple[Ints, Bools]:
    """For each row, a row of ``pool`` that comes before it, biased to recent ones.

    Both arrays are sorted positions in time order. Returns the picks and whether
    the pool had any row before (where not, the pick is meaningless).
    """
    earlier = np.searchsorted(pool, rows)  # pool rows before each row
    pick = np.floor(earlier * rng.random(len(rows)) ** 0.3).astype(np.int64)
    pick = np.clip(pick, 0, np.maximum(earlier - 1, 0))
    targets: Ints = pool[pick] if len(pool) else np.zeros(len(rows), dtype=np.int64)
    return targets, earlier > 0


@dataclass(frozen=True)
class _Mirrors:
    """Which rows are mirrors and what each mirrors."""

    is_mirror: Bools
    post_target: Ints  # index of the mirrored post, -1 when not a mirror of a post
    comment_rows: Ints  # the mirrors of a comment
    comment_targets: Ints  # for each: the post right after the comment it mirrors


def _authors_and_times(
    rng: np.random.Generator, profiles: Profiles, n: int, start_us: int, end_us: int
) -> tuple[Ints, Ints]:
    """Each row's author and block time, in time order."""
    n_profiles = len(profiles.created_us)
    # few authors post a lot; the OG profiles post steadily
    weights = zipf_weights(rng, n_profiles, np.zeros(0, dtype=np.int64), 1.2, offset=10.0)
    weights[profiles.og] = weights.max() * 0.2
    authors = weighted_draw(rng, weights, n)
    low = np.maximum(profiles.created_us[authors], start_us)
    posted = low + (rng.random(n) * (end_us - low)).astype(np.int64)
    order = np.argsort(posted, kind="stable")
    return authors[order], posted[order]


def _publication_numbers(
    rng: np.random.Generator, profiles: Profiles, authors: Ints, start_us: int
) -> tuple[Ints, Bools]:
    """Each row's contract publication number and whether a gap comes right before it.

    Publication numbers increase per profile; the gaps are the profile's comments.
    """
    n = len(authors)
    by_author = np.argsort(authors, kind="stable")
    step = rng.geometric(0.6, size=n).astype(np.int64)
    cumulative = np.cumsum(step)
    starts = group_starts(authors[by_author])
    base = np.maximum.accumulate(np.where(starts, cumulative - step, 0)) if n else cumulative
    earlier_days = np.maximum(start_us - profiles.created_us, 0) / DAY
    prior = rng.poisson(0.3 * earlier_days).astype(np.int64)
    pub = np.empty(n, dtype=np.int64)
    pub[by_author] = prior[authors[by_author]] + cumulative - base
    gap_before = np.empty(n, dtype=np.bool_)
    gap_before[by_author] = step > 1
    return pub, gap_before


def _pick_mirrors(rng: np.random.Generator, gap_before: Bools) -> _Mirrors:
    """Which rows are mirrors, and of which earlier post or comment.

    A mirror with nothing earlier to mirror stays an original post.
    """
    n = len(gap_before)
    is_mirror = rng.random(n) < MIRROR_SHARE
    of_comment = is_mirror & (rng.random(n) < COMMENT_MIRROR_SHARE)
    originals = np.flatnonzero(~is_mirror)
    post_rows = np.flatnonzero(is_mirror & ~of_comment)
    post_targets, post_found = _mirror_targets(rng, post_rows, originals)
    comment_rows = np.flatnonzero(of_comment)
    comment_targets, comment_found = _mirror_targets(
        rng, comment_rows, np.flatnonzero(~is_mirror & gap_before)
    )
    is_mirror[post_rows[~post_found]] = False  # nothing earlier to mirror
    is_mirror[comment_rows[~comment_found]] = False
    post_rows, post_targets = post_rows[post_found], post_targets[post_found]
    comment_rows, comment_targets = comment_rows[comment_found], comment_targets[comment_found]
    mirror_target = np.full(n, -1, dtype=np.int64)
    mirror_target[post_rows] = post_targets
    return _Mirrors(is_mirror, mirror_target, comment_rows, comment_targets)


def _id_columns(profiles: Profiles, authors: Ints, pub: Ints, mirrors: _Mirrors) -> dict[str, Any]:
    """The id columns: the post's, its author's, its publication's and what it mirrors."""
    n = len(authors)
    profile_ids = profiles.ids.take(pa.array(authors))
    pub_ids = hex_ids(pub)
    post_ids = pc.binary_join_element_wise(profile_ids, pub_ids, "-")
    target = mirrors.post_target
    related_post = post_ids.take(pa.array(np.maximum(target, 0), mask=target < 0))
    comment_ids = pc.binary_join_element_wise(
        profiles.ids.take(pa.array(authors[mirrors.comment_targets])),
        hex_ids(pub[mirrors.comment_targets] - 1),
        "-",
    )
    comment_mask = np.zeros(n, dtype=np.bool_)
    comment_mask[mirrors.comment_rows] = True
    related_comment = pc.replace_with_mask(
        pa.nulls(n, type=pa.string()), pa.array(comment_mask), comment_ids
    )
    return {
        "post_id": post_ids,
        "profile_id": profile_ids,
        "contract_publication_id": pub_ids,
        "is_related_to_post": related_post,
        "is_related_to_comment": related_comment,
    }


def _metadata_columns(
    rng: np.random.Generator, mirror_target: Ints
) -> tuple[Bools, dict[str, Any]]:
    """Which rows have an error, and the content metadata columns.

    A mirror shows the metadata of the post it mirrors.
    """
    n = len(mirror_target)
    has_error = rng.random(n) < ERROR_SHARE
    content_pool = pa.array(text_pool(rng, 512, WORDS, 3, 30))
    tags_pool = pa.array([*tsvectors(rng, 64), None])
    source = pa.array(np.where(mirror_target >= 0, mirror_target, np.arange(n)))
    metadata = {
        "content_uri": random_content_uris(rng, n),
        "language": categorical(rng, n, LANGUAGES),
        "region": categorical(rng, n, REGIONS),
        "content_warning": categorical(rng, n, CONTENT_WARNINGS),
        "main_content_focus": categorical(rng, n, MAIN_CONTENT_FOCUS),
        "tags_vector": tags_pool.take(
            pa.array(np.where(rng.random(n) < 0.75, 64, rng.integers(0, 64, size=n)))
        ),
        "content": null_where(content_pool.take(pa.array(rng.integers(0, 512, size=n))), has_error),
    }
    return has_error, {name: column.take(source) for name, column in metadata.items()}


def _posts_table(
    rng: np.random.Generator, posted: Ints, has_error: Bools, columns: dict[str, Any]
) -> Any:
    """The posts table: ``columns`` plus the flags, the app and the datastream metadata."""
    n = len(posted)
    delay_ms = rng.exponential(30_000, size=n).astype(np.int64)
    datastream = pa.StructArray.from_arrays(
        [random_uuids(rng, n), pa.array(posted // 1000 + delay_ms)],
        fields=list(DATASTREAM_METADATA),
    )
    columns = {
        **columns,
        "is_hidden": pa.array(rng.random(n) < HIDDEN_SHARE),
        "is_gated": pa.array(rng.random(n) < GATED_SHARE),
        "custom_filters_gardener_flagged": pa.array(rng.random(n) < FLAGGED_SHARE),
        "is_metadata_processed": pa.array(rng.random(n) >= METADATA_UNPROCESSED_SHARE),
        "has_error": pa.array(has_error),
        "is_data_availability": pa.array(rng.random(n) < DATA_AVAILABILITY_SHARE),
        "block_timestamp": timestamps(posted),
        "app_id": categorical(rng, n, APPS),
        "datastream_metadata": datastream,
    }
    return pa.Table.from_arrays(
        [columns[name] for name in POSTS_SPEC.columns], schema=POSTS_SPEC.schema
    )


def generate_posts(
    rng: np.random.Generator, profiles: Profiles, n_posts: int, start_us: int, end_us: int
) -> Posts:
    """public_profile_post: one row per post or mirror, in block_timestamp order."""
    authors, posted = _authors_and_times(rng, profiles, n_posts, start_us, end_us)
    pub, gap_before = _publication_numbers(rng, profiles, authors, start_us)
    mirrors = _pick_mirrors(rng, gap_before)
    ids = _id_columns(profiles, authors, pub, mirrors)
    has_error, metadata = _metadata_columns(rng, mirrors.post_target)
    table = _posts_table(rng, posted, has_error, {**ids, **metadata})
    return Posts(table, authors, posted, mirrors.is_mirror, mirrors.post_target)


def generate_stats(rng: np.random.Generator, posts: Posts, in_degree: Ints, end_us: int) -> Any:
    """public_publication_stats: one row per post with its counters as of ``end``."""
    n = len(posts.authors)
    boost = np.power(in_degree[posts.authors] + 1.0, 0.3)
    if n:
        boost /= boost.mean()
    age_days = (end_us - posts.posted_us) / DAY
    rate = np.exp(rng.normal(0.0, 1.8, size=n)) * boost * (1.0 - np.exp(-age_days))
    rate[posts.is_mirror] = 0.0
    mirrored = posts.mirror_target >= 0
    counters = {
        "total_amount_of_collects": rng.poisson(0.25 * rate),
        "total_amount_of_mirrors": rng.poisson(0.4 * rate)
        + np.bincount(posts.mirror_target[mirrored], minlength=n),
        "total_amount_of_comments": rng.poisson(0.6 * rate),
        "total_upvotes": rng.poisson(1.5 * rate),
        "total_downvotes": rng.poisson(0.05 * rate),
    }
    total = sum(counters.values())
    settle = rng.exponential(0.5 * DAY, size=n).astype(np.int64)
    updated = np.where(
        total > 0, posts.posted_us + np.minimum(settle, end_us - posts.posted_us), posts.posted_us
    )
    # the counters cannot have been updated before the mirrors they count
    np.maximum.at(updated, posts.mirror_target[mirrored], posts.posted_us[mirrored])
    datastream = pa.StructArray.from_arrays(
        [random_uuids(rng, n), pa.array(updated // 1000)], fields=list(DATASTREAM_METADATA)
    )
    arrays = [posts.table.column("post_id")]
    arrays += [pa.array(counters[name].astype(np.int64)) for name in STATS_SPEC.columns[1:6]]
    arrays.append(datastream)
    return pa.Table.from_arrays(arrays, schema=STATS_SPEC.schema)
