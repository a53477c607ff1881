"""Post features for the Lens feed model, as Spark DataFrame transforms.

Grain of the output: one row per original post or mirror known so far (the
current state of ``public_profile_post``), with the columns of
:data:`FEATURE_COLUMNS`. Definitions follow the published 2023 model (see
``docs/dag.md``, section ``features``):

- ``is_original``: both ``is_related_to_post`` and ``is_related_to_comment`` are null;
- ``is_content_warning``: ``content_warning`` is not null;
- ``age``: calendar days (UTC dates) from ``block_timestamp`` to ``feature_time``,
  as the original's Spark ``datediff(feature_time, block_timestamp)`` counts them;
- ``collects, mirrors, comments, upvotes, downvotes``: the publication's
  current stats counters, 0 when it has no stats row yet;
- ``followship_rank``, ``followship_score``: the author's trust rank and score,
  null when the author has none;
- ``max_age, max_mirrors, max_collects, max_comments``: maxima over all the
  author's current posts (the whole history, never a batch);
- ``post_score = mirrors/max_mirrors + collects/max_collects
  + 3*comments/max_comments - 5*age/max_age``, a zero maximum counting as 1e10.

The transforms take DataFrames and explicit parameters and return new
DataFrames; they check their input columns first and raise ``KeyError`` naming
the missing ones. The readers and the writer at the end are the only I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from lensfeed.frames import Frame, Session, api, read_parquet, write_sorted
from lensfeed.parquet import DTIME, FEATURES_DIR, check_part_size
from lensfeed.schemas import TIMESTAMP

#: Expressions (``F.col`` ...) are built by the frame's own engine (``api(frame).F``).
Column = Any
DataFrame = Frame

#: A zero per-author maximum divides as this (the reference's rule).
ZERO_MAX = 1e10
_DAY_US = 86_400 * 1_000_000

#: Output columns, their Spark types and whether they may hold nulls.
_OUTPUT: tuple[tuple[str, str, bool], ...] = (
    ("post_id", "string", False),
    ("profile_id", "string", False),
    ("block_timestamp", "timestamp", False),
    ("feature_time", "timestamp", False),
    ("region", "string", True),
    ("language", "string", True),
    ("main_content_focus", "string", True),
    ("content_warning", "string", True),
    ("is_content_warning", "boolean", False),
    ("is_original", "boolean", False),
    ("custom_filters_gardener_flagged", "boolean", False),
    ("is_hidden", "boolean", False),
    ("is_gated", "boolean", False),
    ("has_error", "boolean", True),
    ("collects", "bigint", False),
    ("mirrors", "bigint", False),
    ("comments", "bigint", False),
    ("upvotes", "bigint", False),
    ("downvotes", "bigint", False),
    ("age", "bigint", False),
    ("followship_rank", "bigint", True),
    ("followship_score", "double", True),
    ("max_age", "bigint", False),
    ("max_mirrors", "bigint", False),
    ("max_collects", "bigint", False),
    ("max_comments", "bigint", False),
    ("post_score", "double", False),
)
FEATURE_COLUMNS: tuple[str, ...] = tuple(name for name, _, _ in _OUTPUT)
_ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": TIMESTAMP,
    "boolean": pa.bool_(),
    "bigint": pa.int64(),
    "double": pa.float64(),
}
#: The schema of the written feature files.
FEATURES_SCHEMA = pa.schema(
    [pa.field(name, _ARROW_TYPES[kind], nullable=null) for name, kind, null in _OUTPUT]
)

#: stats counter -> feature column
COUNTERS: dict[str, str] = {
    "total_amount_of_collects": "collects",
    "total_amount_of_mirrors": "mirrors",
    "total_amount_of_comments": "comments",
    "total_upvotes": "upvotes",
    "total_downvotes": "downvotes",
}
_POST_COLUMNS = (
    "post_id",
    "profile_id",
    "block_timestamp",
    "region",
    "language",
    "main_content_focus",
    "content_warning",
    "is_related_to_post",
    "is_related_to_comment",
    "custom_filters_gardener_flagged",
    "is_hidden",
    "is_gated",
    "has_error",
)
_STATS_COLUMNS = ("publication_id", *COUNTERS)
_METADATA = ("datastream_metadata.source_timestamp", "datastream_metadata.uuid")
#: What the features read of each ingested table (``a.b``: a struct field).
POST_INPUT_COLUMNS = (*_POST_COLUMNS, *_METADATA)
STATS_INPUT_COLUMNS = (*_STATS_COLUMNS, *_METADATA)
_TRUST_COLUMNS = ("i", "v", "rank")

#: Rows per Parquet row group and per output file (a multiple of the former).
ROW_GROUP_ROWS = 1 << 17
ROWS_PER_PART = 8 * ROW_GROUP_ROWS


# ---------------------------------------------------------------------------
# inputs


def feature_time_of(*partition_lists: Iterable[datetime]) -> datetime:
    """The feature time: the newest partition tick across the given tables.

    Raises:
        ValueError: no partition at all.
    """
    newest = max((t for times in partition_lists for t in times), default=None)
    if newest is None:
        raise ValueError("no dtime partition: the feature time is undefined")
    return newest


def read_trust(session: Session, path: str | Path) -> DataFrame | None:
    """The trust scores (``i, v, rank`` ...), or None when the file is absent."""
    trust = Path(path).absolute()
    return read_parquet(session, trust) if trust.is_file() else None


# ---------------------------------------------------------------------------
# transforms


def require_columns(frame: DataFrame, columns: Iterable[str], name: str) -> None:
    """Raise KeyError naming every missing column; ``a.b`` names a struct field.

    Top-level names are checked against ``frame.columns``; the schema (a query
    on some engines) is read only for struct fields.
    """
    wanted = list(columns)
    present = set(frame.columns)
    nested = [c for c in wanted if "." in c and c.partition(".")[0] in present]
    fields = {f.name: f.dataType for f in frame.schema.fields} if nested else {}
    missing = []
    for column in wanted:
        top, _, field = column.partition(".")
        if top not in present or (
            field and field not in (getattr(fields.get(top), "names", None) or [])
        ):
            missing.append(column)
    if missing:
        raise KeyError(f"{name} is missing column(s): {', '.join(missing)}")


def project(frame: DataFrame, columns: Sequence[str], name: str) -> DataFrame:
    """Only the top-level columns that ``columns`` names, plus ``dtime`` when present.

    Reading only what is used keeps wide text columns (``content``) out of
    every later sort and window.

    Raises:
        KeyError: a column or struct field is missing (all of them named).
    """
    require_columns(frame, columns, name)
    keep = dict.fromkeys(column.partition(".")[0] for column in columns)
    if DTIME in frame.columns:
        keep[DTIME] = None
    return frame.select(*keep)


def _keep_first(frame: DataFrame, key: str, order: Sequence[Column]) -> DataFrame:
    """One row per ``key``: the first by ``order``."""
    fx = api(frame)
    F = fx.F
    window = fx.Window.partitionBy(key).orderBy(*order)
    ranked = frame.withColumn("_keep_first_n", F.row_number().over(window))
    return ranked.where(F.col("_keep_first_n") == 1).drop("_keep_first_n")


def _newest_change(frame: DataFrame, key: str, name: str) -> DataFrame:
    """One row per ``key``: the newest change, whichever partition it landed in.

    Order: the largest ``datastream_metadata.source_timestamp`` (the time of the
    change at the source), then the newest partition, then the largest
    ``datastream_metadata.uuid``: a total order, so the choice never depends on
    the engine, and a late-landing older copy never wins.
    """
    require_columns(frame, (key, DTIME, "datastream_metadata.source_timestamp"), name)
    F = api(frame).F
    order = [
        F.col("datastream_metadata.source_timestamp").desc_nulls_last(),
        F.col(DTIME).desc_nulls_last(),
        F.col("datastream_metadata.uuid").desc_nulls_last(),
    ]
    return _keep_first(frame, key, order)


def current_posts(posts: DataFrame) -> DataFrame:
    """The current state of the post increments: one row per ``post_id``
    (:func:`_newest_change`, the rule of every increment table).

    Args:
        posts: ``public_profile_post`` rows plus ``dtime``.

    Returns:
        The same columns, one row per ``post_id``.
    """
    return _newest_change(posts, "post_id", "posts")


def current_stats(stats: DataFrame) -> DataFrame:
    """The current state of the stats increments: one row per ``publication_id``
    (:func:`_newest_change`).

    Args:
        stats: ``public_publication_stats`` rows plus ``dtime``.

    Returns:
        The same columns, one row per ``publication_id``.
    """
    return _newest_change(stats, "publication_id", "stats")


def join_stats(posts: DataFrame, stats: DataFrame) -> DataFrame:
    """Add the counters (``collects`` ...) of each post's stats row; 0 without one."""
    require_columns(posts, ("post_id",), "posts")
    require_columns(stats, _STATS_COLUMNS, "stats")
    F = api(posts).F
    counters = stats.select(
        F.col("publication_id").alias("post_id"),
        *[F.col(source).alias(target) for source, target in COUNTERS.items()],
    )
    joined = posts.join(counters, on="post_id", how="left")
    return joined.select(
        *posts.columns,
        *[F.coalesce(F.col(c), F.lit(0)).cast("bigint").alias(c) for c in COUNTERS.values()],
    )


