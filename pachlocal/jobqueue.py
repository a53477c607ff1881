"""The job queue: what a new commit sets off.

A change to a branch (a user commit, a cron tick, a created pipeline, a finished job)
opens a *commit set*. In the same SQLite transaction that makes the change visible,
the branch triggers it fires move their branches, and one job row is queued for every
pipeline downstream, each naming the exact input commits it will read (commits of the
same set for inputs inside the set, current heads otherwise).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .spec import input_leaves
from .store import PpsRecords, Store
from .triggers import Triggers


def branch_leaves(node: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The pfs and cron inputs of an input tree, as ``{name, repo, branch, kind, ...}``
    (a cron input reads its tick repo's ``master``)."""
    for _, kind, leaf in input_leaves(node):
        branch = leaf["branch"] if kind == "pfs" else "master"
        yield {"name": leaf["name"], "repo": leaf["repo"], "branch": branch, "kind": kind, **leaf}


def reads(spec: Mapping[str, Any], repo: str) -> bool:
    """Whether a pipeline spec takes ``repo`` as an input."""
    return any(leaf["repo"] == repo for leaf in branch_leaves(spec.get("input") or {}))


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class JobQueue:
    """Commit sets and the jobs they queue, inside the caller's transaction."""

    def __init__(self, store: Store, pps: PpsRecords, triggers: Triggers) -> None:
        self.store = store
        self.pps = pps
        self.triggers = triggers

    def open_set(
        self, db: sqlite3.Connection, set_id: str, *, cause: str, logical_time: str | None = None
    ) -> None:
        self.pps.open_set(db, set_id, cause=cause, logical_time=logical_time or now_iso())

    def land(
        self,
        db: sqlite3.Connection,
        repo: str,
        branch: str,
        commit_id: str,
        logical_time: str | None,
        cause: str,
    ) -> None:
        """In the transaction that finishes a user commit: open its commit set, fire the
        triggers and queue the downstream jobs."""
        lt = logical_time or now_iso()
        self.open_set(db, commit_id, cause=cause or f"commit to {repo}@{branch}", logical_time=lt)
        self.on_commit(db, repo, branch, commit_id, lt)

    def on_commit(
        self, db: sqlite3.Connection, repo: str, branch: str, set_id: str, logical_time: str
    ) -> None:
        """After a commit lands on ``repo@branch``: fire triggers, queue downstream jobs."""
        changed = {(repo, branch)}
        for trig in self.triggers.fired(repo, branch, set_id, logical_time):
            self.store.set_branch_head(db, repo, trig, set_id)
            changed.add((repo, trig))
        roots: list[str] = []
        for r, b in sorted(changed):
            roots.extend(self.subscribers(r, b))
        if roots:
            self.queue_jobs(db, set_id, sorted(set(roots)), changed)

    def subscribers(self, repo: str, branch: str) -> list[str]:
        """Running pipelines that read ``repo@branch`` (a stopped one gets no jobs)."""
        return [
            p["name"]
            for p in self.pps.pipelines()
            if not p["stopped"]
            and any(
                leaf["repo"] == repo and leaf["branch"] == branch
                for leaf in branch_leaves(p["spec"].get("input") or {})
            )
        ]

    def queue_jobs(
        self,
        db: sqlite3.Connection,
        set_id: str,
        roots: Sequence[str],
        changed: set[tuple[str, str]],
    ) -> None:
        """Queue a job in ``set_id`` for each pipeline in ``roots`` and everything downstream.

        ``changed`` holds the (repo, branch) pairs that get a commit in this set; the
        jobs' outputs are added to it as the closure grows. A job of this set that is
        already queued but not started (say ``predict``, queued before a trigger fired
        ``model`` in the same set) is re-pointed at the set's new commits.
        """
        order: list[str] = []
        queue = list(roots)
        while queue:
            name = queue.pop(0)
            if name in order:
                continue
            order.append(name)
            out = (name, self.pps.pipeline(name)["spec"]["outputBranch"])
            changed.add(out)
            queue.extend(self.subscribers(*out))
        for name in order:
            self._queue_job(db, name, set_id, changed)

    def _queue_job(
        self, db: sqlite3.Connection, name: str, set_id: str, changed: set[tuple[str, str]]
    ) -> None:
        row = self.pps.find_job(name, set_id)
        if row is not None and row["state"] != "created":
            return
        pipe = self.pps.pipeline(name)
        resolved = self.resolve_inputs(pipe["spec"], set_id, changed)
        if row is None:
            self.pps.queue_job(db, name, set_id, json.dumps(resolved), pipe["version"])
            return
        # never drop an input already bound to this set's commit
        bound = {
            (i["name"], i["repo"], i["branch"])
            for i in json.loads(row["inputs"])
            if i["commit"] == set_id
        }
        for inp in resolved:
            if (inp["name"], inp["repo"], inp["branch"]) in bound:
                inp["commit"] = set_id
        self.pps.rebind_job(db, name, set_id, json.dumps(resolved))

    def resolve_inputs(
        self, spec: Mapping[str, Any], set_id: str, changed: set[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Each input's commit: this set's for branches it changes, else the branch head."""
        inputs = []
        for leaf in branch_leaves(spec.get("input") or {}):
            key = (leaf["repo"], leaf["branch"])
            if key in changed:
                commit: str | None = set_id
            elif self.store.branch_exists(*key):
                commit = self.store.branch_head(*key)
            else:
                commit = None
            inputs.append(
                {
                    "name": leaf["name"],
                    "repo": leaf["repo"],
                    "branch": leaf["branch"],
                    "commit": commit,
                }
            )
        return inputs
