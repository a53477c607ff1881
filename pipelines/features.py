"""Pipeline ``features``: one row of model features per post known so far (PySpark API).

Inputs (one datum, the cross of):
  posts  repo ``ingest``, glob ``/public_profile_post``: ``<posts>/public_profile_post/dtime=<T>/*.parquet``
  stats  repo ``ingest``, glob ``/public_publication_stats``: the same layout
  trust  repo ``trust``, glob ``/``: ``<trust>/trust.parquet`` (absent -> null trust)
Output: ``<out>/features/part-NNNNN.parquet``, one row per current post or
mirror, sorted by ``post_id`` (columns: ``lensfeed.features.FEATURE_COLUMNS``).
``feature_time`` is the newest ``dtime`` of the inputs, never the wall clock.
Idempotent: the same inputs give byte-identical files, on either engine.
Without any post partition it writes nothing and opens no session.

Engine: ``FEATURES_ENGINE`` = ``duckdb`` (default: the PySpark DataFrame code
runs in-process on DuckDB through sqlframe, no JVM) or ``spark`` (``SPARK_MASTER``
or ``SPARK_REMOTE``); see :mod:`lensfeed.frames`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from lensfeed import features as feat
from lensfeed.frames import close_session, materialize, open_session
from lensfeed.schemas import POSTS, STATS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="features", description=__doc__)
    for name in ("posts", "stats", "trust", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"/pfs/{name}")
    parser.add_argument("--rows-per-part", type=int, default=feat.ROWS_PER_PART)
    return parser


def _run(args: argparse.Namespace, spark: Any, feature_time: datetime) -> list[Path]:
    posts = feat.read_partitions(spark, args.posts / POSTS)
    stats = feat.read_partitions(spark, args.stats / STATS)
    posts = materialize(feat.current_posts(feat.project(posts, feat.POST_INPUT_COLUMNS, "posts")))
    stats = materialize(feat.current_stats(feat.project(stats, feat.STATS_INPUT_COLUMNS, "stats")))
    trust = feat.read_trust(spark, args.trust / "trust.parquet")
    table = feat.post_features(posts, stats, trust, feature_time)
    return feat.write_features(table, args.out, rows_per_part=args.rows_per_part)


def main(argv: Sequence[str] | None = None, spark: Any = None) -> int:
    """Run the stage; ``spark`` reuses a session of either engine (tests), else one
    of ``$FEATURES_ENGINE`` is opened and closed."""
    args = _parser().parse_args(argv)
    began = time.perf_counter()
    try:
        post_times = feat.partition_times(args.posts / POSTS)
        if not post_times:
            print(f"features: no partition under {args.posts / POSTS}; nothing to do")
            return 0
        feature_time = feat.feature_time_of(post_times, feat.partition_times(args.stats / STATS))
        session = spark if spark is not None else open_session("features")
        try:
            paths = _run(args, session, feature_time)
        finally:
            if spark is None:
                close_session(session)
    except (KeyError, ValueError) as exc:
        print(f"features: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    print(
        f"features: {len(paths)} file(s) at feature_time {feature_time:%Y-%m-%dT%H:%M:%SZ} "
        f"in {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
