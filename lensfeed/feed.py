"""The Lens feed: a seeded, stratified, weighted sample of the predicted posts.

The original ``generate_feed.py`` with its defects fixed (``lens-domain.md``,
sections 5 and 6). Pure functions: frames and parameters in, frames out.

Steps, on the predictions snapshot (one row per post):

1. :func:`candidate_posts`: one row per ``post_id`` (the newest ``feature_time``
   wins), then keep original posts without a content warning (null or blank),
   not hidden, not gated, not gardener-flagged, without ``has_error`` (its
   metadata failed to load: the app cannot show it), labelled YES or MAYBE, with
   ``engagement_score = upvotes + 3*mirrors + 5*comments + 7*collects > 0``.
   A null hidden, gated or flagged flag excludes the post (never guess that a
   post may be shown: the source requires them); a null ``has_error`` (nullable at
   the source) means no error was reported. Null counters count as 0.
2. :func:`age_bucket`: ``feature_time - block_timestamp`` from real timestamps:
   ``1d`` = [0, 1 day), ``1w`` = [1 day, 7 days), ``4w`` = [7 days, 28 days),
   ``older`` = 28 days or more. A post stamped after ``feature_time`` counts as age 0.
3. :func:`cap_buckets`: at most 5000/1000/1000/1000 posts per bucket, a uniform
   sample without replacement where a bucket holds more.
4. :func:`popularity_tertile`: ``qcut(engagement, 3, duplicates='drop')`` over the
   capped posts. Bins are named from the top: the bin holding the largest
   engagement is ``A``, the next ``B``, then ``C``. When ties leave fewer than
   three bins there is no ``C`` (two bins: ``A``, ``B``); when every post has the
   same engagement, all are ``A``.
5. :func:`post_weights`: A-YES 0.75, A-MAYBE 0.10, B or C (any label) 0.15.
6. :func:`weighted_sample`: ``size`` (2000) posts without replacement, with
   probability proportional to weight.
7. :func:`rank_feed`: order by weight desc, engagement desc, ``post_id`` asc (the
   original's order, with a tie-break) and ``v = n - position``: the first post gets
   ``v = n``, the last ``v = 1``. Larger is better, as the feed server expects.
   So the tiers run A-YES, then B and C (either label), then A-MAYBE: the
   original's weights rank a popular post the model did not endorse below any
   less popular one (kept deliberately, see docs/dag.md, ``feed``).

Randomness: one ``numpy.random.Generator`` seeded by the caller (the feed
pipeline uses :func:`seed_from_bytes` of the predictions file), used in a fixed
order on rows sorted by ``post_id``: equal inputs give an equal feed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from lensfeed.schemas import FEED_PASSTHROUGH

DEFAULT_STRATEGY = "ml-xgb-followship"
LABELS = ("YES", "MAYBE", "NO")
FEED_LABELS = ("YES", "MAYBE")
BUCKETS = ("1d", "1w", "4w", "older")
TERTILES = ("A", "B", "C")
FEED_COLUMNS = ("strategy_name", "post_id", "v")

#: Lower bounds of the buckets after the first: 1 day, 1 week, 4 weeks.
BUCKET_EDGES = (pd.Timedelta(days=1), pd.Timedelta(days=7), pd.Timedelta(days=28))
BUCKET_CAPS: Mapping[str, int] = {"1d": 5000, "1w": 1000, "4w": 1000, "older": 1000}
WEIGHTS: Mapping[tuple[str, str], float] = {
    ("A", "YES"): 0.75,
    ("A", "MAYBE"): 0.10,
    ("B", "YES"): 0.15,
    ("B", "MAYBE"): 0.15,
    ("C", "YES"): 0.15,
    ("C", "MAYBE"): 0.15,
}
ENGAGEMENT_WEIGHTS: Mapping[str, int] = {"upvotes": 1, "mirrors": 3, "comments": 5, "collects": 7}

PREDICTION_COLUMNS = ("post_id", "label", *FEED_PASSTHROUGH)


@dataclass(frozen=True)
class FeedParams:
    """Every knob of the feed, with the original's values as defaults."""

    strategy_name: str = DEFAULT_STRATEGY
    size: int = 2000
    bucket_edges: tuple[pd.Timedelta, ...] = BUCKET_EDGES
    bucket_caps: Mapping[str, int] = field(default_factory=lambda: dict(BUCKET_CAPS))
    weights: Mapping[tuple[str, str], float] = field(default_factory=lambda: dict(WEIGHTS))


