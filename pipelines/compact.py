"""Pipeline ``compact``: one UTC day of ingested posts and stats, reduced to its current state.

Inputs (a ``group``: one datum per UTC day of the ingest ticks):
  posts  repo ``ingest``, glob ``/public_profile_post/dtime=(????-??-??)T*``, groupBy ``$1``
  stats  repo ``ingest``, glob ``/public_publication_stats/dtime=(????-??-??)T*``, groupBy ``$1``
Output: ``/<table>/day=<D>/part-NNNNN.parquet`` (the newest row per key of that
day, sorted by key) and ``/_ticks/<D>.json``; see :mod:`lensfeed.compact`.
A day whose partitions did not change is skipped by datum reuse, so its files,
and every downstream datum that reads only them, stay as they were.
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
from lensfeed.frames import close_session, open_session
from lensfeed.schemas import POSTS, STATS


def main(argv: Sequence[str] | None = None, session: Any = None) -> int:
    """Run one datum; ``session`` reuses a session of either engine (tests)."""
    parser = argparse.ArgumentParser(prog="compact", description=__doc__.splitlines()[0])
    for name in ("posts", "stats", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"/pfs/{name}")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    inputs = {POSTS: args.posts / POSTS, STATS: args.stats / STATS}
    opened = session if session is not None else open_session("compact")
    try:
        day = compact.compact_day(opened, inputs, args.out)
    except (KeyError, ValueError) as exc:
        print(f"compact: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    finally:
        if session is None:
            close_session(opened)
    if day is None:
        print("compact: no partition in this datum; nothing to do")
    else:
        print(f"compact: day {day} in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
