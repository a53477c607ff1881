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
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lensfeed.eigentrust import OG_HANDLES
from lensfeed.parquet import TABLE_OPTIONS
from lensfeed.schemas import (
    DATASTREAM_METADATA,
    FOLLOWERS,
    FOLLOWERS_SPEC,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    POSTS,
    POSTS_SPEC,
    PROFILES,
    PROFILES_SPEC,
    STATS,
    STATS_SPEC,
    TIMESTAMP,
    conform_table,
)
from lensfeed.snapshots import plan_markers

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

#: Where the "OG" pretrust handles (lensfeed.eigentrust.OG_HANDLES) go: early profile ids.
OG_PROFILE_NUMBERS: tuple[int, ...] = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0B, 0x0D)
MIN_PROFILES = 20

MIRROR_SHARE = 0.15
COMMENT_MIRROR_SHARE = 0.10  # of the mirrors: mirrors of a comment, not of a post
HIDDEN_SHARE = 0.01
GATED_SHARE = 0.02
FLAGGED_SHARE = 0.005
METADATA_UNPROCESSED_SHARE = 0.02
ERROR_SHARE = 0.003
DATA_AVAILABILITY_SHARE = 0.35
BURNT_SHARE = 0.003
LATE_SHARE = 0.03
UNFOLLOW_SHARE = 0.03
FINALISATION_DELAY = timedelta(minutes=15)

# categorical distributions; ``None`` is the share of nulls
LANGUAGES: dict[str | None, float] = {
    None: 0.06,
    "en": 0.66,
    "es": 0.045,
    "zh": 0.04,
    "fr": 0.03,
    "pt": 0.028,
    "de": 0.025,
    "ja": 0.02,
    "ko": 0.018,
    "tr": 0.016,
    "ru": 0.014,
    "it": 0.01,
    "id": 0.008,
    "vi": 0.006,
    "hi": 0.005,
    # noise seen in the real column
    "und": 0.003,
    "EN": 0.0015,
    "en-US": 0.0015,
}
REGIONS: dict[str | None, float] = {
    None: 0.999,
    "US": 0.0004,
    "GB": 0.0002,
    "DE": 0.0002,
    "IN": 0.0001,
    "BR": 0.0001,
}
CONTENT_WARNINGS: dict[str | None, float] = {
    None: 0.9998,
    "NSFW": 0.0001,
    "SENSITIVE": 0.00006,
    "SPOILER": 0.00004,
}
MAIN_CONTENT_FOCUS: dict[str | None, float] = {
    "TEXT_ONLY": 0.55,
    "IMAGE": 0.30,
    "VIDEO": 0.06,
    "ARTICLE": 0.04,
    "LINK": 0.025,
    "AUDIO": 0.015,
    "EMBED": 0.01,
}
APPS: dict[str | None, float] = {
    None: 0.08,
    "lenster": 0.45,
    "orb": 0.15,
    "phaver": 0.12,
    "hey": 0.06,
    "lenstube": 0.06,
    "buttrfly": 0.04,
    "lensport": 0.04,
}
EXPORT_MODES: dict[str, str] = {
    POSTS: "increment",
    STATS: "increment",
    PROFILES: "snapshot",
    FOLLOWERS: "snapshot",
}