def seed_from_bytes(data: bytes) -> int:
    """A 64-bit seed: the first 8 bytes of ``sha256(data)``, big-endian."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{name} is missing column(s): {', '.join(missing)}")


def _flag(values: pd.Series, when_null: bool) -> pd.Series:
    return values.astype("boolean").fillna(when_null).astype(bool)


def engagement_score(posts: pd.DataFrame) -> pd.Series:
    """``upvotes + 3*mirrors + 5*comments + 7*collects`` (int64; a null counter counts 0)."""
    _require(posts, list(ENGAGEMENT_WEIGHTS), "posts")
    total = pd.Series(0, index=posts.index, dtype=np.int64)
    for column, weight in ENGAGEMENT_WEIGHTS.items():
        total += weight * pd.to_numeric(posts[column]).fillna(0).astype(np.int64)
    return total


def _strictly_increasing(values: pd.Series) -> bool:
    """Sorted and unique (a comparison per row: cheaper than hashing every string)."""
    array = values.to_numpy()
    try:
        return len(array) < 2 or bool((array[1:] > array[:-1]).all())
    except TypeError:  # a null or a non-string id: the general path decides
        return False


def latest_per_post(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per ``post_id``: the newest ``feature_time`` (ties: higher engagement), sorted by post_id."""
    _require(predictions, PREDICTION_COLUMNS, "predictions")
    if _strictly_increasing(predictions["post_id"]):
        # predict's output: one row per post, sorted. The sort below would keep every
        # row in place; skipping it keeps the feed step linear in the posts.
        scored = predictions.copy(deep=False)  # new columns only: no need to copy the data
        scored["engagement_score"] = engagement_score(predictions)
        return scored.set_axis(pd.RangeIndex(len(scored)), copy=False)
    ranked = predictions.assign(
        _time=pd.to_datetime(predictions["feature_time"], utc=True),
        engagement_score=engagement_score(predictions),
    ).sort_values(["post_id", "_time", "engagement_score", "label"], kind="mergesort")
    latest = ranked.drop_duplicates("post_id", keep="last").drop(columns="_time")
    return latest.reset_index(drop=True)


def exclusion_masks(posts: pd.DataFrame) -> dict[str, pd.Series]:
    """Each exclusion rule as a boolean mask (True = excluded) over ``posts``.

    ``posts`` needs an ``engagement_score`` column (see :func:`latest_per_post`).
    Raises ValueError on a label outside YES, MAYBE, NO (null included).
    """
    labels = posts["label"]
    unknown = sorted({str(v) for v in labels[~labels.isin(LABELS)].tolist()})
    if unknown:
        raise ValueError(f"label: unexpected value(s) {unknown}; expected one of {LABELS}")
    notes = posts["content_warning"]
    present = notes.notna().to_numpy()  # mostly null: strip only the values there are
    flagged = np.zeros(len(notes), dtype=bool)
    flagged[present] = (notes[present].astype(str).str.strip() != "").to_numpy()
    warning = pd.Series(flagged, index=posts.index)
    return {
        "not_original": ~_flag(posts["is_original"], when_null=False),
        "content_warning": warning,
        "hidden": _flag(posts["is_hidden"], when_null=True),
        "gated": _flag(posts["is_gated"], when_null=True),
        "gardener_flagged": _flag(posts["custom_filters_gardener_flagged"], when_null=True),
        "has_error": _flag(posts["has_error"], when_null=False),
        "label_no": labels == "NO",
        "no_engagement": posts["engagement_score"] <= 0,
    }


def candidate_posts(predictions: pd.DataFrame) -> pd.DataFrame:
    """The posts that may enter the feed, one row each (rules in the module docstring).

    Args:
        predictions: the predict output (``PREDICTION_COLUMNS`` at least).

    Returns:
        A new frame with the kept rows, an added ``engagement_score`` (int64),
        sorted by ``post_id``.

    Raises:
        KeyError: a required column is missing.
        ValueError: a label outside YES, MAYBE, NO.
    """
    posts = latest_per_post(predictions)
    return _keep(posts, exclusion_masks(posts))


