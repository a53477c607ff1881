"""Command line of the local runner: ``python -m lensrun generate|compare ...``.

``generate`` writes deterministic Lens-shaped export objects (Parquet) under
``--out``, laid out as ``<out>/<prefix>/<table>/<export time>-<part>.parquet``,
and prints a one-line summary. Idempotent: the same arguments rewrite the same
bytes.

``compare A B`` holds two pachlocal state directories against each other, every repo's
history file by file (:mod:`lensrun.compare`), and exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from lensrun.compare import RUN_SPECIFIC, differences
from lensrun.generate import generate_dataset, plan_exports, write_exports


def _moment(text: str) -> datetime:
    """An ISO 8601 time; a time without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lensrun", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write sample Lens export objects")
    generate.add_argument("--posts", type=int, required=True, help="posts and mirrors")
    generate.add_argument("--seed", type=int, required=True)
    generate.add_argument("--start", type=_moment, required=True, help="ISO time (UTC if naive)")
    generate.add_argument("--end", type=_moment, required=True, help="ISO time (UTC if naive)")
    generate.add_argument("--objects-per-hour", type=int, required=True, help="export ticks/hour")
    generate.add_argument("--out", required=True, help="directory to write into")
    generate.add_argument("--profiles", type=int, default=None, help="default: posts / 20")
    generate.add_argument("--prefix", default="lens", help="first path component of objects")
    generate.add_argument("--snapshot-every-hours", type=int, default=24)
    compare = commands.add_parser("compare", help="compare two pachlocal state directories")
    compare.add_argument("a", type=Path, help="a PACHLOCAL_HOME")
    compare.add_argument("b", type=Path, help="another PACHLOCAL_HOME")
    compare.add_argument(
        "--all", action="store_true", help="also the files that name commits (always differ)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "compare":
        return _compare(args)
    return _generate(parser, args)


def _compare(args: argparse.Namespace) -> int:
    found = differences(args.a, args.b, ignore=() if args.all else RUN_SPECIFIC)
    for line in found:
        print(line)  # noqa: T201
    skipped = "" if args.all else f" (skipped: {', '.join(RUN_SPECIFIC)})"
    print(f"{len(found)} difference(s){skipped}")  # noqa: T201
    return 1 if found else 0


def _generate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    began = time.perf_counter()
    try:
        dataset = generate_dataset(args.posts, args.seed, args.start, args.end, args.profiles)
        objects = plan_exports(
            dataset,
            args.start,
            args.end,
            args.objects_per_hour,
            args.seed,
            prefix=args.prefix,
            snapshot_every_hours=args.snapshot_every_hours,
        )
    except ValueError as exc:
        parser.error(str(exc))
    paths = write_exports(objects, args.out)
    size = sum(path.stat().st_size for path in paths)
    rows = ", ".join(f"{name} {table.num_rows}" for name, table in dataset.items())
    print(  # noqa: T201
        f"wrote {len(paths)} objects ({size / 2**20:.1f} MiB) to {args.out} "
        f"in {time.perf_counter() - began:.1f} s; rows at end: {rows}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