_STEMS = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "nia",
    "olivia",
    "peggy",
    "quinn",
    "rupert",
    "sybil",
    "trent",
    "ursula",
    "victor",
    "walter",
    "xena",
    "yara",
    "zoe",
    "degen",
    "anon",
    "builder",
    "punk",
    "ape",
    "frog",
    "moon",
    "sun",
    "river",
    "ocean",
    "forest",
    "stone",
    "pixel",
    "byte",
    "node",
    "chain",
    "block",
    "vault",
    "lens",
    "garden",
    "bloom",
    "echo",
    "nova",
    "orbit",
    "pulse",
    "quartz",
    "raven",
    "sage",
    "tango",
    "umber",
    "velvet",
    "willow",
    "zephyr",
    "maker",
    "poet",
    "chef",
    "runner",
    "dreamer",
]
_WORDS = [
    "gm",
    "lens",
    "web3",
    "building",
    "shipping",
    "today",
    "new",
    "post",
    "onchain",
    "social",
    "graph",
    "frens",
    "wagmi",
    "community",
    "collect",
    "mirror",
    "art",
    "music",
    "photo",
    "thread",
    "thoughts",
    "protocol",
    "decentralised",
    "open",
    "source",
    "launch",
    "update",
    "week",
    "coffee",
    "morning",
    "hello",
    "world",
    "nft",
    "zk",
    "rollup",
    "polygon",
    "aave",
    "grants",
    "hackathon",
    "demo",
    "feedback",
    "idea",
    "love",
    "great",
]
_TAGS = ["lens", "web3", "defi", "nft", "art", "music", "photography", "dev", "zk", "gm"]

_US = 1
_SECOND = 1_000_000 * _US
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_BASE32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)

# one independent random stream per part, so that a change in one part does not
# shift the numbers of another
_STREAM_PROFILES, _STREAM_FOLLOWERS, _STREAM_POSTS, _STREAM_STATS = range(4)
_STREAM_POST_LAGS, _STREAM_STAT_UPDATES, _STREAM_UNFOLLOWS = range(100, 103)

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


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment.isoformat()} has no time zone; pass an aware datetime")
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _check_range(start: datetime, end: datetime) -> tuple[int, int]:
    start_us, end_us = _to_us(start), _to_us(end)
    if start_us >= end_us:
        raise ValueError(f"start {start.isoformat()} must be before end {end.isoformat()}")
    if start_us < _to_us(MIN_TIMESTAMP) + _DAY or end_us >= _to_us(MAX_TIMESTAMP):
        raise ValueError(
            f"the range must lie within ({MIN_TIMESTAMP.date()} + 1 day, {MAX_TIMESTAMP.date()})"
        )
    return start_us, end_us


def default_profiles(n_posts: int) -> int:
    """Profiles generated for ``n_posts`` posts when none is given (about 20 posts each)."""
    return max(100, min(n_posts // 20, 200_000))


# ---------------------------------------------------------------------------
# vectorised string building


def _strings(chars: npt.NDArray[np.uint8], lengths: Ints | None = None) -> Any:
    """A string array from an (n, width) matrix of ASCII bytes, row i cut to lengths[i]."""
    n, width = chars.shape
    if lengths is None:
        data = np.ascontiguousarray(chars).reshape(-1)
        offsets = np.arange(n + 1, dtype=np.int64) * width
    else:
        data = chars[np.arange(width)[None, :] < lengths[:, None]]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("string column over 2 GiB; generate fewer rows")
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), n, buffers)


def _prefixed(prefix: str, body: npt.NDArray[np.uint8]) -> Any:
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    return _strings(np.concatenate([np.broadcast_to(head, (len(body), len(head))), body], axis=1))


def hex_ids(values: Ints) -> Any:
    """Byte-padded lowercase hex ids as Lens writes them: 1 -> ``0x01``, 70526 -> ``0x01137e``."""
    values = np.asarray(values, dtype=np.int64)
    if len(values) and values.min() < 0:
        raise ValueError("hex ids must be non-negative")
    nbytes = np.ones(len(values), dtype=np.int64)
    for shift in range(8, 64, 8):
        nbytes += values >= (1 << shift)
    digits = 2 * nbytes
    width = 2 + int(digits.max(initial=2))
    chars = np.empty((len(values), width), dtype=np.uint8)
    chars[:, 0], chars[:, 1] = ord("0"), ord("x")
    for j in range(width - 2):
        nibble = np.maximum(digits - 1 - j, 0)
        chars[:, 2 + j] = _HEX[(values >> (4 * nibble)) & 15]
    return _strings(chars, digits + 2)


def _random_bytes(rng: np.random.Generator, n: int, width: int) -> npt.NDArray[np.uint8]:
    return np.frombuffer(rng.bytes(n * width), dtype=np.uint8).reshape(n, width)


