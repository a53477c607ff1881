"""The verbs without a noun, that run the engine or look after the state as a whole:
``run [cron]``, ``tick``, ``serve``, ``deploy`` (to a real pachd) and ``fsck``."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .. import cron
from ..diff import bytes_size
from ..engine import Engine
from ..store import fsck_report
from .common import A, command


@command("run", "cron", write=True, args=[A("pipeline")])
def run_cron(a: argparse.Namespace, e: Engine) -> int:
    e.run_cron(a.pipeline)
    e.run_pending()
    return 0


@command("run", "", write=True)
def run_jobs(a: argparse.Namespace, e: Engine) -> int:
    jobs = e.run_pending()
    return 1 if any(j["state"] != "success" for j in jobs) else 0


_TICK_ARGS = [
    A("--until", required=True, help="RFC 3339 time, or 'now'"),
]


@command("tick", "", write=True, args=_TICK_ARGS)
def tick(a: argparse.Namespace, e: Engine) -> int:
    until = datetime.now(UTC) if a.until == "now" else cron.parse_rfc3339(a.until)
    e.run_pending()
    fired = e.tick_until(until)
    print(f"fired {len(fired)} tick(s) up to {cron.format_tick(until)}", file=sys.stderr)
    return 0


@command("serve", "", write=True)
def serve(a: argparse.Namespace, e: Engine) -> int:
    """Fire cron ticks on schedule and run jobs until Ctrl-C."""
    print("pachlocal: serving; Ctrl-C to stop", file=sys.stderr)
    try:
        while True:
            e.run_pending()
            e.tick_until(datetime.now(UTC))
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("pachlocal: stopped", file=sys.stderr)
    return 0


@command(
    "deploy",
    "",
    write=False,
    state=False,
    args=[
        A("--pachd", help="pachd address (default: PACHD_ADDRESS, else the pachctl context)"),
        A("--secrets", help="directory of filled Secret JSON files to create"),
        A("--update", action="store_true", help="replace secrets, update pipelines"),
        A("--reprocess", action="store_true", help="with --update: reprocess all datums"),
        A("--dry-run", action="store_true", help="print the plan, send nothing"),
    ],
)
def deploy(a: argparse.Namespace, e: Engine | None) -> int:
    """Create this project's repos, secrets and pipelines (specs/) on a real pachd."""
    from ..deploy import deploy as run

    secrets = Path(a.secrets) if a.secrets else None
    run(
        Path("."),
        address=a.pachd,
        secrets_dir=secrets,
        update=a.update,
        out=sys.stdout,
        reprocess=a.reprocess,
        dry_run=a.dry_run,
    )
    return 0


@command("fsck", "", write=True)
def fsck(a: argparse.Namespace, e: Engine) -> int:
    """Check the state: branch heads, commits, manifests, every referenced object re-hashed,
    staged files and jobs; prints one line per problem, exits 1 if there is any."""
    report = fsck_report(e.store)
    for p in report.problems:
        print(p)
    notes = [f"fsck: {len(report.problems)} problem(s)"]
    if report.open_commits:
        notes.append(f"open commit(s): {', '.join(report.open_commits)}")
    if report.unreferenced:
        notes.append(
            f"{len(report.unreferenced)} unreferenced object(s) "
            f"({bytes_size(report.unreferenced_bytes)}) left by interrupted writes"
        )
    print("; ".join(notes), file=sys.stderr)
    return 1 if report.problems else 0
