"""Pipeline ``features``: one row of model features per post known so far (PySpark API).

Inputs (one datum, the cross of):
  compact  repo ``compact``, glob ``/``: each tick's posts and stats, deduplicated
  history  repo ``history``, glob ``/``: every day merged, as of the last daily trigger
  trust    repo ``trust``, glob ``/``: ``<trust>/trust.parquet`` (absent -> null trust)
The current posts and stats are the history plus the ticks it does not hold
(:func:`lensfeed.compact.current_state`): the same rows as deduplicating every
ingested partition, at the cost of the ticks since the last (daily) merge.
Output: ``<out>/features/part-NNNNN.parquet``, one row per current post or
mirror, sorted by ``post_id`` (columns: ``lensfeed.features.FEATURE_COLUMNS``).
``feature_time`` is the newest ingest tick of the inputs, never the wall clock.
Idempotent: the same inputs give byte-identical files, on either engine.
Without any post it writes nothing.

Engine: ``FEATURES_ENGINE`` = ``duckdb`` (default: the PySpark DataFrame code
runs in-process on DuckDB through sqlframe, no JVM) or ``spark`` (``SPARK_MASTER``
or ``SPARK_REMOTE``); see :mod:`lensfeed.frames`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lensfeed import compact
from lensfeed import features as feat
from lensfeed.frames import session_scope
from lensfeed.parquet import TRUST_FILE, tick_name
from lensfeed.schemas import POSTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="features", description=__doc__.splitlines()[0])
    for name in ("compact", "history", "trust", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"/pfs/{name}")
    parser.add_argument("--rows-per-part", type=int, default=feat.ROWS_PER_PART)
    return parser


def _run(args: argparse.Namespace, session: Any) -> str:
    state = compact.current_state(session, args.compact, args.history)
    if state.feature_time is None or not compact.part_files(args.compact, POSTS):
        return f"no post under {args.compact}; nothing to do"
    trust = feat.read_trust(session, args.trust / TRUST_FILE)
    table = feat.post_features(state.posts, state.stats, trust, state.feature_time)
    paths = feat.write_features(table, args.out, rows_per_part=args.rows_per_part)
    recent = sorted({tick for ticks in state.recent.values() for tick in ticks})
    span = f"{len(recent)} ({recent[0]} .. {recent[-1]})" if recent else "none"
    return (
        f"{len(paths)} file(s) at feature_time {tick_name(state.feature_time)}; "
        f"ticks merged here: {span}"
    )


def main(argv: Sequence[str] | None = None, spark: Any = None) -> int:
    """Run the stage; ``spark`` reuses a session of either engine (tests), else one
    of ``$FEATURES_ENGINE`` is opened and closed."""
    args = _parser().parse_args(argv)
    began = time.perf_counter()
    try:
        with session_scope("features", spark) as session:
            summary = _run(args, session)
    except (KeyError, ValueError) as exc:
        print(f"features: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    print(f"features: {summary} ({time.perf_counter() - began:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