def _addresses(rng: np.random.Generator, n: int) -> Any:
    """42-character lowercase wallet addresses."""
    return _prefixed("0x", _HEX[_random_bytes(rng, n, 40) & 15])


def _uuids(rng: np.random.Generator, n: int) -> Any:
    """Random version-4 UUIDs in their 36-character text form."""
    nibbles = _random_bytes(rng, n, 32) & 15
    nibbles[:, 12] = 4
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)
    chars = np.full((n, 36), ord("-"), dtype=np.uint8)
    for out, (lo, hi) in zip(
        (0, 9, 14, 19, 24), ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)), strict=True
    ):
        chars[:, out : out + hi - lo] = _HEX[nibbles[:, lo:hi]]
    return _strings(chars)


def _content_uris(rng: np.random.Generator, n: int) -> Any:
    """IPFS CIDv1 (raw, sha2-256) URIs."""
    return _prefixed("ipfs://bafkrei", _BASE32[_random_bytes(rng, n, 52) & 31])


def _categorical(rng: np.random.Generator, n: int, shares: Mapping[str | None, float]) -> Any:
    values = pa.array(list(shares), type=pa.string())
    weights = np.array(list(shares.values()), dtype=np.float64)
    return values.take(pa.array(rng.choice(len(weights), size=n, p=weights / weights.sum())))


def _pool(rng: np.random.Generator, size: int, words: Sequence[str], lo: int, hi: int) -> list[str]:
    """A small pool of random texts (a loop over the pool, not over rows)."""
    return [" ".join(rng.choice(words, size=int(rng.integers(lo, hi)))) for _ in range(size)]


def _tsvectors(rng: np.random.Generator, size: int) -> list[str]:
    pool = []
    for _ in range(size):
        tags = sorted(set(rng.choice(_TAGS, size=int(rng.integers(1, 4))).tolist()))
        pool.append(" ".join(f"'{tag}':{i + 1}" for i, tag in enumerate(tags)))
    return pool


def _null_where(values: Any, mask: Bools) -> Any:
    return pc.if_else(pa.array(mask), pa.scalar(None, type=values.type), values)


def _timestamps(micros: Ints, valid: Bools | None = None) -> Any:
    mask = None if valid is None else ~valid
    return pa.array(micros, type=TIMESTAMP, mask=mask)


def _weighted_draw(rng: np.random.Generator, weights: Floats, size: int) -> Ints:
    cdf = np.cumsum(weights)
    picks = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    drawn: Ints = np.minimum(picks, len(weights) - 1).astype(np.int64)
    return drawn


def _zipf_weights(
    rng: np.random.Generator, n: int, top: Ints, exponent: float, offset: float = 0.0
) -> Floats:
    """Zipf-Mandelbrot weights ``(rank + offset) ** -exponent`` over a random ranking.

    The ``top`` indices take the first ranks, in random order.
    """
    ranks = np.empty(n, dtype=np.int64)
    rest = np.setdiff1d(np.arange(n), top)
    ranks[top] = rng.permutation(len(top)) + 1
    ranks[rest] = rng.permutation(len(rest)) + len(top) + 1
    weights: Floats = np.power(ranks + offset, -exponent)
    return weights


def _group_starts(sorted_keys: Ints) -> Bools:
    starts = np.ones(len(sorted_keys), dtype=np.bool_)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return starts


# ---------------------------------------------------------------------------
# the source tables


@dataclass(frozen=True)
class _Profiles:
    table: Any
    ids: Any  # string array, one per profile
    created_us: Ints
    owner: Ints  # wallet index of each profile
    addresses: Any  # owners first, then wallets without a profile
    og: Ints
    origin_us: int


