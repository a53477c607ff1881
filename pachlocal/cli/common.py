"""The plumbing every noun's commands share: the command registry, output helpers
(tables, JSON, relative times), progress on stderr and the reference grammar
(``repo@branch:/path``, ``repo@branch``, ``pipeline@job``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine import Progress
from ..store import clean_path

PROJECT = "default"


class UsageError(Exception):
    """Bad arguments: printed without a traceback."""


# -- output helpers ----------------------------------------------------------------------


def ago(t: float | None) -> str:
    if t is None:
        return "-"
    d = max(0, int(time.time() - t))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if d >= size:
            n = d // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "Less than a second ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cols = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    return "\n".join(
        " ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cols
    )


def emit(raw: bool, data: Any, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    if raw:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(table(headers, rows))


# -- references ----------------------------------------------------------------------------


def parse_file_ref(ref: str) -> tuple[str, str, str]:
    """``repo@branch:/path`` -> (repo, branch-or-commit, path)."""
    head, sep, path = ref.partition(":")
    repo, at, branch = head.partition("@")
    if not repo or (at and not branch):
        raise UsageError(f"bad file reference {ref!r}: expected repo@branch:/path")
    if not at and not sep:
        return head, "master", "/"
    return repo, branch or "master", clean_path(path or "/")


def parse_branch_ref(text: str) -> tuple[str, str]:
    """``repo@branch`` -> (repo, branch); both are required."""
    repo, at, branch = text.partition("@")
    if not at or not branch:
        raise UsageError(f"{text!r}: expected repo@branch")
    return repo, branch


def parse_job_ref(ref: str) -> tuple[str, str]:
    """``pipeline@job`` -> (pipeline, job id)."""
    pipeline, sep, job_id = ref.partition("@")
    if not sep or not job_id:
        raise UsageError(f"bad job reference {ref!r}: expected pipeline@job")
    return pipeline, job_id


def commit_set_id(ref: str) -> str:
    return ref.rpartition("@")[2]  # pachctl takes the set's id (or any commit of it)


# -- progress ------------------------------------------------------------------------------


def make_progress(quiet: bool) -> Progress:
    tty = sys.stderr.isatty() and not os.environ.get("CI")

    def datum_done(pipeline: str, done: int, total: int) -> None:
        if tty and total:
            sys.stderr.write(f"\r{pipeline}: datums {done}/{total}")
            sys.stderr.flush()

    def job_finished(job: Mapping[str, Any]) -> None:
        if tty:
            sys.stderr.write("\r\033[K")
        if not quiet:
            sys.stderr.write(
                f"job {job['pipeline']}@{job['id']}: {job['state']} "
                f"({job['processed']} processed, {job['skipped']} skipped, {job['failed']} failed"
                f"{', ' + job['reason'] if job['reason'] else ''})\n"
            )

    return Progress(datum_done=datum_done, job_finished=job_finished)


# -- the command registry ------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, Any], int]  # (args, Engine | None for state=False)


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call, declared next to its command."""

    flags: tuple[str, ...]
    options: dict[str, Any]


def A(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


RAW = A("--raw", action="store_true", help="print JSON")


@dataclass(frozen=True)
class Command:
    handler: Handler
    write: bool
    args: Sequence[Arg]
    state: bool = True  # False: the command never touches the local state directory


COMMANDS: dict[tuple[str, str], Command] = {}


def command(
    verb: str, noun: str, *, write: bool, args: Sequence[Arg] = (), state: bool = True
) -> Callable[[Handler], Handler]:
    """Register a ``pachlocal VERB [NOUN]`` handler; ``write`` takes the state's writer lock."""

    def wrap(fn: Handler) -> Handler:
        COMMANDS[(verb, noun)] = Command(fn, write, args, state)
        return fn

    return wrap
