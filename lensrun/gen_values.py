"""Vectorised building blocks of the generator: time units, seeded random streams,
and whole columns at once (hex ids, wallet addresses, UUIDs, content URIs,
categorical draws, timestamps, weighted draws) with no Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lensfeed.schemas import MAX_TIMESTAMP, MIN_TIMESTAMP, TIMESTAMP
from lensrun.gen_vocabulary import TAGS

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

US = 1
SECOND = 1_000_000 * US
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_BASE32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)

# one independent random stream per part, so that a change in one part does not
# shift the numbers of another
STREAM_PROFILES, STREAM_FOLLOWERS, STREAM_POSTS, STREAM_STATS = range(4)
STREAM_POST_LAGS, STREAM_STAT_UPDATES, STREAM_UNFOLLOWS = range(100, 103)


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` (one of ``STREAM_*``) of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment.isoformat()} has no time zone; pass an aware datetime")
    return (moment.astimezone(UTC) - EPOCH) // timedelta(microseconds=1)


def from_us(micros: int) -> datetime:
    """The aware UTC datetime of microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=micros)


def check_range(start: datetime, end: datetime) -> tuple[int, int]:
    """``[start, end]`` in microseconds; a ValueError unless it is a valid range."""
    start_us, end_us = to_us(start), to_us(end)
    if start_us >= end_us:
        raise ValueError(f"start {start.isoformat()} must be before end {end.isoformat()}")
    if start_us < to_us(MIN_TIMESTAMP) + DAY or end_us >= to_us(MAX_TIMESTAMP):
        raise ValueError(
            f"the range must lie within ({MIN_TIMESTAMP.date()} + 1 day, {MAX_TIMESTAMP.date()})"
        )
    return start_us, end_us


# ---------------------------------------------------------------------------
# vectorised columns


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


def random_addresses(rng: np.random.Generator, n: int) -> Any:
    """42-character lowercase wallet addresses."""
    return _prefixed("0x", _HEX[_random_bytes(rng, n, 40) & 15])


def random_uuids(rng: np.random.Generator, n: int) -> Any:
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


def random_content_uris(rng: np.random.Generator, n: int) -> Any:
    """IPFS CIDv1 (raw, sha2-256) URIs."""
    return _prefixed("ipfs://bafkrei", _BASE32[_random_bytes(rng, n, 52) & 31])


def categorical(rng: np.random.Generator, n: int, shares: Mapping[str | None, float]) -> Any:
    """``n`` values drawn from a distribution ``{value: share}``."""
    values = pa.array(list(shares), type=pa.string())
    weights = np.array(list(shares.values()), dtype=np.float64)
    return values.take(pa.array(rng.choice(len(weights), size=n, p=weights / weights.sum())))


def text_pool(
    rng: np.random.Generator, size: int, words: Sequence[str], lo: int, hi: int
) -> list[str]:
    """A small pool of random texts (a loop over the pool, not over rows)."""
    return [" ".join(rng.choice(words, size=int(rng.integers(lo, hi)))) for _ in range(size)]


def tsvectors(rng: np.random.Generator, size: int) -> list[str]:
    """A small pool of PostgreSQL tsvector texts over a few tags."""
    pool = []
    for _ in range(size):
        tags = sorted(set(rng.choice(TAGS, size=int(rng.integers(1, 4))).tolist()))
        pool.append(" ".join(f"'{tag}':{i + 1}" for i, tag in enumerate(tags)))
    return pool


def null_where(values: Any, mask: Bools) -> Any:
    """``values`` with nulls where ``mask`` is set."""
    return pc.if_else(pa.array(mask), pa.scalar(None, type=values.type), values)


def timestamps(micros: Ints, valid: Bools | None = None) -> Any:
    """A timestamp array of microseconds, null where not ``valid``."""
    mask = None if valid is None else ~valid
    return pa.array(micros, type=TIMESTAMP, mask=mask)


def weighted_draw(rng: np.random.Generator, weights: Floats, size: int) -> Ints:
    """``size`` indices drawn with probabilities proportional to ``weights``."""
    cdf = np.cumsum(weights)
    picks = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    drawn: Ints = np.minimum(picks, len(weights) - 1).astype(np.int64)
    return drawn


def zipf_weights(
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


def group_starts(sorted_keys: Ints) -> Bools:
    """Where each run of equal keys starts."""
    starts = np.ones(len(sorted_keys), dtype=np.bool_)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return starts


def column_us(table: Any, name: str) -> Ints:
    """A timestamp column as microseconds, 0 for nulls."""
    column = table.column(name).cast(pa.int64())
    return np.asarray(column.fill_null(0).to_numpy(), dtype=np.int64)