def join_trust(posts: DataFrame, trust: DataFrame | None) -> DataFrame:
    """Add the author's ``followship_rank`` and ``followship_score`` (null without one).

    Args:
        posts: rows with ``profile_id``.
        trust: ``i`` (profile id), ``v`` (score), ``rank``; None when there are
            no scores at all. An ``i`` listed twice keeps its best rank.
    """
    require_columns(posts, ("profile_id",), "posts")
    F = api(posts).F
    if trust is None:
        return posts.withColumns(
            {
                "followship_rank": F.lit(None).cast("bigint"),
                "followship_score": F.lit(None).cast("double"),
            }
        )
    require_columns(trust, _TRUST_COLUMNS, "trust")
    scores = _keep_first(
        trust.select(
            F.col("i").alias("profile_id"),
            F.col("rank").cast("bigint").alias("followship_rank"),
            F.col("v").cast("double").alias("followship_score"),
        ),
        "profile_id",
        [F.col("followship_rank").asc_nulls_last(), F.col("followship_score").desc_nulls_last()],
    )
    return posts.join(scores, on="profile_id", how="left")


def add_flags(posts: DataFrame) -> DataFrame:
    """Add ``is_original`` (no related post or comment) and ``is_content_warning``."""
    require_columns(
        posts, ("is_related_to_post", "is_related_to_comment", "content_warning"), "posts"
    )
    F = api(posts).F
    return posts.withColumns(
        {
            "is_original": F.col("is_related_to_post").isNull()
            & F.col("is_related_to_comment").isNull(),
            "is_content_warning": F.col("content_warning").isNotNull(),
        }
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"feature_time {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC)


def add_age(posts: DataFrame, feature_time: datetime) -> DataFrame:
    """Add ``feature_time`` and ``age``: calendar days from ``block_timestamp`` to it.

    The days are UTC dates, as the original's ``datediff(feature_time,
    block_timestamp)`` on a UTC session counts them (the production model was
    trained on it): a post of 23:00 is one day old at 01:00 the next day. A post
    stamped after ``feature_time`` gets a negative age, as ``datediff`` gives.

    Raises:
        ValueError: ``feature_time`` is naive.
    """
    require_columns(posts, ("block_timestamp",), "posts")
    F = api(posts).F
    moment = F.lit(_utc(feature_time)).cast("timestamp")

    def day(column: Column) -> Column:  # the UTC date as days since the epoch
        return F.floor(F.unix_micros(column) / F.lit(_DAY_US))

    age = (day(moment) - day(F.col("block_timestamp"))).cast("bigint")
    return posts.withColumns({"feature_time": moment, "age": age})


def add_author_maxima(posts: DataFrame) -> DataFrame:
    """Add ``max_age, max_mirrors, max_collects, max_comments`` over each author's posts.

    ``posts`` must be the author's whole history (every current post), not a batch.
    """
    require_columns(posts, ("profile_id", "age", "mirrors", "collects", "comments"), "posts")
    fx = api(posts)
    F = fx.F
    author = fx.Window.partitionBy("profile_id")
    return posts.withColumns(
        {f"max_{c}": F.max(c).over(author) for c in ("age", "mirrors", "collects", "comments")}
    )


def _ratio(F: Any, value: str, maximum: str) -> Column:
    denominator = F.when(F.col(maximum) == 0, F.lit(ZERO_MAX)).otherwise(F.col(maximum))
    return F.col(value) / denominator.cast("double")


def add_post_score(posts: DataFrame) -> DataFrame:
    """Add ``post_score``; a zero maximum counts as :data:`ZERO_MAX` (the reference)."""
    needed = ("mirrors", "collects", "comments", "age")
    require_columns(posts, [*needed, *[f"max_{c}" for c in needed]], "posts")
    F = api(posts).F
    score = (
        _ratio(F, "mirrors", "max_mirrors")
        + _ratio(F, "collects", "max_collects")
        + F.lit(3) * _ratio(F, "comments", "max_comments")
        - F.lit(5) * _ratio(F, "age", "max_age")
    )
    return posts.withColumn("post_score", score)


def select_features(features: DataFrame) -> DataFrame:
    """The output columns, in order, with their stable types."""
    require_columns(features, FEATURE_COLUMNS, "features")
    F = api(features).F
    return features.select(*[F.col(name).cast(kind).alias(name) for name, kind, _ in _OUTPUT])


def post_features(
    posts: DataFrame, stats: DataFrame, trust: DataFrame | None, feature_time: datetime
) -> DataFrame:
    """One row of features per current post.

    Args:
        posts: current posts (:func:`current_posts`), the authors' whole history.
        stats: current stats (:func:`current_stats`).
        trust: ``i, v, rank`` per profile, or None (every trust column null).
        feature_time: aware datetime the ages are counted to (never the wall clock).

    Returns:
        :data:`FEATURE_COLUMNS` with stable types, unordered.

    Raises:
        KeyError: an input lacks a column (named).
        ValueError: ``feature_time`` is naive.
    """
    require_columns(posts, _POST_COLUMNS, "posts")
    require_columns(stats, _STATS_COLUMNS, "stats")
    if trust is not None:
        require_columns(trust, _TRUST_COLUMNS, "trust")
    frame = posts.select(*_POST_COLUMNS)
    frame = join_stats(frame, stats)
    frame = join_trust(frame, trust)
    frame = add_flags(frame)
    frame = add_age(frame, feature_time)
    frame = add_author_maxima(frame)
    frame = add_post_score(frame)
    return select_features(frame)


# ---------------------------------------------------------------------------
# writing


def write_features(
    features: DataFrame,
    out_dir: str | Path,
    *,
    rows_per_part: int = ROWS_PER_PART,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> list[Path]:
    """Write the features as ``<out_dir>/features/part-NNNNN.parquet``, sorted by ``post_id``.

    The engine sorts and the rows are rewritten with pinned writer options into
    files of exactly ``rows_per_part`` rows (the last fewer) and row groups of
    ``row_group_rows`` (:func:`lensfeed.frames.write_sorted`). File names, row
    placement and bytes depend only on the rows, never on the engine or its
    partitioning; memory holds one row group.

    Returns:
        The files written, in order.

    Raises:
        ValueError: ``rows_per_part`` is not a positive multiple of the row
            group size (``min(row_group_rows, rows_per_part)``).
        RuntimeError: the rows are not sorted by a unique ``post_id``.
    """
    check_part_size(rows_per_part, row_group_rows)
    out = Path(out_dir).absolute()
    if tuple(features.columns) != FEATURE_COLUMNS:
        features = select_features(features)
    return write_sorted(
        features,
        out / FEATURES_DIR,
        FEATURES_SCHEMA,
        "post_id",
        rows_per_part=rows_per_part,
        row_group_rows=row_group_rows,
        scratch=out / "_features_spark",
    )
