"""Pipeline ``history``: every compacted tick merged into one current state per table, daily.

Input: repo ``compact`` through a branch triggered ``@daily``, glob ``/`` (one datum).
Output: ``/<table>/part-NNNNN.parquet`` (the newest row per key over every
tick, sorted by key) and ``/parts.json`` (the SHA-256 of each tick's files
merged); see :mod:`lensfeed.compact`. The features step merges only the ticks since.
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


def main(argv: Sequence[str] | None = None, session: Any = None) -> int:
    """Run the datum; ``session`` reuses a session of either engine (tests)."""
    parser = argparse.ArgumentParser(prog="history", description=__doc__.splitlines()[0])
    for name in ("compact", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"/pfs/{name}")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        with session_scope("history", session) as opened:
            merged = compact.merge_history(opened, args.compact, args.out)
    except (KeyError, ValueError) as exc:
        print(f"history: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    ticks = sorted({tick for per_table in merged.values() for tick in per_table})
    span = f"{ticks[0]} .. {ticks[-1]}" if ticks else "no tick"
    print(f"history: {len(ticks)} tick(s) ({span}) in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