def _generate_profiles(rng: np.random.Generator, n: int, start_us: int, end_us: int) -> _Profiles:
    """public_profile: one row per profile, ids minted in creation order."""
    origin_us = max(_to_us(MIN_TIMESTAMP) + _DAY, start_us - 365 * _DAY)
    n_before = n - n // 5
    created = np.sort(
        np.concatenate(
            [
                rng.integers(origin_us, start_us + 1, size=n_before),
                rng.integers(start_us, end_us + 1, size=n - n_before),
            ]
        )
    ).astype(np.int64)
    numbers = np.arange(1, n + 1, dtype=np.int64)
    og = np.array(OG_PROFILE_NUMBERS, dtype=np.int64) - 1
    is_og = np.zeros(n, dtype=np.bool_)
    is_og[og] = True

    # most wallets own one profile, some own several
    counts = np.minimum(rng.geometric(0.75, size=n), 12).astype(np.int64)
    cumulative = np.cumsum(counts)
    n_owners = int(np.searchsorted(cumulative, n)) + 1
    counts = counts[:n_owners]
    counts[-1] -= int(cumulative[n_owners - 1]) - n
    owner = np.repeat(np.arange(n_owners, dtype=np.int64), counts)[rng.permutation(n)]
    n_free = max(1, round(0.3 * n_owners))
    addresses = _addresses(rng, n_owners + n_free)

    stems = pa.array(_STEMS).take(pa.array(rng.integers(0, len(_STEMS), size=n)))
    handles = pc.binary_join_element_wise(stems, pa.array(numbers).cast(pa.string()), ".lens", "")
    handles = pc.replace_with_mask(handles, pa.array(is_og), pa.array(OG_HANDLES))
    names = _null_where(pc.utf8_capitalize(stems), (rng.random(n) < 0.35) & ~is_og)

    is_default = np.zeros(n, dtype=np.bool_)
    first_of_wallet = np.unique(owner, return_index=True)[1]
    is_default[first_of_wallet] = rng.random(len(first_of_wallet)) < 0.7
    has_metadata = (rng.random(n) < 0.6) | is_og
    metadata_us = np.minimum(created + rng.exponential(3 * _DAY, size=n).astype(np.int64), end_us)

    ids = hex_ids(numbers)
    table = pa.Table.from_arrays(
        [
            ids,
            handles,
            addresses.take(pa.array(owner)),
            names,
            pa.array((rng.random(n) < BURNT_SHARE) & ~is_og),
            pa.array(is_default),
            _timestamps(created),
            _timestamps(metadata_us, has_metadata),
        ],
        schema=PROFILES_SPEC.schema,
    )
    return _Profiles(table, ids, created, owner, addresses, og, origin_us)


def _generate_followers(
    rng: np.random.Generator, profiles: _Profiles, end_us: int
) -> tuple[Any, Ints]:
    """public_follower: one row per (wallet, followed profile); also the in-degrees."""
    n = len(profiles.created_us)
    n_wallets = len(profiles.addresses)
    n_owners = int(profiles.owner.max()) + 1
    degree = np.floor(np.exp(rng.normal(math.log(8.0), 1.0, size=n_wallets))).astype(np.int64)
    degree[rng.random(n_wallets) < 0.1] = 0
    degree = np.minimum(degree, min(n - 1, 5000))
    source = np.repeat(np.arange(n_wallets, dtype=np.int64), degree)
    # heavy-tailed in-degree: a Zipf draw with the OG profiles on the first ranks
    weights = _zipf_weights(rng, n, profiles.og, 1.0)
    weights[profiles.og] = np.maximum(weights[profiles.og], 0.4)  # every OG is much followed
    target = _weighted_draw(rng, weights, len(source))
    own = (source < n_owners) & (profiles.owner[target] == source)
    keys = np.unique(source[~own] * n + target[~own])
    source, target = keys // n, keys % n

    low = np.maximum(profiles.created_us[target], profiles.origin_us)
    followed_us = low + (rng.random(len(source)) * (end_us - low)).astype(np.int64)
    order = np.argsort(followed_us, kind="stable")
    source, target, followed_us = source[order], target[order], followed_us[order]
    finalised = followed_us <= end_us - FINALISATION_DELAY // timedelta(microseconds=1)
    table = pa.Table.from_arrays(
        [
            profiles.addresses.take(pa.array(source)),
            profiles.ids.take(pa.array(target)),
            _timestamps(followed_us),
            pa.array(finalised),
        ],
        schema=FOLLOWERS_SPEC.schema,
    )
    return table, np.bincount(target, minlength=n).astype(np.int64)