def _keep(posts: pd.DataFrame, masks: Mapping[str, pd.Series]) -> pd.DataFrame:
    excluded = pd.Series(False, index=posts.index)
    for mask in masks.values():
        excluded |= mask
    return posts[~excluded].reset_index(drop=True)


def age_bucket(
    block_timestamp: pd.Series,
    feature_time: pd.Series,
    edges: Sequence[pd.Timedelta] = BUCKET_EDGES,
) -> pd.Series:
    """Name the age bucket of each post from real timestamps.

    Args:
        block_timestamp: when each post was made (aware, or naive meaning UTC).
        feature_time: the snapshot time of each row (same index).
        edges: lower bounds of the buckets after the first (1 day, 7 days, 28 days).

    Returns:
        ``1d``, ``1w``, ``4w`` or ``older`` per row (buckets half-open, [lower, upper)).
    """
    if len(edges) != len(BUCKETS) - 1:
        raise ValueError(f"{len(BUCKETS) - 1} bucket edges expected, got {len(edges)}")
    posted = pd.to_datetime(block_timestamp, utc=True)
    now = pd.to_datetime(feature_time, utc=True)
    if posted.isna().any() or now.isna().any():
        raise ValueError("block_timestamp and feature_time must not be null")
    age_ns = (now - posted).to_numpy(dtype="timedelta64[ns]").astype(np.int64)
    edges_ns = np.asarray([pd.Timedelta(e).value for e in edges], dtype=np.int64)
    if (np.diff(edges_ns) <= 0).any():
        raise ValueError("bucket edges must increase")
    index = np.searchsorted(edges_ns, age_ns, side="right")
    return pd.Series(np.asarray(BUCKETS, dtype=object)[index], index=block_timestamp.index)


def cap_buckets(
    posts: pd.DataFrame, caps: Mapping[str, int], rng: np.random.Generator
) -> pd.DataFrame:
    """At most ``caps[bucket]`` posts per ``bucket``: a uniform sample where there are more.

    Args:
        posts: rows with a ``bucket`` column.
        caps: bucket name -> maximum rows, for every name in ``BUCKETS``.
        rng: drawn from once per over-full bucket, in ``BUCKETS`` order.

    Returns:
        A new frame: buckets in ``BUCKETS`` order, rows in their input order.
    """
    missing = [b for b in BUCKETS if b not in caps]
    unknown = sorted(set(posts["bucket"]) - set(BUCKETS))
    if missing or unknown:
        raise KeyError(f"buckets without a cap: {missing}; unknown buckets: {unknown}")
    if any(caps[b] < 0 for b in BUCKETS):
        raise ValueError(f"bucket caps must be >= 0, got {dict(caps)}")
    parts = [posts.iloc[0:0]]
    for bucket in BUCKETS:
        rows = posts[posts["bucket"] == bucket]
        if len(rows) > caps[bucket]:
            rows = rows.iloc[np.sort(rng.choice(len(rows), size=caps[bucket], replace=False))]
        parts.append(rows)
    return pd.concat(parts).reset_index(drop=True)


def popularity_tertile(engagement: pd.Series) -> pd.Series:
    """``A`` (most popular), ``B`` or ``C`` by ``qcut(engagement, 3, duplicates='drop')``.

    Bins are named from the top, so ties that merge bins remove ``C`` first;
    a single distinct value makes every post ``A``.
    """
    if engagement.empty:
        return pd.Series([], index=engagement.index, dtype=object)
    codes, edges = pd.qcut(engagement, 3, labels=False, retbins=True, duplicates="drop")
    bins = len(edges) - 1
    if bins < 1:
        return pd.Series("A", index=engagement.index, dtype=object)
    top_down = (bins - 1 - codes.astype(np.int64)).to_numpy()
    return pd.Series(np.asarray(TERTILES, dtype=object)[top_down], index=engagement.index)


def post_weights(
    tertile: pd.Series, label: pd.Series, weights: Mapping[tuple[str, str], float]
) -> pd.Series:
    """The sampling weight of each post, looked up by (tertile, label)."""
    keys = list(zip(tertile.tolist(), label.tolist(), strict=True))
    missing = sorted({k for k in keys if k not in weights})
    if missing:
        raise KeyError(f"no weight for (tertile, label) {missing}")
    values = np.asarray([weights[k] for k in keys], dtype=np.float64)
    if (values < 0).any() or not np.isfinite(values).all():
        raise ValueError("weights must be finite and non-negative")
    return pd.Series(values, index=tertile.index)


