"""What ``make run`` prints, as text: progress lines, the table of jobs, the top of the
feed and how the feed moved.

Pure functions from job rows (``engine.jobs()``), feed rows and
:class:`lensrun.lineage.FeedMoves` to lines; no I/O, so each is testable on
hand-made rows.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from datetime import datetime
from typing import Any

from .lineage import FeedMoves

Job = Mapping[str, Any]


def align(rows: Sequence[Sequence[str]], right: Container[int] = ()) -> list[str]:
    """Rows of cells as lines of aligned columns, two spaces apart; the columns whose
    index is in ``right`` (numbers) are right-aligned."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def job_seconds(job: Job) -> float:
    """How long a job ran (0 for one that never started)."""
    if job.get("started") is None or job.get("finished") is None:
        return 0.0
    return max(0.0, float(job["finished"]) - float(job["started"]))


def _failed(jobs: Sequence[Job]) -> int:
    return sum(job["state"] != "success" for job in jobs)


def tick_line(label: str, jobs: Sequence[Job], seconds: float) -> str:
    """One progress line for the jobs of a tick: counts of jobs and datums, wall time."""
    processed = sum(job["processed"] for job in jobs)
    skipped = sum(job["skipped"] for job in jobs)
    return (
        f"{label}  {len(jobs)} jobs  {processed} datums processed  {skipped} skipped  "
        f"{_failed(jobs)} failed  {seconds:.1f} s"
    )


def failure_line(job: Job) -> str:
    """A failed job, reported at once: which, and why."""
    reason = job.get("reason") or "no reason recorded"
    return f"FAILED job {job['pipeline']}@{job['id']} ({job['state']}): {reason}"


JOB_HEADER: tuple[str, ...] = ("pipeline", "jobs", "processed", "skipped", "failed", "seconds")


def job_table(jobs: Sequence[Job]) -> list[str]:
    """One row per pipeline (in the order their first jobs ran) and a total: jobs, datums
    processed and skipped, failed jobs, seconds the jobs ran."""
    first: dict[str, int] = {}
    for job in jobs:
        first[job["pipeline"]] = min(job["seq"], first.get(job["pipeline"], job["seq"]))

    def row(name: str, mine: Sequence[Job]) -> tuple[str, ...]:
        return (
            name,
            str(len(mine)),
            str(sum(j["processed"] for j in mine)),
            str(sum(j["skipped"] for j in mine)),
            str(_failed(mine)),
            f"{sum(job_seconds(j) for j in mine):.1f}",
        )

    rows: list[tuple[str, ...]] = [JOB_HEADER]
    for name in sorted(first, key=lambda n: first[n]):
        rows.append(row(name, [j for j in jobs if j["pipeline"] == name]))
    rows.append(row("total", jobs))
    return align(rows, right=range(1, len(JOB_HEADER)))


def format_rank(v: float) -> str:
    """``v`` as the feed stores it (float8) but as what it is: an integer rank n..1."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _cell(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return format(value, spec)


TOP_HEADER = ("v", "post_id", "label", "P(YES)", "engagement", "posted")


def top_lines(
    rows: Sequence[tuple[str, float]], details: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The top of the feed: ``(post_id, v)`` rows, with what the predictions say of each
    post where ``details`` has it (``-`` where not)."""
    table = [TOP_HEADER]
    for post_id, v in rows:
        d = details.get(post_id, {})
        table.append(
            (
                format_rank(v),
                post_id,
                _cell(d.get("label")),
                _cell(d.get("p_yes"), ".2f"),
                _cell(d.get("engagement")),
                _cell(d.get("block_timestamp")),
            )
        )
    return align(table, right={0, 3, 4})


def moves_lines(moves: FeedMoves, limit: int = 6) -> list[str]:
    """Counts of entered, left, moved and unchanged posts, then at most ``limit`` of the
    changes (entered, left, then the largest moves), positions counted from the top."""
    counts = (
        f"{len(moves.entered)} entered, {len(moves.left)} left, {len(moves.moved)} moved, "
        f"{moves.unchanged} unchanged (position 1 = top of the feed)"
    )
    changes = [(p, "-", f"#{n}", "entered") for p, n in moves.entered]
    changes += [(p, f"#{o}", "-", "left") for p, o in moves.left]
    changes += [
        (p, f"#{o}", f"#{n}", f"{'up' if n < o else 'down'} {abs(o - n)}")
        for p, o, n in moves.moved
    ]
    table = [
        ("post_id", "old", "", "new", ""),
        *((p, o, "->", n, k) for p, o, n, k in changes[:limit]),
    ]
    lines = [counts, *(align(table, right={1, 3}) if changes else [])]
    if len(changes) > limit:
        lines.append(f"... {len(changes) - limit} more")
    return lines