@dataclass(frozen=True)
class _Posts:
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


def _generate_posts(
    rng: np.random.Generator, profiles: _Profiles, n_posts: int, start_us: int, end_us: int
) -> _Posts:
    """public_profile_post: one row per post or mirror, in block_timestamp order."""
    n = n_posts
    n_profiles = len(profiles.created_us)
    # few authors post a lot; the OG profiles post steadily
    weights = _zipf_weights(rng, n_profiles, np.zeros(0, dtype=np.int64), 1.2, offset=10.0)
    weights[profiles.og] = weights.max() * 0.2
    authors = _weighted_draw(rng, weights, n)
    low = np.maximum(profiles.created_us[authors], start_us)
    posted = low + (rng.random(n) * (end_us - low)).astype(np.int64)
    order = np.argsort(posted, kind="stable")
    authors, posted = authors[order], posted[order]

    # publication ids increase per profile; gaps are the profile's comments
    by_author = np.argsort(authors, kind="stable")
    step = rng.geometric(0.6, size=n).astype(np.int64)
    cumulative = np.cumsum(step)
    starts = _group_starts(authors[by_author])
    base = np.maximum.accumulate(np.where(starts, cumulative - step, 0)) if n else cumulative
    earlier_days = np.maximum(start_us - profiles.created_us, 0) / _DAY
    prior = rng.poisson(0.3 * earlier_days).astype(np.int64)
    pub = np.empty(n, dtype=np.int64)
    pub[by_author] = prior[authors[by_author]] + cumulative - base
    gap_before = np.empty(n, dtype=np.bool_)
    gap_before[by_author] = step > 1

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

    profile_ids = profiles.ids.take(pa.array(authors))
    pub_ids = hex_ids(pub)
    post_ids = pc.binary_join_element_wise(profile_ids, pub_ids, "-")
    related_post = post_ids.take(pa.array(np.maximum(mirror_target, 0), mask=mirror_target < 0))
    comment_ids = pc.binary_join_element_wise(
        profiles.ids.take(pa.array(authors[comment_targets])),
        hex_ids(pub[comment_targets] - 1),
        "-",
    )
    comment_mask = np.zeros(n, dtype=np.bool_)
    comment_mask[comment_rows] = True
    related_comment = pc.replace_with_mask(
        pa.nulls(n, type=pa.string()), pa.array(comment_mask), comment_ids
    )

    # a mirror shows the metadata of the post it mirrors
    has_error = rng.random(n) < ERROR_SHARE
    content_pool = pa.array(_pool(rng, 512, _WORDS, 3, 30))
    tags_pool = pa.array([*_tsvectors(rng, 64), None])
    source = pa.array(np.where(mirror_target >= 0, mirror_target, np.arange(n)))
    metadata = {
        "content_uri": _content_uris(rng, n),
        "language": _categorical(rng, n, LANGUAGES),
        "region": _categorical(rng, n, REGIONS),
        "content_warning": _categorical(rng, n, CONTENT_WARNINGS),
        "main_content_focus": _categorical(rng, n, MAIN_CONTENT_FOCUS),
        "tags_vector": tags_pool.take(
            pa.array(np.where(rng.random(n) < 0.75, 64, rng.integers(0, 64, size=n)))
        ),
        "content": _null_where(
            content_pool.take(pa.array(rng.integers(0, 512, size=n))), has_error
        ),
    }
    metadata = {name: column.take(source) for name, column in metadata.items()}
    delay_ms = rng.exponential(30_000, size=n).astype(np.int64)
    datastream = pa.StructArray.from_arrays(
        [_uuids(rng, n), pa.array(posted // 1000 + delay_ms)],
        fields=list(DATASTREAM_METADATA),
    )
    columns = {
        "post_id": post_ids,
        "profile_id": profile_ids,
        "contract_publication_id": pub_ids,
        "content_uri": metadata["content_uri"],
        "is_related_to_post": related_post,
        "is_related_to_comment": related_comment,
        "is_hidden": pa.array(rng.random(n) < HIDDEN_SHARE),
        "is_gated": pa.array(rng.random(n) < GATED_SHARE),
        "custom_filters_gardener_flagged": pa.array(rng.random(n) < FLAGGED_SHARE),
        "is_metadata_processed": pa.array(rng.random(n) >= METADATA_UNPROCESSED_SHARE),
        "has_error": pa.array(has_error),
        "is_data_availability": pa.array(rng.random(n) < DATA_AVAILABILITY_SHARE),
        "block_timestamp": _timestamps(posted),
        "language": metadata["language"],
        "region": metadata["region"],
        "content_warning": metadata["content_warning"],
        "main_content_focus": metadata["main_content_focus"],
        "tags_vector": metadata["tags_vector"],
        "content": metadata["content"],
        "app_id": _categorical(rng, n, APPS),
        "datastream_metadata": datastream,
    }
    table = pa.Table.from_arrays(
        [columns[name] for name in POSTS_SPEC.columns], schema=POSTS_SPEC.schema
    )
    return _Posts(table, authors, posted, is_mirror, mirror_target)


def _generate_stats(rng: np.random.Generator, posts: _Posts, in_degree: Ints, end_us: int) -> Any:
    """public_publication_stats: one row per post with its counters as of ``end``."""
    n = len(posts.authors)
    boost = np.power(in_degree[posts.authors] + 1.0, 0.3)
    if n:
        boost /= boost.mean()
    age_days = (end_us - posts.posted_us) / _DAY
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
    settle = rng.exponential(0.5 * _DAY, size=n).astype(np.int64)
    updated = np.where(
        total > 0, posts.posted_us + np.minimum(settle, end_us - posts.posted_us), posts.posted_us
    )
    # the counters cannot have been updated before the mirrors they count
    np.maximum.at(updated, posts.mirror_target[mirrored], posts.posted_us[mirrored])
    datastream = pa.StructArray.from_arrays(
        [_uuids(rng, n), pa.array(updated // 1000)], fields=list(DATASTREAM_METADATA)
    )
    arrays = [posts.table.column("post_id")]
    arrays += [pa.array(counters[name].astype(np.int64)) for name in STATS_SPEC.columns[1:6]]
    arrays.append(datastream)
    return pa.Table.from_arrays(arrays, schema=STATS_SPEC.schema)


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
    start_us, end_us = _check_range(start, end)
    profiles = _generate_profiles(_rng(seed, _STREAM_PROFILES), n_profiles, start_us, end_us)
    followers, in_degree = _generate_followers(_rng(seed, _STREAM_FOLLOWERS), profiles, end_us)
    posts = _generate_posts(_rng(seed, _STREAM_POSTS), profiles, n_posts, start_us, end_us)
    stats = _generate_stats(_rng(seed, _STREAM_STATS), posts, in_degree, end_us)
    return {POSTS: posts.table, STATS: stats, PROFILES: profiles.table, FOLLOWERS: followers}


# ---------------------------------------------------------------------------
# export objects


@dataclass(frozen=True)
class _Grid:
    start_us: int
    end_us: int
    interval_us: int
    last_tick: int

    def time(self, tick: int) -> datetime:
        return _from_us(self.start_us + tick * self.interval_us)

    def arrival_ticks(self, rng: np.random.Generator, event_us: Ints) -> Ints:
        """The first tick at or after each event's arrival (event time plus a lag)."""
        n = len(event_us)
        lag = rng.exponential(90 * _SECOND, size=n)
        late = rng.random(n) < LATE_SHARE
        lag[late] = rng.uniform(1 * _HOUR, 12 * _HOUR, size=int(late.sum()))
        arrival = event_us + lag.astype(np.int64)
        ticks = -((self.start_us - arrival) // self.interval_us)
        return np.clip(ticks, 1, self.last_tick).astype(np.int64)


def _column_us(table: Any, name: str) -> Ints:
    column = table.column(name).cast(pa.int64())
    return np.asarray(column.fill_null(0).to_numpy(), dtype=np.int64)


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
    table_name: str, table: Any, ticks: Ints, grid: _Grid, prefix: str, max_rows: int
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


def _stats_updates(
    rng: np.random.Generator, dataset: Mapping[str, Any], grid: _Grid
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
    posted_us = _column_us(posts, "block_timestamp")
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
        [_uuids(rng, int(keep.sum())), pa.array(moment[keep] // 1000)],
        fields=list(DATASTREAM_METADATA),
    )
    datastream = pc.if_else(pa.array(is_final[keep]), datastream, fresh)
    arrays = [stats.column("publication_id").take(pa.array(owner[keep]))]
    arrays += [pa.array(counts[keep, i]) for i in range(5)]
    arrays.append(datastream)
    return pa.Table.from_arrays(arrays, schema=STATS_SPEC.schema), ticks[keep]


def _unfollowed_edges(
    rng: np.random.Generator, dataset: Mapping[str, Any], grid: _Grid
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
    low = np.maximum(_column_us(profiles, "block_timestamp")[target], grid.start_us)
    followed = low + (rng.random(len(source)) * np.maximum(grid.end_us - low, 0)).astype(np.int64)
    unfollowed = followed + (rng.random(len(source)) * (grid.end_us - followed)).astype(np.int64)
    table = pa.Table.from_arrays(
        [
            wallets.take(pa.array(source)),
            profile_ids.take(pa.array(target)),
            _timestamps(followed),
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


class _ProfileHistory:
    """The profiles as they stood at a given time: those created by then, with the
    metadata timestamp hidden until it happens."""

    def __init__(self, profiles: Any) -> None:
        created = _column_us(profiles, "block_timestamp")
        order = np.argsort(created, kind="stable")
        self.table = profiles.take(pa.array(order))
        self.created = created[order]
        self.metadata = _column_us(self.table, "metadata_block_timestamp")
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
            _timestamps(self.metadata[:count], valid),
        )


class _FollowerHistory:
    """The follow edges alive at a given time: current edges followed by then, plus
    edges followed by then and unfollowed later; recent edges are not yet finalised."""

    def __init__(self, rng: np.random.Generator, dataset: Mapping[str, Any], grid: _Grid) -> None:
        current = dataset[FOLLOWERS]
        created = _column_us(current, "block_timestamp")
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


def _snapshot_objects(
    rng: np.random.Generator,
    dataset: Mapping[str, Any],
    grid: _Grid,
    every_ticks: int,
    prefix: str,
    max_rows: int,
) -> list[ExportObject]:
    ticks = sorted({*range(0, grid.last_tick, every_ticks), grid.last_tick})
    profiles = _ProfileHistory(dataset[PROFILES])
    followers = _FollowerHistory(rng, dataset, grid)
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
    start_us, end_us = _check_range(start, end)
    interval_us = _HOUR // objects_per_hour
    grid = _Grid(start_us, end_us, interval_us, -((start_us - end_us) // interval_us))
    tables = {name: conform_table(name, dataset[name]) for name in EXPORT_MODES}

    post_ticks = grid.arrival_ticks(
        _rng(seed, _STREAM_POST_LAGS), _column_us(tables[POSTS], "block_timestamp")
    )
    objects = _increment_objects(
        POSTS, tables[POSTS], post_ticks, grid, prefix, max_rows_per_object
    )
    updates, update_ticks = _stats_updates(_rng(seed, _STREAM_STAT_UPDATES), tables, grid)
    objects += _increment_objects(STATS, updates, update_ticks, grid, prefix, max_rows_per_object)
    objects += _snapshot_objects(
        _rng(seed, _STREAM_UNFOLLOWS),
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
