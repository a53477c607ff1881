"""``make run``'s console: progress on stderr, one line per tick, a failed job at once on a
line of its own; the text itself comes from :mod:`lensrun.report`."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pachlocal.engine import Progress

from . import report


class Console:
    """Progress on stderr: one line per tick, failed jobs at once on a line of their own.

    On a terminal (not in CI) the current job and datum counters update in place. Quiet:
    failures only.
    """

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not os.environ.get("CI")
        self.jobs: list[dict[str, Any]] = []  # finished since the last take_jobs()
        self.since = time.monotonic()

    def _write(self, text: str, end: str = "\n") -> None:
        sys.stderr.write(("\r\033[K" if self.tty else "") + text + end)
        sys.stderr.flush()

    def say(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def error(self, text: str) -> None:
        """Said even when quiet."""
        self._write(text)

    def status(self, text: str) -> None:
        """A line on a terminal that the next one replaces; nothing elsewhere."""
        if self.tty and not self.quiet:
            self._write(text, end="")

    def progress(self) -> Progress:
        def datum_done(pipeline: str, done: int, total: int) -> None:
            if total:
                self.status(f"  {pipeline}: datum {done}/{total}")

        def job_finished(job: Mapping[str, Any]) -> None:
            self.jobs.append(dict(job))
            if job["state"] != "success":
                self.error(report.failure_line(job))
            else:
                self.status(f"  {len(self.jobs)} jobs done, last {job['pipeline']}")

        return Progress(datum_done=datum_done, job_finished=job_finished)

    def take_jobs(self) -> tuple[list[dict[str, Any]], float]:
        """The jobs finished since the last call, and the seconds since then."""
        jobs, self.jobs = self.jobs, []
        now = time.monotonic()
        seconds, self.since = now - self.since, now
        return jobs, seconds

    def tick_done(self, when: datetime) -> None:
        jobs, seconds = self.take_jobs()
        self.say(report.tick_line(f"tick {when:%Y-%m-%dT%H:%MZ}", jobs, seconds))