def weighted_sample(
    posts: pd.DataFrame, size: int, rng: np.random.Generator, weight_column: str = "weight"
) -> pd.DataFrame:
    """``min(size, posts with weight > 0)`` rows without replacement, P proportional to weight."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    weights = posts[weight_column].to_numpy(dtype=np.float64)
    k = min(size, int((weights > 0).sum()))
    if k == 0:
        return posts.iloc[0:0].copy()
    chosen = rng.choice(len(posts), size=k, replace=False, p=weights / weights.sum())
    return posts.iloc[np.sort(chosen)].reset_index(drop=True)


def rank_feed(sample: pd.DataFrame, strategy_name: str) -> pd.DataFrame:
    """Feed rows: ordered by weight desc, engagement desc, post_id asc; ``v = n - position``.

    Returns:
        ``strategy_name, post_id, v`` (float64, from n down to 1), sorted by v desc.
    """
    ordered = sample.sort_values(
        ["weight", "engagement_score", "post_id"], ascending=[False, False, True], kind="mergesort"
    )
    n = len(ordered)
    return pd.DataFrame(
        {
            "strategy_name": pd.Series([strategy_name] * n, dtype=object),
            "post_id": ordered["post_id"].astype(str).to_numpy(dtype=object),
            "v": np.arange(n, 0, -1, dtype=np.float64),
        }
    )


def feed_csv(feed: pd.DataFrame) -> bytes:
    """``feed.csv`` bytes: header, one line per row, floats as ``%.17g`` (exact), LF line ends."""
    text: str = feed.to_csv(index=False, float_format="%.17g", lineterminator="\n")
    return text.encode()


def _counts(values: pd.Series, names: Sequence[str]) -> dict[str, int]:
    tally = values.value_counts()
    return {name: int(tally.get(name, 0)) for name in names}


def generate_feed(
    predictions: pd.DataFrame, seed: int, params: FeedParams | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The feed of one strategy from a predictions snapshot.

    Args:
        predictions: the predict output (``PREDICTION_COLUMNS`` at least).
        seed: seeds the one random generator (e.g. :func:`seed_from_bytes`).
        params: sizes, caps, weights and strategy name; the defaults when None.

    Returns:
        ``(feed, meta)``: feed columns ``strategy_name, post_id, v`` sorted by v desc
        then post_id, one row per post; meta holds the seed and counts (per rule,
        per bucket, per label, per tertile) as plain ints, JSON-ready.
    """
    params = params or FeedParams()
    rng = np.random.default_rng(seed)
    posts = latest_per_post(predictions)
    masks = exclusion_masks(posts)
    candidates = _keep(posts, masks)
    candidates = candidates.assign(
        bucket=age_bucket(
            candidates["block_timestamp"], candidates["feature_time"], params.bucket_edges
        )
    )
    capped = cap_buckets(candidates, params.bucket_caps, rng)
    capped = capped.assign(tertile=popularity_tertile(capped["engagement_score"]))
    capped = capped.assign(weight=post_weights(capped["tertile"], capped["label"], params.weights))
    sample = weighted_sample(capped, params.size, rng)
    feed = rank_feed(sample, params.strategy_name)
    meta: dict[str, Any] = {
        "strategy_name": params.strategy_name,
        "seed": int(seed),
        "rows": {
            "predictions": len(predictions),
            "posts": len(posts),
            "candidates": len(candidates),
            "capped": len(capped),
            "feed": len(feed),
        },
        "excluded": {rule: int(mask.sum()) for rule, mask in masks.items()},
        "candidates_by_bucket": _counts(candidates["bucket"], BUCKETS),
        "capped_by_bucket": _counts(capped["bucket"], BUCKETS),
        "feed_by_bucket": _counts(sample["bucket"], BUCKETS),
        "feed_by_label": _counts(sample["label"], FEED_LABELS),
        "feed_by_tertile": _counts(sample["tertile"], TERTILES),
    }
    return feed, meta
