"""Pipeline ``compact``: one ingest tick of posts and stats, reduced to the columns and rows used.

Inputs (a ``group``: one datum per ingest tick):
  posts  repo ``ingest``, glob ``/public_profile_post/dtime=(*)``, groupBy ``$1``
  stats  repo ``ingest``, glob ``/public_publication_stats/dtime=(*)``, groupBy ``$1``
Output: ``/<table>/dtime=<T>/part-NNNNN.parquet`` (the newest row per key of
the tick, sorted by key); see :mod:`lensfeed.compact`. A tick is compacted
once: datum reuse skips it at every later tick, so its files stay as they were.
Engine: ``FEATURES_ENGINE`` (see :mod:`lensfeed.frames`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lensfeed import compact
from lensfeed.frames import session_scope
from lensfeed.schemas import POSTS, STATS


def main(argv: Sequence[str] | None = None, session: Any = None) -> int:
    """Run one datum; ``session`` reuses a session of either engine (tests)."""
    parser = argparse.ArgumentParser(prog="compact", description=__doc__.splitlines()[0])
    for name in ("posts", "stats", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"/pfs/{name}")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    inputs = {POSTS: args.posts / POSTS, STATS: args.stats / STATS}
    try:
        with session_scope("compact", session) as opened:
            tick = compact.compact_partition(opened, inputs, args.out)
    except (KeyError, ValueError) as exc:
        print(f"compact: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    if tick is None:
        print("compact: no partition in this datum; nothing to do")
    else:
        print(f"compact: tick {tick} in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
