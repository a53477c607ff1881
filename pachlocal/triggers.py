"""Branch triggers, as pachd's ``isTriggered`` and ``runCronTrigger`` evaluate them.

A triggered branch moves to its source branch's head when its condition holds:
``commits`` new commits since the triggered branch's head, ``size`` bytes the repo
grew by since that head, ``rateLimitSpec`` a tick passed since the head's logical time
(``all`` requires every condition set, else any one). A ``cronSpec`` never fires on a
commit: its schedule moves the branch (:func:`scheduled_moves`), as in pachd since 2.9.
An empty triggered branch waits for its condition like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import cron
from .store import Commit, PpsRecords, Store, StoreError

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def parse_size(text: str) -> int:
    """A trigger's ``size``: ``100MB``, ``1GiB``, ``512`` (bytes)."""
    num = text.strip().upper().rstrip()
    digits = num.rstrip("KMGIB")
    unit = num[len(digits) :]
    if unit not in _SIZE_UNITS or not digits:
        raise StoreError(f"trigger size {text!r}: expected e.g. 100MB or 1GiB")
    return int(float(digits) * _SIZE_UNITS[unit])


@dataclass(frozen=True)
class Move:
    """A scheduled move of a ``cronSpec``-triggered branch."""

    when: datetime
    repo: str
    branch: str
    source: str


class Triggers:
    """Trigger evaluation over the store's branches and commit sets."""

    def __init__(self, store: Store, pps: PpsRecords) -> None:
        self.store = store
        self.pps = pps

    def fired(self, repo: str, branch: str, head: str, logical_time: str) -> list[str]:
        """Branches of ``repo`` whose trigger on ``branch`` fires with the new ``head``."""
        fired = []
        for tb in self.store.triggered_branches(repo):
            trig = tb.trigger
            if tb.source != branch or tb.name == branch or trig.get("cronSpec"):
                continue
            new = self.commits_since(repo, head, tb.head)
            old_size = self.store.get_commit(repo, tb.head).size if tb.head else 0
            results = []
            if trig.get("commits"):
                results.append(len(new) >= int(trig["commits"]))
            if trig.get("size"):  # bytes the repo grew by since the triggered head
                new_size = new[0].size if new else old_size
                results.append(new_size - old_size >= parse_size(trig["size"]))
            if trig.get("rateLimitSpec"):  # a tick passed since the head
                results.append(self.tick_passed(trig["rateLimitSpec"], tb.head, logical_time))
            if not results:
                results.append(True)
            if all(results) if trig.get("all") else any(results):
                fired.append(tb.name)
        return fired

    def scheduled_moves(self) -> list[Move]:
        """The next scheduled move of every ``cronSpec``-triggered branch whose source has
        data, soonest first.

        pachd counts the schedule from the start of the branch's head commit; here that is
        the logical time of the head's commit set (a move by ``create branch --head``
        carries the logical time of the commit it points at). A branch still empty counts
        from the source branch's first commit: in a backfill pachlocal has no creation
        time on the data's clock."""
        due = []
        for tb in self.store.triggered_branches():
            if not tb.trigger.get("cronSpec") or not self.store.branch_head(tb.repo, tb.source):
                continue
            since = self._time(tb.head) if tb.head else None
            if since is None:
                since = self._first_commit_time(tb.repo, tb.source)
            if since is None:
                continue
            nxt = cron.parse_schedule(tb.trigger["cronSpec"]).next(since)
            if nxt is not None:
                due.append(Move(nxt, tb.repo, tb.name, tb.source))
        return sorted(due, key=lambda m: (m.when, m.repo, m.branch, m.source))

    def empty_branches(self) -> list[tuple[str, str, str]]:
        """``(repo, branch, source)`` of every triggered branch still without a head whose
        source branch holds files: what waits for its trigger's first firing."""
        out = []
        for tb in self.store.triggered_branches():
            if tb.head is not None:
                continue
            head = self.store.branch_head(tb.repo, tb.source)
            if head and self.store.get_commit(tb.repo, head).size > 0:
                out.append((tb.repo, tb.name, tb.source))
        return out

    def tick_passed(self, spec: str, head: str | None, logical_time: str) -> bool:
        """Whether a tick of ``spec`` lies between ``head``'s logical time and ``logical_time``."""
        last = self.pps.logical_time(head) if head else None
        if last is None:
            return True
        nxt = cron.parse_schedule(spec).next(datetime.fromisoformat(last))
        return nxt is not None and nxt <= datetime.fromisoformat(logical_time)

    def commits_since(self, repo: str, head: str, stop: str | None) -> list[Commit]:
        """``head`` and its ancestors down to (not including) ``stop``, newest first."""
        out = []
        commit = self.store.find_commit(repo, head)
        while commit is not None and commit.id != stop:
            out.append(commit)
            commit = self.store.find_commit(repo, commit.parent) if commit.parent else None
        return out

    def _time(self, set_id: str) -> datetime | None:
        stamp = self.pps.logical_time(set_id)
        return datetime.fromisoformat(stamp) if stamp else None

    def _first_commit_time(self, repo: str, branch: str) -> datetime | None:
        commits = self.commits_since(repo, self.store.branch_head(repo, branch) or "", None)
        return self._time(commits[-1].id) if commits else None
