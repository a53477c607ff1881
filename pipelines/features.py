"""Pipeline ``features``: one row of model features per post known so far (PySpark).

Inputs (one datum, the cross of):
  posts  repo ``ingest``, glob ``/public_profile_post``: ``<posts>/public_profile_post/dtime=<T>/*.parquet``
  stats  repo ``ingest``, glob ``/public_publication_stats``: the same layout
  trust  repo ``trust``, glob ``/``: ``<trust>/trust.parquet`` (absent -> null trust)
Output: ``<out>/features/part-NNNNN.parquet``, one row per current post or
mirror, sorted by ``post_id`` (columns: ``lensfeed.features.FEATURE_COLUMNS``).
``feature_time`` is the newest ``dtime`` of the inputs, never the wall clock.
Idempotent: the same inputs give byte-identical files. Without any post
partition it writes nothing and never starts Spark.
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
from lensfeed.schemas import POSTS, STATS
from lensfeed.spark import spark_session


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="features", description=__doc__)
    for name in ("posts", "stats", "trust", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"/pfs/{name}")
    parser.add_argument("--rows-per-part", type=int, default=feat.ROWS_PER_PART)
    return parser


def _run(args: argparse.Namespace, spark: Any, feature_time: datetime) -> list[Path]:
    posts = feat.current_posts(feat.read_partitions(spark, args.posts / POSTS))
    stats = feat.current_stats(feat.read_partitions(spark, args.stats / STATS))
    trust = feat.read_trust(spark, args.trust / "trust.parquet")
    table = feat.post_features(posts, stats, trust, feature_time)
    return feat.write_features(table, args.out, rows_per_part=args.rows_per_part)


def main(argv: Sequence[str] | None = None, spark: Any = None) -> int:
    """Run the stage; ``spark`` reuses a session (tests), else one is started and stopped."""
    args = _parser().parse_args(argv)
    began = time.perf_counter()
    try:
        post_times = feat.partition_times(args.posts / POSTS)
        if not post_times:
            print(f"features: no partition under {args.posts / POSTS}; nothing to do")
            return 0
        feature_time = feat.feature_time_of(post_times, feat.partition_times(args.stats / STATS))
        session = spark if spark is not None else spark_session("features")
        try:
            paths = _run(args, session, feature_time)
        finally:
            if spark is None:
                session.stop()
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
