"""Cron inputs: which ticks are due, as pachd's cron input computes them.

A cron input's tick repo holds one file per tick (or only the newest, with
``overwrite``). The schedule resumes after the newest tick in the repo or the input's
``start``, whichever is later (pachd's ``getLatestCronTime``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import cron
from .jobqueue import branch_leaves
from .store import PpsRecords, Store


class CronTicks:
    """The cron inputs of the running pipelines and their due ticks."""

    def __init__(self, store: Store, pps: PpsRecords) -> None:
        self.store = store
        self.pps = pps

    def cron_inputs(self) -> list[tuple[str, dict[str, Any]]]:
        """``(pipeline, leaf)`` of every cron input of a running pipeline (a stopped
        pipeline's ticks come when it starts again)."""
        return [
            (p["name"], leaf)
            for p in self.pps.pipelines()
            if not p["stopped"]
            for leaf in branch_leaves(p["spec"].get("input") or {})
            if leaf["kind"] == "cron"
        ]

    def due(self, until: datetime) -> list[tuple[datetime, str, dict[str, Any]]]:
        """Every tick due up to ``until`` for every cron input, oldest first."""
        due = []
        for name, leaf in self.cron_inputs():
            schedule = cron.parse_schedule(leaf["spec"])
            last = self.last_tick(self.pps.pipeline(name), leaf)
            for t in cron.ticks_between(schedule, last, until, limit=100_000):
                due.append((t, name, leaf))
        due.sort(key=lambda x: (x[0], x[1], x[2]["name"]))
        return due

    def last_tick(self, pipeline: Mapping[str, Any], leaf: Mapping[str, Any]) -> datetime:
        """The tick the schedule resumes after: the newest tick in the tick repo or the
        input's ``start``, whichever is later (a ``start`` moved forward by ``update
        pipeline`` skips the ticks before it). Without a ``start``, pachd sets it to the
        time the pipeline was created or updated."""
        if leaf.get("start"):
            start = cron.parse_rfc3339(leaf["start"])
        else:
            start = datetime.fromtimestamp(pipeline["updated"], UTC).replace(microsecond=0)
        latest = self.newest_tick(leaf)
        return max(latest, start) if latest is not None else start

    def newest_tick(self, leaf: Mapping[str, Any]) -> datetime | None:
        head = self.store.branch_head(leaf["repo"], "master")
        if not head:
            return None
        files = self.store.manifest(self.store.get_commit(leaf["repo"], head))
        latest = cron.latest_tick([p.lstrip("/") for p in files])
        if latest is not None:
            return latest
        # overwrite ticks are deleted and re-added: fall back to the tick commits' times
        stamp = self.pps.logical_time(head)
        return datetime.fromisoformat(stamp) if stamp else None
