"""The engine: pipelines, commit sets, jobs and datums over a :class:`Store`.

A change to a branch (a user commit, a cron tick, a created pipeline) opens a
*commit set*. In the same SQLite transaction that makes the change visible,
one job row is queued for every pipeline downstream of it, each naming the
exact input commits it will read (commits of the same set for inputs inside
the set, current heads otherwise). The jobs of one pipeline run in order; jobs
of different pipelines run at the same time. A job's output commit is
inserted, with its provenance, in one transaction when it finishes, which also
evaluates branch triggers on the output repo. The job table is a durable
queue: a process killed mid-job leaves a ``running`` row that the next writer
resets to ``created`` and runs again from scratch.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import os
import secrets as pysecrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import cron
from .datums import Datum, DatumInput, FileInfo, InputCommit, datum_hash, form_datums
from .sandbox import Mounts, Sandbox, cgroup_base, detect, reap
from .secrets import SecretStore
from .spec import (
    check_mount_targets,
    duration_seconds,
    input_leaves,
    parse_pipeline_spec,
    spec_fingerprint,
)
from .store import Entry, NotFound, Store, StoreError, check_name, clean_path, new_id

JOB_DONE = ("success", "failure", "killed", "unrunnable")


class EngineError(Exception):
    """An engine request that cannot be satisfied; the message says why."""


@dataclass
class Progress:
    """Callbacks the CLI uses to show progress; the default shows nothing."""

    job_started: Callable[[str, str, int], None] = lambda pipeline, job, total: None
    datum_done: Callable[[str, int, int], None] = lambda pipeline, done, total: None
    job_finished: Callable[[Mapping[str, Any]], None] = lambda job: None


@dataclass
class DatumOutcome:
    """What running one datum produced."""

    datum: Datum
    hash: str
    state: str
    outputs: list[Entry] = field(default_factory=list)
    log: list[tuple[int, str]] = field(default_factory=list)
    attempts: int = 0
    seconds: float = 0.0
    reason: str = ""


def _serialized(progress: Progress) -> Progress:
    """The callbacks of ``progress``, called one at a time (jobs report from their threads)."""
    lock = threading.Lock()

    def locked(fn: Callable[..., None]) -> Callable[..., None]:
        def call(*args: Any) -> None:
            with lock:
                fn(*args)

        return call

    return Progress(
        job_started=locked(progress.job_started),
        datum_done=locked(progress.datum_done),
        job_finished=locked(progress.job_finished),
    )


def _max_jobs() -> int:
    """``PACHLOCAL_JOBS``: how many jobs (of different pipelines) run at once; default the
    number of cores."""
    value = os.environ.get("PACHLOCAL_JOBS", "")
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise EngineError(f"PACHLOCAL_JOBS={value!r}: expected a positive integer")
    return int(value)


@dataclass
class _JobRun:
    """A started job: its datums to run, those skipped, and the runner for them."""

    job: Any
    pipe: dict[str, Any]
    started: float
    skipped: list[DatumOutcome]
    todo: list[tuple[Datum, str]]
    total: int
    runner: _DatumRunner

    @property
    def name(self) -> str:
        return str(self.job["pipeline"])


#: Spec fields that change what a pipeline does and that pachlocal does not do: refused,
#: naming the field, rather than run as a plain job (docs/pachlocal.md lists them).
UNSUPPORTED = {
    "egress": "egress (pushing the output commit to an object store or database)",
    "spout": "spouts (long-running pipelines without an input)",
    "service": "services (long-running pods behind a Kubernetes service)",
    "s3Out": "the S3 gateway output (s3Out)",
    "determined": "Determined integration",
    "transform.datumBatching": "datum batching (one process for many datums)",
}


def refuse_unsupported(spec: Mapping[str, Any]) -> None:
    """Refuse a spec that asks for something pachlocal would silently not do."""
    name = spec["pipeline"]["name"]
    for key, what in UNSUPPORTED.items():
        node: Any = spec
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None and node is not False:
            raise EngineError(f"pipeline {name}: {key}: pachlocal does not support {what}")
    projects = [("pipeline.project", (spec["pipeline"].get("project") or {}).get("name"))]
    for path, _, leaf in input_leaves(spec.get("input") or {}):
        projects.append((f"{path}.project", leaf.get("project")))
        if leaf.get("s3"):
            raise EngineError(
                f"pipeline {name}: {path}.s3: pachlocal does not support S3 gateway inputs"
            )
    for path, project in projects:
        if project not in (None, "", "default"):
            raise EngineError(
                f"pipeline {name}: {path}: project {project!r}: pachlocal has the "
                "'default' project only"
            )


def _column(row: sqlite3.Row, name: str, default: Any) -> Any:
    """``row[name]``, or ``default`` where the column is missing (a row of an older schema,
    read without the writer lock that migrates it; a Row's ``in`` looks at values)."""
    return row[name] if name in tuple(row.keys()) else default


def _leaves(node: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The pfs and cron inputs of an input tree, as ``{name, repo, branch, kind}``."""
    for _, kind, leaf in input_leaves(node):
        branch = leaf["branch"] if kind == "pfs" else "master"
        yield {"name": leaf["name"], "repo": leaf["repo"], "branch": branch, "kind": kind, **leaf}


def _now_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat()


class Engine:
    """A pachlocal state directory opened for reading or writing."""

    def __init__(
        self,
        home: Path,
        *,
        write: bool = True,
        progress: Progress | None = None,
        wait_for_lock: bool = True,
        command: str = "",
        max_jobs: int | None = None,
    ) -> None:
        self.home = home
        self.store = Store(home, readonly=not write)
        self.secrets = SecretStore(home)
        self.progress = progress or Progress()
        self._progress = _serialized(self.progress)
        self.max_jobs = max(1, max_jobs or _max_jobs())
        self.write = write
        self._sandbox: Sandbox | None = None
        self._code_versions: dict[str, str] = {}
        self._interrupted = threading.Event()
        if write:
            self.store.lock(wait=wait_for_lock, what=command)
            self._recover()

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recovery -------------------------------------------------------------------

    def _recover(self) -> None:
        """Reset jobs left ``running`` by a killed process; their outputs were never visible.
        Datum processes a killed engine left behind are killed first, so a retried job never
        runs beside its previous attempt."""
        reap(self.home / "run", cgroup_base(self._cgroup_name()))
        stale = self.store.db.execute(
            "SELECT pipeline, id FROM jobs WHERE state='running'"
        ).fetchall()
        if stale:
            with self.store.transaction() as db:
                for row in stale:
                    db.execute(
                        "DELETE FROM datums WHERE pipeline=? AND job=?",
                        (row["pipeline"], row["id"]),
                    )
                    db.execute(
                        "UPDATE jobs SET state='created', started=NULL, processed=0, skipped=0, "
                        "failed=0, recovered=0 WHERE pipeline=? AND id=?",
                        (row["pipeline"], row["id"]),
                    )
        shutil.rmtree(self.home / "work", ignore_errors=True)
        self.store.clear_tmp()

    # -- pipelines ---------------------------------------------------------------------

    def pipelines(self) -> list[dict[str, Any]]:
        rows = self.store.db.execute("SELECT * FROM pipelines ORDER BY name")
        return [self._pipeline(r) for r in rows]

    def _pipeline(self, row: Any) -> dict[str, Any]:
        return {
            "name": row["name"],
            "spec": json.loads(row["spec"]),
            "fingerprint": row["fingerprint"],
            "version": row["version"],
            "salt": row["salt"],
            "code_root": row["code_root"],
            "created": row["created"],
            "updated": row["updated"],
            # a state directory of schema 1 read without a writer lacks the column
            "stopped": bool(_column(row, "stopped", 0)),
        }

    def pipeline(self, name: str) -> dict[str, Any]:
        row = self.store.db.execute("SELECT * FROM pipelines WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"pipeline {name} not found")
        return self._pipeline(row)

    def pipeline_version(self, name: str, version: int) -> dict[str, Any]:
        row = self.store.db.execute(
            "SELECT * FROM pipeline_versions WHERE name=? AND version=?", (name, version)
        ).fetchone()
        if row is None:
            raise NotFound(f"pipeline {name} version {version} not found")
        return {
            "spec": json.loads(row["spec"]),
            "salt": row["salt"],
            "version": version,
            "spec_commit": _column(row, "spec_commit", ""),
        }

    def create_pipeline(
        self,
        doc: Mapping[str, Any],
        *,
        code_root: Path,
        update: bool = False,
        reprocess: bool = False,
    ) -> str:
        """Create (or with ``update`` replace) a pipeline and queue its first job.

        Returns:
            The id of the commit set the creation opened.
        """
        spec = parse_pipeline_spec(doc)
        refuse_unsupported(spec)
        check_mount_targets(spec)  # a secret mount this host cannot create fails now
        name = spec["pipeline"]["name"]
        existing = self.store.db.execute("SELECT * FROM pipelines WHERE name=?", (name,)).fetchone()
        if existing and not (update or spec.get("update")):
            raise EngineError(f"pipeline {name} already exists (use 'update pipeline')")
        for leaf in _leaves(spec.get("input") or {}):
            if leaf["kind"] == "pfs" and not self.store.repo_exists(leaf["repo"]):
                raise NotFound(f"pipeline {name}: input repo {leaf['repo']} not found")
            if leaf["kind"] == "cron":
                cron.parse_schedule(leaf["spec"])
        for secret in spec["transform"].get("secrets") or []:
            values = self.secrets.get(secret["name"])
            if "key" in secret and secret["key"] not in values:
                raise EngineError(
                    f"pipeline {name}: secret {secret['name']} has no key {secret['key']!r}"
                )
        if self.store.repo_exists(name) and not existing:
            raise EngineError(f"cannot create pipeline {name}: a repo named {name} already exists")
        now = time.time()
        # versions keep counting across a delete and re-create, so provenance stays unambiguous
        row = self.store.db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM pipeline_versions WHERE name=?", (name,)
        ).fetchone()
        version = int(row[0]) + 1
        reprocess = reprocess or bool(spec.get("reprocess"))
        if spec.get("salt"):  # the spec's own salt, as pachd takes it
            salt = str(spec["salt"])
        elif existing and not reprocess:
            salt = existing["salt"]
        else:
            salt = pysecrets.token_hex(16)
        spec_json = json.dumps(spec, sort_keys=True)
        set_id = new_id()
        for leaf in _leaves(spec.get("input") or {}):
            if leaf["kind"] == "cron":
                self.store.ensure_repo(
                    leaf["repo"], kind="cron", description=f"Cron tick repo for {name}"
                )
        self.store.ensure_repo(
            name, kind="pipeline", description=f"Output repo for pipeline {name}"
        )
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO pipelines (name, spec, fingerprint, version, salt, code_root, created, updated)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET spec=excluded.spec,"
                " fingerprint=excluded.fingerprint, version=excluded.version, salt=excluded.salt,"
                " code_root=excluded.code_root, updated=excluded.updated",
                (name, spec_json, spec_fingerprint(spec), version, salt, str(code_root), now, now),
            )
            db.execute(  # the spec commit is the commit set the creation opens, as in pachd
                "INSERT INTO pipeline_versions"
                " (name, version, spec, fingerprint, salt, created, spec_commit)"
                " VALUES (?,?,?,?,?,?,?)",
                (name, version, spec_json, spec_fingerprint(spec), salt, now, set_id),
            )
            for leaf in _leaves(spec.get("input") or {}):
                trigger = leaf.get("trigger")
                if trigger and not self.store.branch_exists(leaf["repo"], leaf["branch"]):
                    # empty until its trigger fires (pachd gives it an empty head commit)
                    self.store.create_branch(leaf["repo"], leaf["branch"], None, trigger)
                elif trigger:
                    db.execute(
                        "UPDATE branches SET trigger=? WHERE repo=? AND name=?",
                        (json.dumps(trigger), leaf["repo"], leaf["branch"]),
                    )
            self._open_set(
                db, set_id, cause=f"{'update' if existing else 'create'} pipeline {name}"
            )
            self._queue_jobs(db, set_id, [name], changed=set())
        return set_id

    def delete_pipeline(self, name: str, *, keep_repo: bool = False) -> None:
        pipe = self.pipeline(name)
        downstream = [p["name"] for p in self.pipelines() if self.reads(p["spec"], name)]
        if downstream and not keep_repo:
            raise EngineError(
                f"cannot delete pipeline {name}: {', '.join(downstream)} read its output"
            )
        with self.store.transaction() as db:
            db.execute("DELETE FROM pipelines WHERE name=?", (name,))
            db.execute("DELETE FROM jobs WHERE pipeline=?", (name,))
            db.execute("DELETE FROM datums WHERE pipeline=?", (name,))
            if keep_repo:
                db.execute("UPDATE repos SET kind='user' WHERE name=?", (name,))
        if not keep_repo:
            self.store.delete_repo(name)
            for leaf in _leaves(pipe["spec"].get("input") or {}):
                if leaf["kind"] == "cron" and self.store.repo_exists(leaf["repo"]):
                    self.store.delete_repo(leaf["repo"])

    def stop_pipeline(self, name: str) -> None:
        """``pachctl stop pipeline``: no job is queued for it (nor for what only it feeds)
        and its cron ticks pause; jobs already queued wait for ``start pipeline``."""
        self.pipeline(name)
        with self.store.transaction() as db:
            db.execute("UPDATE pipelines SET stopped=1 WHERE name=?", (name,))

    def start_pipeline(self, name: str) -> str | None:
        """``pachctl start pipeline``: queue one job on its inputs' current heads (datums it
        already processed are skipped); the cron ticks missed while stopped come at the
        next ``tick``. Returns the commit set opened, or None if it was running."""
        if not self.pipeline(name)["stopped"]:
            return None
        set_id = new_id()
        with self.store.transaction() as db:
            db.execute("UPDATE pipelines SET stopped=0 WHERE name=?", (name,))
            if self.store.db.execute(
                "SELECT 1 FROM jobs WHERE pipeline=? AND state IN ('created', 'running')", (name,)
            ).fetchone():
                return None  # its queued jobs run now
            self._open_set(db, set_id, cause=f"start pipeline {name}")
            self._queue_jobs(db, set_id, [name], set())
        return set_id

    @staticmethod
    def reads(spec: Mapping[str, Any], repo: str) -> bool:
        """Whether a pipeline spec takes ``repo`` as an input."""
        return any(leaf["repo"] == repo for leaf in _leaves(spec.get("input") or {}))

    # -- commit sets and the job queue ------------------------------------------------------

    def _open_set(
        self, db: Any, set_id: str, *, cause: str, logical_time: str | None = None
    ) -> None:
        db.execute(
            "INSERT OR IGNORE INTO commit_sets (id, seq, created, logical_time, cause) VALUES (?,?,?,?,?)",
            (set_id, self.store.next_seq(), time.time(), logical_time or _now_iso(), cause),
        )

    def _subscribers(self, repo: str, branch: str) -> list[str]:
        """Running pipelines that read ``repo@branch`` (a stopped one gets no jobs)."""
        return [
            p["name"]
            for p in self.pipelines()
            if not p["stopped"]
            and any(
                leaf["repo"] == repo and leaf["branch"] == branch
                for leaf in _leaves(p["spec"].get("input") or {})
            )
        ]

    def _queue_jobs(
        self, db: Any, set_id: str, roots: Sequence[str], changed: set[tuple[str, str]]
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
            out = (name, self.pipeline(name)["spec"]["outputBranch"])
            changed.add(out)
            queue.extend(self._subscribers(*out))
        for name in order:
            row = db.execute(
                "SELECT state, inputs FROM jobs WHERE pipeline=? AND id=?", (name, set_id)
            ).fetchone()
            if row is not None and row["state"] != "created":
                continue
            pipe = self.pipeline(name)
            resolved = self._resolve_inputs(pipe["spec"], set_id, changed)
            if row is not None:  # never drop an input already bound to this set's commit
                bound = {
                    (i["name"], i["repo"], i["branch"])
                    for i in json.loads(row["inputs"])
                    if i["commit"] == set_id
                }
                for inp in resolved:
                    if (inp["name"], inp["repo"], inp["branch"]) in bound:
                        inp["commit"] = set_id
            inputs = json.dumps(resolved)
            if row is not None:
                db.execute(
                    "UPDATE jobs SET inputs=? WHERE pipeline=? AND id=?", (inputs, name, set_id)
                )
                continue
            db.execute(
                "INSERT INTO jobs (pipeline, id, seq, state, created, inputs, spec_version)"
                " VALUES (?,?,?,'created',?,?,?)",
                (name, set_id, self.store.next_seq(), time.time(), inputs, pipe["version"]),
            )

    def _resolve_inputs(
        self, spec: Mapping[str, Any], set_id: str, changed: set[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Each input's commit: this set's for branches it changes, else the branch head."""
        inputs = []
        for leaf in _leaves(spec.get("input") or {}):
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

    def _on_commit(self, db: Any, repo: str, branch: str, set_id: str, logical_time: str) -> None:
        """After a commit lands on ``repo@branch``: fire triggers, queue downstream jobs."""
        changed = {(repo, branch)}
        for trig in self._fired_triggers(repo, branch, set_id, logical_time):
            db.execute("UPDATE branches SET head=? WHERE repo=? AND name=?", (set_id, repo, trig))
            changed.add((repo, trig))
        roots: list[str] = []
        for r, b in sorted(changed):
            roots.extend(self._subscribers(r, b))
        if roots:
            self._queue_jobs(db, set_id, sorted(set(roots)), changed)

    def _fired_triggers(self, repo: str, branch: str, head: str, logical_time: str) -> list[str]:
        """Branches of ``repo`` whose trigger on ``branch`` fires with the new head.

        Conditions (pachd's ``isTriggered``): ``commits`` new commits since the
        triggered branch's head, ``size`` bytes the repo grew by since that head,
        ``rateLimitSpec`` a tick passed since the head's logical time; ``all``
        requires every set condition. A branch with a ``cronSpec`` never fires on a
        commit: its schedule moves it (:meth:`_fire_scheduled_triggers`), as in pachd
        since 2.9. An empty triggered branch waits for its condition like any other.
        """
        fired = []
        for row in self.store.db.execute(
            "SELECT name, head, trigger FROM branches WHERE repo=? AND trigger IS NOT NULL", (repo,)
        ):
            trig = json.loads(row["trigger"])
            if trig.get("branch", "master") != branch or row["name"] == branch:
                continue
            if trig.get("cronSpec"):
                continue
            new = self._commits_since(repo, head, row["head"])
            old_size = self.store.get_commit(repo, row["head"]).size if row["head"] else 0
            results = []
            if trig.get("commits"):
                results.append(len(new) >= int(trig["commits"]))
            if trig.get("size"):  # bytes the repo grew by since the triggered head
                new_size = new[0].size if new else old_size
                results.append(new_size - old_size >= _parse_size(trig["size"]))
            if trig.get("rateLimitSpec"):  # a tick passed since the head
                results.append(self._tick_passed(trig["rateLimitSpec"], row["head"], logical_time))
            if not results:
                results.append(True)
            if all(results) if trig.get("all") else any(results):
                fired.append(row["name"])
        return fired

    def _scheduled_triggers(self) -> list[tuple[datetime, str, str, str]]:
        """The next scheduled move of every ``cronSpec``-triggered branch whose source has
        data: ``(when, repo, branch, source)``, soonest first.

        pachd counts the schedule from the start of the branch's head commit; here that is
        the logical time of the head's commit set (a move by ``create branch --head``
        carries the logical time of the commit it points at). A branch still empty counts from
        the source branch's first commit: in a backfill pachlocal has no creation time
        on the data's clock."""
        due = []
        rows = self.store.db.execute(
            "SELECT repo, name, head, trigger FROM branches WHERE trigger IS NOT NULL"
        ).fetchall()
        for row in rows:
            trig = json.loads(row["trigger"])
            source = trig.get("branch", "master")
            if not trig.get("cronSpec") or not self.store.branch_head(row["repo"], source):
                continue
            since = self._head_time(row["repo"], row["head"]) if row["head"] else None
            if since is None:
                since = self._first_commit_time(row["repo"], source)
            if since is None:
                continue
            nxt = cron.parse_schedule(trig["cronSpec"]).next(since)
            if nxt is not None:
                due.append((nxt, row["repo"], row["name"], source))
        return sorted(due)

    def empty_trigger_branches(self) -> list[tuple[str, str, str]]:
        """``(repo, branch, source)`` of every triggered branch still without a head whose
        source branch holds files: what waits for its trigger's first firing. A deploy that
        wants the first data through at once runs ``create branch <repo>@<branch> --head
        <source>`` for each (the trigger stays)."""
        rows = self.store.db.execute(
            "SELECT repo, name, trigger FROM branches WHERE trigger IS NOT NULL AND head IS NULL"
            " ORDER BY repo, name"
        ).fetchall()
        out = []
        for row in rows:
            source = json.loads(row["trigger"]).get("branch", "master")
            head = self.store.branch_head(row["repo"], source)
            if head and self.store.get_commit(row["repo"], head).size > 0:
                out.append((row["repo"], row["name"], source))
        return out

    def _head_time(self, repo: str, head: str) -> datetime | None:
        stamp = self._logical_time(head)
        return datetime.fromisoformat(stamp) if stamp else None

    def _first_commit_time(self, repo: str, branch: str) -> datetime | None:
        commits = self._commits_since(repo, self.store.branch_head(repo, branch) or "", None)
        stamp = self._logical_time(commits[-1].id) if commits else None
        return datetime.fromisoformat(stamp) if stamp else None

    def _fire_scheduled_triggers(self, until: datetime, *, run: bool) -> int:
        """Move every ``cronSpec``-triggered branch at each of its ticks up to ``until`` to
        its source's head then (pachd's ``runCronTrigger``), running the jobs after each
        move. As in pachd, a tick moves the branch even when its source has not moved:
        the readers' jobs then skip every datum."""
        moved = 0
        while True:
            due = [d for d in self._scheduled_triggers() if d[0] <= until]
            if not due:
                return moved
            when, repo, branch, source = due[0]
            target = self.store.get_commit(repo, self.store.branch_head(repo, source) or "")
            self._move_branch(
                repo, branch, target, when.isoformat(), f"cron trigger {branch} of {repo}@{source}"
            )
            moved += 1
            if run:
                self.run_pending()

    def _tick_passed(self, spec: str, head: str | None, logical_time: str) -> bool:
        """Whether a tick of ``spec`` lies between ``head``'s logical time and ``logical_time``."""
        last = self._logical_time(head) if head else None
        if last is None:
            return True
        nxt = cron.parse_schedule(spec).next(datetime.fromisoformat(last))
        return nxt is not None and nxt <= datetime.fromisoformat(logical_time)

    def _commits_since(self, repo: str, head: str, stop: str | None) -> list[Any]:
        out = []
        commit = self.store.find_commit(repo, head)
        while commit is not None and commit.id != stop:
            out.append(commit)
            commit = self.store.find_commit(repo, commit.parent) if commit.parent else None
        return out

    def _logical_time(self, set_id: str) -> str | None:
        row = self.store.db.execute(
            "SELECT logical_time FROM commit_sets WHERE id=?", (set_id,)
        ).fetchone()
        return row["logical_time"] if row else None

    # -- user commits ---------------------------------------------------------------------

    def commit_files(
        self,
        repo: str,
        branch: str,
        puts: Sequence[tuple[str, Path | bytes]] = (),
        deletes: Sequence[str] = (),
        *,
        description: str = "",
        logical_time: str | None = None,
        cause: str = "",
    ) -> str:
        """Put and delete files on ``repo@branch``: into its open commit if there is one
        (``start commit``), else in a new commit finished at once, which queues the
        downstream jobs. The contents are stored first, then one transaction stages them
        in the open commit or inserts the finished commit: a process killed at any point
        leaves the whole change or none of it (plus unreferenced objects)."""
        self.store.require_repo(repo)
        self._refuse_output_branch(repo, branch)
        changes = self._stage(puts, deletes)
        with self.store.transaction() as db:
            open_id = self.store.open_commit(repo, branch)
            if open_id is not None:
                self.store.stage(db, repo, open_id, changes)
                return open_id
            commit_id = self.store.commit_changes(
                db, repo, branch, changes, description=description
            )
            self._land(db, repo, branch, commit_id, logical_time, cause)
        return commit_id

    def _stage(
        self, puts: Sequence[tuple[str, Path | bytes]], deletes: Sequence[str]
    ) -> list[tuple[str, str | None, int]]:
        """Store the contents of ``puts`` (every path checked first); returns the changes
        as (path, hash or None for a deletion, size), deletions first."""
        targets = [clean_path(path) for path, _ in puts]
        if "/" in targets:
            raise StoreError("put file: a file path is required")
        changes: list[tuple[str, str | None, int]] = [(clean_path(p), None, 0) for p in deletes]
        for target, (_, src) in zip(targets, puts, strict=True):
            try:
                if isinstance(src, bytes):
                    changes.append((target, self.store.objects.put_bytes(src), len(src)))
                else:
                    with src.open("rb") as f:
                        digest, size = self.store.objects.put_stream(f)
                    changes.append((target, digest, size))
            except StoreError as exc:
                raise StoreError(f"put file {target}: {exc}; nothing was committed") from exc
        return changes

    def _land(
        self, db: Any, repo: str, branch: str, commit_id: str, logical_time: str | None, cause: str
    ) -> None:
        """In the transaction that finishes a user commit: open its commit set, fire the
        triggers and queue the downstream jobs."""
        lt = logical_time or _now_iso()
        self._open_set(db, commit_id, cause=cause or f"commit to {repo}@{branch}", logical_time=lt)
        self._on_commit(db, repo, branch, commit_id, lt)

    def start_commit(self, repo: str, branch: str, description: str = "") -> str:
        self._refuse_output_branch(repo, branch)
        return self.store.start_commit(repo, branch, description)

    def create_branch(self, repo: str, branch: str, head: str | None = None) -> str | None:
        """``pachctl create branch <repo>@<branch> [--head <ref>]``: a new branch, or a branch
        moved to another commit of the repo. As in pachd, the move is an ALIAS commit (the
        same files, a new id) in a new commit set, so pipelines reading the branch run.

        Returns:
            The commit set opened, or None when nothing moved.
        """
        check_name("branch", branch)
        self.store.require_repo(repo)
        self._refuse_output_branch(repo, branch)
        exists = self.store.branch_exists(repo, branch)
        if head is None:
            if exists:  # pachd upserts: an existing branch keeps its head
                return None
            with self.store.transaction() as db:
                db.execute(
                    "INSERT INTO branches (repo, name, head) VALUES (?,?,NULL)", (repo, branch)
                )
            return None
        target = self.store.resolve(head if "@" in head else f"{repo}@{head}")
        if target.repo != repo:
            raise EngineError(
                f"--head {head}: a branch of {repo} can only point at a commit of {repo}"
            )
        if target.finished is None:
            raise EngineError(f"--head {head}: commit {target.id} is still open")
        if exists and self.store.branch_head(repo, branch) == target.id:
            return None
        # the move takes the logical time of the commit it points at, as pachd's head keeps
        # its start time (a cron trigger counts its schedule from it)
        when = self._logical_time(target.id)
        return self._move_branch(
            repo, branch, target, when, f"create branch {repo}@{branch} --head {head}"
        )

    def _move_branch(
        self, repo: str, branch: str, target: Any, logical_time: str | None, cause: str
    ) -> str:
        """Point ``repo@branch`` at ``target``'s files: an ALIAS commit in a new commit set,
        so that the pipelines reading the branch run. Returns the commit set."""
        set_id = new_id()
        with self.store.transaction() as db:
            self.store.insert_commit(
                db,
                repo=repo,
                commit_id=set_id,
                branch=branch,
                origin="ALIAS",
                entries=self.store.manifest(target),
                provenance={"alias_of": target.id},
                description=f"alias of {target.id}",
            )
            self._land(db, repo, branch, set_id, logical_time, cause)
        return set_id

    def _refuse_output_branch(self, repo: str, branch: str) -> None:
        """pachd's rule: only a pipeline's jobs commit to its output branch (a branch with
        provenance); its other branches take user commits."""
        if self._has_pipeline(repo) and self.pipeline(repo)["spec"]["outputBranch"] == branch:
            raise EngineError(f"cannot start a commit on an output branch: {repo}@{branch}")

    def finish_commit(
        self, repo: str, commit_id: str, *, logical_time: str | None = None, cause: str = ""
    ) -> None:
        with self.store.transaction() as db:
            commit = self.store.finish_commit(db, repo, commit_id)
            self._land(db, repo, commit.branch, commit_id, logical_time, cause)

    def delete_branch(self, repo: str, branch: str, *, force: bool = False) -> None:
        """``pachctl delete branch``: the branch goes, its commits stay. A pipeline's output
        branch is refused, a branch a pipeline reads needs ``force``."""
        self.store.require_repo(repo)
        if not self.store.branch_exists(repo, branch):
            raise NotFound(f"branch {repo}@{branch} not found")
        if self._has_pipeline(repo) and self.pipeline(repo)["spec"]["outputBranch"] == branch:
            raise EngineError(f"cannot delete {repo}@{branch}: it is pipeline {repo}'s output")
        readers = sorted(self._subscribers(repo, branch))
        if readers and not force:
            raise EngineError(
                f"cannot delete {repo}@{branch}: pipeline(s) {', '.join(readers)} read it"
                " (--force deletes it anyway)"
            )
        with self.store.transaction() as db:
            db.execute("DELETE FROM branches WHERE repo=? AND name=?", (repo, branch))

    def squash_commit_set(self, set_id: str, *, drop: bool = False) -> list[str]:
        """``pachctl squash commit`` (``drop``: ``delete commit``): remove every commit of a
        commit set, as pachd does. Squash needs each commit to have a child, which holds
        the data already (a commit here is a whole snapshot); delete takes branch heads
        only, which move back to the parent. Refused when a later commit set was computed
        from one of the commits, or when the set created or updated a pipeline.

        Returns:
            ``repo@commit`` of each commit removed.
        """
        verb = "delete" if drop else "squash"
        commits = [c for c in self.store.list_commits(commit_id=set_id)]
        if not commits:
            raise NotFound(f"commit set {set_id} not found")
        spec = self.store.db.execute(
            "SELECT name FROM pipeline_versions WHERE spec_commit=?", (set_id,)
        ).fetchone()
        if spec is not None:
            raise EngineError(f"cannot {verb} commit set {set_id}: it updated pipeline {spec[0]}")
        later = self._computed_from(set_id, {(c.repo, c.id) for c in commits})
        if later:
            raise EngineError(
                f"cannot {verb} commit set {set_id}: commit set(s) {', '.join(later)}"
                " were computed from it"
            )
        for c in commits:
            kids = self.store.db.execute(
                "SELECT id, finished FROM commits WHERE repo=? AND parent=?", (c.repo, c.id)
            ).fetchall()
            if c.finished is None or any(k["finished"] is None for k in kids):
                raise EngineError(f"cannot {verb} {c.repo}@{c.id}: it or a child is still open")
            if not drop and not kids:
                raise EngineError(
                    f"cannot squash {c.repo}@{c.id}: no child commit holds its data"
                    " (a branch head: use delete commit)"
                )
            if drop and kids:
                raise EngineError(
                    f"cannot delete {c.repo}@{c.id}: it has child commits (use squash commit)"
                )
        with self.store.transaction() as db:
            for c in commits:
                db.execute(
                    "UPDATE commits SET parent=? WHERE repo=? AND parent=?",
                    (c.parent, c.repo, c.id),
                )
                db.execute(
                    "UPDATE branches SET head=? WHERE repo=? AND head=?", (c.parent, c.repo, c.id)
                )
                db.execute("DELETE FROM commits WHERE repo=? AND id=?", (c.repo, c.id))
            db.execute("DELETE FROM datums WHERE job=?", (set_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (set_id,))
            db.execute("DELETE FROM commit_sets WHERE id=?", (set_id,))
        return [f"{c.repo}@{c.id}" for c in commits]

    def _computed_from(self, set_id: str, commits: set[tuple[str, str]]) -> list[str]:
        """Other commit sets holding a commit whose inputs (or alias) name one of ``commits``."""
        later = set()
        for row in self.store.db.execute(
            "SELECT repo, id, provenance FROM commits WHERE id != ?", (set_id,)
        ):
            prov = json.loads(row["provenance"] or "{}")
            used = {(i["repo"], i["commit"]) for i in prov.get("inputs", []) if i.get("commit")}
            if prov.get("alias_of"):
                used.add((row["repo"], prov["alias_of"]))
            if used & commits:
                later.add(row["id"])
        return sorted(later)

    def copy_file(self, source: str, path: str, repo: str, branch: str, target: str) -> str:
        """``pachctl copy file``: the file or directory ``path`` of commit ``source``
        (``repo@ref``) into ``repo@branch`` at ``target``, in one commit (or staged in the
        open one). Returns the commit."""
        files = self.store.manifest(self.store.resolve(source))
        prefix = path.rstrip("/") + "/"
        chosen = {
            p: e for p, e in files.items() if p == path or p.startswith(prefix) or path == "/"
        }
        if not chosen:
            raise NotFound(f"file {path} not found in {source}")
        base = target.rstrip("/")
        puts: list[tuple[str, Path | bytes]] = []
        for src_path, entry in sorted(chosen.items()):
            rel = src_path[len(path.rstrip("/")) :] if src_path != path else ""
            puts.append((base + rel or "/", self.store.objects.read(entry.hash)))
        return self.commit_files(repo, branch, puts, description=f"copy of {source}:{path}")

    # -- running jobs ---------------------------------------------------------------------

    def pending_jobs(self) -> list[Any]:
        return list(
            self.store.db.execute(
                "SELECT * FROM jobs WHERE state IN ('created','running') ORDER BY seq"
            )
        )

    def run_pending(self) -> list[dict[str, Any]]:
        """Run queued jobs until none is runnable; returns the finished job rows in the
        order they finished.

        As pachd's workers do, jobs of different pipelines run at the same time (up to
        ``max_jobs``, default the number of cores) and the jobs of one pipeline run one
        at a time, oldest first, since each reuses its predecessor's datums. Every store
        access stays on this thread: a job's thread only runs its datums."""
        done: list[dict[str, Any]] = []
        running: dict[cf.Future[list[DatumOutcome]], _JobRun] = {}
        with cf.ThreadPoolExecutor(self.max_jobs, thread_name_prefix="job") as pool:
            try:
                while True:
                    progressed = self._start_ready(pool, running, done)
                    if not running:
                        if progressed:
                            continue
                        return done
                    finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for fut in sorted(finished, key=lambda f: running[f].job["seq"]):
                        run = running.pop(fut)
                        self._run_job(run, fut)
                        done.append(self.job(run.name, run.job["id"]))
            except BaseException:
                for run in running.values():
                    run.runner.cancel()
                cf.wait(running)
                for run in running.values():
                    run.runner.cleanup()
                with contextlib.suppress(OSError, sqlite3.OperationalError):
                    self._recover()
                raise

    def _start_ready(
        self,
        pool: cf.ThreadPoolExecutor,
        running: dict[cf.Future[list[DatumOutcome]], _JobRun],
        done: list[dict[str, Any]],
    ) -> bool:
        """Start every job that may start now; True when any job started or ended."""
        progressed = False
        seen = {run.name for run in running.values()}
        seen |= {p["name"] for p in self.pipelines() if p["stopped"]}  # they wait for a start
        for job in self.pending_jobs():
            if job["pipeline"] in seen:  # a pipeline's jobs run one at a time, in order
                continue
            seen.add(job["pipeline"])
            if len(running) >= self.max_jobs:
                break
            status = self._readiness(job)
            if status == "wait":
                continue
            progressed = True
            run = self._begin(job) if status == "ready" else None
            if run is None:
                if status != "ready":
                    self._finish_unrunnable(job, status)
                done.append(self.job(job["pipeline"], job["id"]))
                continue
            running[pool.submit(self._work, run)] = run
        return progressed

    def _readiness(self, job: Any) -> str:
        for inp in json.loads(job["inputs"]):
            if inp["commit"] is None:
                continue
            commit = self.store.find_commit(inp["repo"], inp["commit"])
            if commit is None or commit.finished is None:
                upstream = self.store.db.execute(
                    "SELECT state FROM jobs WHERE pipeline=? AND id=?", (inp["repo"], inp["commit"])
                ).fetchone()
                if upstream is not None and upstream["state"] in JOB_DONE:
                    return f"input {inp['repo']}@{inp['commit']} was never produced"
                if upstream is None and commit is None:
                    return f"input {inp['repo']}@{inp['commit']} does not exist"
                return "wait"
            if commit.error:
                return f"unrunnable: input {inp['repo']}@{inp['commit']} failed: {commit.error}"
        return "ready"

    def _finish_unrunnable(self, job: Any, reason: str) -> None:
        pipe = self.pipeline_version(job["pipeline"], job["spec_version"])
        self._fail_job(job, pipe, reason, [], state="unrunnable")

    def _provenance(self, job: Any, pipe: Mapping[str, Any]) -> dict[str, Any]:
        spec = pipe["spec"]
        return {
            "inputs": json.loads(job["inputs"]),
            "pipeline": job["pipeline"],
            "spec_version": pipe["version"],
            "spec_commit": pipe["spec_commit"],
            "spec_fingerprint": spec_fingerprint(spec),
            "image": spec["transform"].get("image", ""),
            "git_revision": self._code_version(self.pipeline(job["pipeline"])["code_root"])
            if self._has_pipeline(job["pipeline"])
            else "",
            "job": job["id"],
        }

    def _has_pipeline(self, name: str) -> bool:
        q = "SELECT 1 FROM pipelines WHERE name=?"
        return self.store.db.execute(q, (name,)).fetchone() is not None

    def _code_version(self, code_root: str) -> str:
        """The git revision of the code a job ran (``+dirty`` when the tree had changes)."""
        if code_root not in self._code_versions:
            try:
                rev = subprocess.run(
                    ["git", "-C", code_root, "rev-parse", "HEAD"],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=10,
                ).stdout.strip()
                dirty = subprocess.run(
                    ["git", "-C", code_root, "status", "--porcelain", "--untracked-files=no"],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=10,
                ).stdout.strip()
                self._code_versions[code_root] = rev + ("+dirty" if dirty else "")
            except (OSError, subprocess.SubprocessError):
                self._code_versions[code_root] = ""
        return self._code_versions[code_root]

    def _input_commits(self, inputs: Sequence[Mapping[str, Any]]) -> dict[str, InputCommit]:
        """Input commits keyed by input name (``name#i`` for union alternatives sharing one)."""
        out = {}
        for n, inp in enumerate(inputs):
            files: list[FileInfo] = []
            if inp["commit"] is not None:
                commit = self.store.get_commit(inp["repo"], inp["commit"])
                files = [
                    FileInfo(e.path, e.hash, e.size) for e in self.store.manifest(commit).values()
                ]
                files.sort(key=lambda f: f.path)
            key = inp["name"] if inp["name"] not in out else f"{inp['name']}#{n}"
            out[key] = InputCommit(inp["repo"], inp["branch"], inp["commit"] or "", files)
        return out

    def _previous(
        self, pipeline: str, before_seq: int
    ) -> tuple[dict[str, tuple[str, str]], dict[str, Entry]]:
        """Datums and output files of the pipeline's last successful job."""
        row = self.store.db.execute(
            "SELECT id FROM jobs WHERE pipeline=? AND state='success' AND seq<? ORDER BY seq DESC LIMIT 1",
            (pipeline, before_seq),
        ).fetchone()
        if row is None:
            return {}, {}
        datums = {
            r["datum"]: (r["hash"], r["state"])
            for r in self.store.db.execute(
                "SELECT datum, hash, state FROM datums WHERE pipeline=? AND job=?",
                (pipeline, row["id"]),
            )
        }
        commit = self.store.find_commit(pipeline, row["id"])
        return datums, (self.store.manifest(commit) if commit else {})

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = detect(
                self.home / "work", pids=self.home / "run", cgroup_name=self._cgroup_name()
            )
            for note in self._sandbox.notes:
                sys.stderr.write(f"pachlocal: {note}\n")
        return self._sandbox

    def _cgroup_name(self) -> str:
        """This state directory's cgroup for datums (one writer per state directory)."""
        digest = hashlib.sha256(os.fsencode(self.home.resolve())).hexdigest()[:16]
        return f"pachlocal-{digest}"

    def _run_job(self, run: _JobRun, fut: cf.Future[list[DatumOutcome]]) -> None:
        """Commit a job whose datums have run (or fail it)."""
        try:
            self._complete(run, fut.result())
        except BaseException as exc:
            # Ctrl-C, a full disk or a crash of the engine itself: nothing of this job became
            # visible; put it back in the queue so the next run starts it from scratch. On a
            # full disk even that can fail: the job then stays 'running' and the next writer
            # resets it, as after a kill. Either way the original error is what is reported.
            if isinstance(exc, OSError | sqlite3.OperationalError | StoreError):
                raise EngineError(
                    f"job {run.name}@{run.job['id']} stopped, nothing of it was committed: "
                    f"{self._describe(exc)}; it runs again from scratch on the next write "
                    "(e.g. 'pachlocal run')"
                ) from exc
            raise

    def _describe(self, exc: BaseException) -> str:
        """An environment error (full disk, I/O) as one line naming where it happened."""
        if isinstance(exc, sqlite3.OperationalError):
            return f"{self.home / 'meta.db'}: {exc}"
        if isinstance(exc, OSError) and exc.strerror:
            return f"{exc.filename or self.home}: {exc.strerror}"
        return str(exc)

    def _begin(self, job: Any) -> _JobRun | None:
        """Mark a job running and sort its datums into skipped and to-do; None when the
        job ended here (its datums could not be formed)."""
        name, job_id = job["pipeline"], job["id"]
        pipe = self.pipeline_version(name, job["spec_version"])
        spec, salt = pipe["spec"], pipe["salt"]
        started = time.time()
        with self.store.transaction() as db:
            db.execute(
                "UPDATE jobs SET state='running', started=? WHERE pipeline=? AND id=?",
                (started, name, job_id),
            )
        inputs = json.loads(job["inputs"])
        try:
            datums = (
                form_datums(spec.get("input") or {}, self._input_commits(inputs))
                if spec.get("input")
                else []
            )
        except ValueError as exc:
            self._fail_job(job, pipe, f"cannot form datums: {exc}", [])
            return None
        prev_datums, prev_files = self._previous(name, job["seq"])
        every_job = spec.get("reprocessSpec") == "every_job"
        skipped: list[DatumOutcome] = []
        todo: list[tuple[Datum, str]] = []
        for d in datums:
            h = datum_hash(d, salt)
            prev = prev_datums.get(d.id)
            if not every_job and prev and prev[0] == h and prev[1] in ("success", "skipped"):
                kept = [e for e in prev_files.values() if e.datum == d.id]
                skipped.append(DatumOutcome(d, h, "skipped", outputs=kept))
            else:
                todo.append((d, h))
        code_root = self.pipeline(name)["code_root"] if self._has_pipeline(name) else os.getcwd()
        self.sandbox  # noqa: B018 (detected here, on the engine's thread, before any datum)
        runner = _DatumRunner(self, name, job_id, pipe, Path(code_root))
        self._progress.job_started(name, job_id, len(datums))
        self._progress.datum_done(name, len(skipped), len(datums))
        return _JobRun(job, pipe, started, skipped, todo, len(datums), runner)

    def _work(self, run: _JobRun) -> list[DatumOutcome]:
        """A job's thread: run its datums (no store access here)."""
        try:
            if not run.todo:
                return []
            return self._run_datums(
                run.runner, run.name, run.todo, len(run.skipped), run.total, run.pipe["spec"]
            )
        finally:
            run.runner.cleanup()  # scratch dirs and the job's secret files never outlive it

    def _complete(self, run: _JobRun, ran: Sequence[DatumOutcome]) -> None:
        """Commit a job's output, or fail it, on the engine's thread."""
        job, pipe, name, job_id = run.job, run.pipe, run.name, run.job["id"]
        spec = pipe["spec"]
        outcomes = [*run.skipped, *ran]
        self._write_logs(name, job_id, outcomes)
        failed = [o for o in outcomes if o.state == "failed"]
        if failed:
            first = failed[0]
            reason = f"{len(failed)} datum(s) failed; first: datum {first.datum.id}: {first.reason}"
            self._fail_job(job, pipe, reason, outcomes)
            return
        entries, clash = _merge_outputs(outcomes)
        if clash:
            self._fail_job(job, pipe, clash, outcomes)
            return
        with self.store.transaction() as db:
            self.store.insert_commit(
                db,
                repo=name,
                commit_id=job_id,
                branch=spec["outputBranch"],
                origin="AUTO",
                entries=entries,
                provenance=self._provenance(job, pipe),
                started=run.started,
            )
            self._record_datums(db, name, job_id, outcomes, "success", "")
            self._on_commit(
                db, name, spec["outputBranch"], job_id, self._logical_time(job_id) or _now_iso()
            )
        self._progress.job_finished(self.job(name, job_id))

    def _fail_job(
        self,
        job: Any,
        pipe: Mapping[str, Any],
        reason: str,
        outcomes: Sequence[DatumOutcome],
        *,
        state: str = "failure",
    ) -> None:
        """Finish a job that produced no output: its commit keeps the parent's files and
        carries the error, so later jobs build on the last good commit."""
        with self.store.transaction() as db:
            self.store.insert_commit(
                db,
                repo=job["pipeline"],
                commit_id=job["id"],
                branch=pipe["spec"]["outputBranch"],
                origin="AUTO",
                entries=None,
                provenance=self._provenance(job, pipe),
                error=reason,
            )
            self._record_datums(db, job["pipeline"], job["id"], outcomes, state, reason)
        self._progress.job_finished(self.job(job["pipeline"], job["id"]))

    def _record_datums(
        self,
        db: Any,
        name: str,
        job_id: str,
        outcomes: Sequence[DatumOutcome],
        state: str,
        reason: str,
    ) -> None:
        counts = {
            s: sum(o.state == s for o in outcomes)
            for s in ("success", "skipped", "failed", "recovered")
        }
        db.executemany(
            "INSERT OR REPLACE INTO datums (pipeline, job, datum, hash, state, inputs, attempts, seconds, reason)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (
                    name,
                    job_id,
                    o.datum.id,
                    o.hash,
                    o.state,
                    json.dumps([_input_json(i) for i in o.datum.inputs]),
                    o.attempts,
                    o.seconds,
                    o.reason,
                )
                for o in outcomes
            ],
        )
        db.execute(
            "UPDATE jobs SET state=?, finished=?, total=?, processed=?, skipped=?, failed=?, recovered=?,"
            " reason=? WHERE pipeline=? AND id=?",
            (
                state,
                time.time(),
                len(outcomes),
                counts["success"],
                counts["skipped"],
                counts["failed"],
                counts["recovered"],
                reason,
                name,
                job_id,
            ),
        )

    def _write_logs(self, name: str, job_id: str, outcomes: Sequence[DatumOutcome]) -> None:
        lines = [
            json.dumps({"datum": o.datum.id, "attempt": attempt, "message": text})
            for o in outcomes
            for attempt, text in o.log
        ]
        if lines:
            path = self.home / "logs" / name / f"{job_id}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write("\n".join(lines) + "\n")

    def _run_datums(
        self,
        runner: _DatumRunner,
        name: str,
        todo: Sequence[tuple[Datum, str]],
        done: int,
        total: int,
        spec: Mapping[str, Any],
    ) -> list[DatumOutcome]:
        workers = max(
            1, min(int(spec["parallelismSpec"].get("constant", 1) or 1), os.cpu_count() or 1)
        )
        results: list[DatumOutcome] = []
        # datums start from pool threads only: each drops what a datum may not hold from
        # its own capability bounding set once (the engine's main thread keeps its own)
        with cf.ThreadPoolExecutor(workers, initializer=self.sandbox.prepare_thread) as pool:
            futures = [pool.submit(runner.run, d, h) for d, h in todo]
            try:
                for fut in cf.as_completed(futures):
                    results.append(fut.result())
                    self._progress.datum_done(name, done + len(results), total)
            except BaseException:
                runner.cancel()
                for fut in futures:
                    fut.cancel()
                raise
        order = {d.id: i for i, (d, _) in enumerate(todo)}
        results.sort(key=lambda o: order[o.datum.id])
        return results

    # -- cron -------------------------------------------------------------------------------

    def cron_inputs(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (p["name"], leaf)
            for p in self.pipelines()
            if not p["stopped"]  # a stopped pipeline's ticks come when it starts again
            for leaf in _leaves(p["spec"].get("input") or {})
            if leaf["kind"] == "cron"
        ]

    def _last_tick(self, pipeline: Mapping[str, Any], leaf: Mapping[str, Any]) -> datetime:
        """The tick the schedule resumes after: the newest tick in the tick repo or the
        input's ``start``, whichever is later (pachd's ``getLatestCronTime``; a ``start``
        moved forward by ``update pipeline`` skips the ticks before it). Without a
        ``start``, pachd sets it to the time the pipeline was created or updated."""
        if leaf.get("start"):
            start = cron.parse_rfc3339(leaf["start"])
        else:
            start = datetime.fromtimestamp(pipeline["updated"], UTC).replace(microsecond=0)
        latest = self._newest_tick(leaf)
        return max(latest, start) if latest is not None else start

    def _newest_tick(self, leaf: Mapping[str, Any]) -> datetime | None:
        head = self.store.branch_head(leaf["repo"], "master")
        if not head:
            return None
        names = [
            p.lstrip("/") for p in self.store.manifest(self.store.get_commit(leaf["repo"], head))
        ]
        latest = cron.latest_tick(names)
        if latest is not None:
            return latest
        # overwrite ticks are deleted and re-added: fall back to the tick commits' times
        row = self.store.db.execute(
            "SELECT logical_time FROM commit_sets WHERE id=?", (head,)
        ).fetchone()
        return datetime.fromisoformat(row["logical_time"]) if row else None

    def due_ticks(self, until: datetime) -> list[tuple[datetime, str, dict[str, Any]]]:
        """Every tick due up to ``until`` for every cron input, oldest first."""
        due = []
        for name, leaf in self.cron_inputs():
            schedule = cron.parse_schedule(leaf["spec"])
            last = self._last_tick(self.pipeline(name), leaf)
            for t in cron.ticks_between(schedule, last, until, limit=100_000):
                due.append((t, name, leaf))
        due.sort(key=lambda x: (x[0], x[1], x[2]["name"]))
        return due

    def fire_tick(self, pipeline: str, leaf: Mapping[str, Any], when: datetime) -> str:
        """Commit one tick to the cron input's repo (replacing the old one with ``overwrite``)."""
        name = cron.format_tick(when)
        deletes: list[str] = []
        if leaf.get("overwrite"):
            head = self.store.branch_head(leaf["repo"], "master")
            if head:
                deletes = list(self.store.manifest(self.store.get_commit(leaf["repo"], head)))
        return self.commit_files(
            leaf["repo"],
            "master",
            [(f"/{name}", b"")],
            deletes,
            logical_time=when.isoformat(),
            cause=f"cron tick {name} of {pipeline}/{leaf['name']}",
        )

    def tick_until(self, until: datetime, *, run: bool = True) -> list[tuple[datetime, str]]:
        """Fire every due tick up to ``until`` (backfill), running the jobs after each tick.

        Tick by tick, as on a cluster where ticks come an hour apart: a tick's jobs bind
        their inputs when the tick fires, so firing the next tick before this one's jobs
        ran would bind it to heads this tick is about to move (a model a branch trigger
        has not yet built, say) and change what it computes."""
        fired = []
        for when, name, leaf in self.due_ticks(until):
            # a branch trigger due at the same time reads its source before the tick's jobs
            self._fire_scheduled_triggers(when, run=run)
            self.fire_tick(name, leaf, when)
            fired.append((when, name))
            if run:
                self.run_pending()
        self._fire_scheduled_triggers(until, run=run)
        return fired

    def run_cron(self, pipeline: str, when: datetime | None = None) -> str:
        """``pachctl run cron``: one tick at the current time for each cron input of ``pipeline``."""
        leaves = [leaf for p, leaf in self.cron_inputs() if p == pipeline]
        if not leaves:
            raise EngineError(f"pipeline {pipeline} has no cron input")
        t = (when or datetime.now(UTC)).replace(microsecond=0)
        ids = [self.fire_tick(pipeline, leaf, t) for leaf in leaves]
        return ids[-1]

    # -- queries ---------------------------------------------------------------------------

    def job(self, pipeline: str, job_id: str) -> dict[str, Any]:
        row = self.store.db.execute(
            "SELECT * FROM jobs WHERE pipeline=? AND id=?", (pipeline, job_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"job {pipeline}@{job_id} not found")
        return dict(row)

    def jobs(self, pipeline: str | None = None, set_id: str | None = None) -> list[dict[str, Any]]:
        clauses, args = [], []
        if pipeline:
            clauses.append("pipeline=?")
            args.append(pipeline)
        if set_id:
            clauses.append("id=?")
            args.append(set_id)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return [
            dict(r)
            for r in self.store.db.execute(f"SELECT * FROM jobs{where} ORDER BY seq DESC", args)
        ]

    def datums(self, pipeline: str, job_id: str) -> list[dict[str, Any]]:
        self.job(pipeline, job_id)
        rows = self.store.db.execute(
            "SELECT * FROM datums WHERE pipeline=? AND job=? ORDER BY rowid", (pipeline, job_id)
        )
        return [dict(r) for r in rows]

    def logs(
        self, pipeline: str, job_id: str | None = None, datum: str | None = None
    ) -> list[dict[str, Any]]:
        base = self.home / "logs" / pipeline
        files = (
            [base / f"{job_id}.jsonl"]
            if job_id
            else sorted(base.glob("*.jsonl"), key=os.path.getmtime)
        )
        out = []
        for f in files:
            if not f.exists():
                continue
            for line in f.read_text().splitlines():
                rec = json.loads(line)
                if datum is None or rec["datum"] == datum:
                    rec["job"] = f.stem
                    out.append(rec)
        return out


def _input_json(i: DatumInput) -> dict[str, Any]:
    return {
        "name": i.name,
        "repo": i.repo,
        "branch": i.branch,
        "commit": i.commit,
        "path": i.path,
        "files": [[f.path, f.hash, f.size] for f in i.files],
        "join_on": i.join_on,
        "group_by": i.group_by,
    }


def _merge_outputs(outcomes: Sequence[DatumOutcome]) -> tuple[dict[str, Entry], str]:
    """Union the datums' outputs; two datums writing one path fail the job, as in Pachyderm."""
    entries: dict[str, Entry] = {}
    for o in outcomes:
        for e in o.outputs:
            other = entries.get(e.path)
            if other is not None and other.datum != e.datum:
                return {}, (
                    f"duplicate path output by different datums: {e.path} "
                    f"(datums {other.datum} and {e.datum})"
                )
            entries[e.path] = e
    dirs = {p[:i] for p in entries for i in range(1, len(p)) if p[i] == "/"}
    clash = sorted(dirs & set(entries))
    if clash:
        return (
            {},
            f"file / directory conflict: {clash[0]} is written both as a file and as a directory",
        )
    return entries, ""


def _parse_size(text: str) -> int:
    units = {
        "": 1,
        "B": 1,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "KIB": 2**10,
        "MIB": 2**20,
        "GIB": 2**30,
    }
    num = text.strip().upper().rstrip()
    digits = num.rstrip("KMGIB")
    unit = num[len(digits) :]
    if unit not in units or not digits:
        raise EngineError(f"trigger size {text!r}: expected e.g. 100MB or 1GiB")
    return int(float(digits) * units[unit])


class _DatumRunner:
    """Runs datums of one job: materialise ``/pfs``, run with retries, collect outputs."""

    def __init__(
        self, engine: Engine, pipeline: str, job_id: str, pipe: Mapping[str, Any], code_root: Path
    ) -> None:
        self.engine = engine
        self.pipeline = pipeline
        self.job_id = job_id
        self.pipe = pipe
        self.spec = spec = pipe["spec"]
        self.transform = spec["transform"]
        self.code_root = code_root
        self.objects = engine.store.objects
        self.sandbox = engine.sandbox
        # jobs of one commit set share an id and may run at once: paths name the pipeline too
        self.work = engine.home / "work" / "jobs" / pipeline / job_id
        self.secret_dir = engine.home / "work" / "secrets" / pipeline / job_id
        self.timeout = duration_seconds(spec["datumTimeout"]) if spec.get("datumTimeout") else None
        self.tries = max(1, int(spec.get("datumTries", 3)))
        self.accept = {0, *[int(c) for c in self.transform.get("acceptReturnCode") or []]}
        self.base_env, self.secret_binds = self._base_env()
        self.copy_inputs = self.sandbox.mode != "namespace"
        self.cancelled = threading.Event()
        # the code and the interpreter stay visible even where they live under /tmp
        interpreter = (sys.prefix, sys.base_prefix, str(Path(sys.executable).parent))
        self.keep = tuple(Path(p).resolve() for p in (code_root, *interpreter))

    def _base_env(self) -> tuple[dict[str, str], list[tuple[Path, str]]]:
        """The datum's environment from the spec alone (its ``env`` and ``secrets``) and
        Pachyderm's variables, over what stands in for the image: ``PATH`` with the
        engine's interpreter first, the locale, ``TZ`` and ``JAVA_HOME``. Nothing else
        of the caller's environment reaches the datum."""
        env = runtime_env(os.environ)
        env.update(self.transform.get("env") or {})
        env["PPS_PIPELINE_NAME"] = self.pipeline
        env["PPS_PROJECT_NAME"] = "default"
        env["PPS_NAMESPACE"] = "default"
        env["PPS_SPEC_COMMIT"] = self.pipe["spec_commit"]
        # a worker pod's name: <project>-<pipeline>-v<version>-<5 characters>
        suffix = hashlib.sha256(self.job_id.encode()).hexdigest()[:5]
        env["PPS_POD_NAME"] = f"default-{self.pipeline}-v{self.pipe['version']}-{suffix}"
        env["PACH_JOB_ID"] = self.job_id
        env["PACH_OUTPUT_COMMIT_ID"] = self.job_id
        binds: list[tuple[Path, str]] = []
        for s in self.transform.get("secrets") or []:
            values = self.engine.secrets.get(s["name"])
            if s.get("envVar"):
                env[s["envVar"]] = values[s["key"]].decode()
            if s.get("mountPath"):
                src = self.secret_dir / s["name"]
                src.mkdir(parents=True, exist_ok=True, mode=0o700)
                for key, value in values.items():
                    fd = os.open(src / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(value)
                if self.sandbox.mode == "namespace":
                    os.makedirs(s["mountPath"], exist_ok=True)
                binds.append((src, s["mountPath"].rstrip("/") or "/"))
        return env, binds

    def cancel(self) -> None:
        self.cancelled.set()

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.secret_dir, ignore_errors=True)

    def run(self, datum: Datum, digest: str) -> DatumOutcome:
        outcome = DatumOutcome(datum, digest, "failed")
        scratch = self.work / datum.id
        try:
            pfs = self._materialise(datum, scratch)
            tmp = scratch / "tmp"
            tmp.mkdir(mode=0o1777)
            env = dict(self.base_env)
            private_tmp = "/tmp" if self.sandbox.mode == "namespace" else str(tmp)
            env.setdefault("HOME", private_tmp)
            for name in ("TMPDIR", "TMP", "TEMP"):  # the temp dir every runtime looks up
                env.setdefault(name, private_tmp)
            for i in datum.inputs:
                env[i.name] = f"/pfs/{i.name}{i.path if i.path != '/' else ''}"
                env[f"{i.name}_COMMIT"] = i.commit
                if i.join_on:
                    env[f"PACH_DATUM_{i.name}_JOIN_ON"] = i.join_on
                if i.group_by:
                    env[f"PACH_DATUM_{i.name}_GROUP_BY"] = i.group_by
            env["PACH_DATUM_ID"] = datum.id
            # pachlocal's extension: the host directory behind this datum's /pfs,
            # for a service outside the datum's namespace (a Spark Connect server)
            env["PFS_HOST_ROOT"] = str(pfs)
            mounts = Mounts(
                pfs,
                tuple(sorted({i.name for i in datum.inputs})),
                tuple(self.secret_binds),
                tmp=tmp,
                hidden=(self.engine.home.resolve(),),
                keep=self.keep,
            )
            ran = self._attempts(outcome, env, mounts, pfs)
            if ran == "success":
                # success only once every output is stored: a collection error (say, a full
                # disk) must fail the datum, not commit it with outputs missing
                outcome.outputs = self._collect(datum, pfs / "out")
            outcome.state = ran
        except OutputError as exc:
            outcome.reason = str(exc)
        except OSError as exc:
            outcome.reason = f"engine error preparing or collecting the datum: {exc}"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return outcome

    def _cwd(self) -> Path:
        return self.code_root

    def _attempts(
        self, outcome: DatumOutcome, env: Mapping[str, str], mounts: Mounts, pfs: Path
    ) -> str:
        """Run the command up to ``datumTries`` times: ``success``, else ``recovered`` when
        ``errCmd`` (run after every failed try, as pachd's worker does) exited 0 after the
        last one, else ``failed``."""
        stdin = _stdin(self.transform.get("stdin"))
        recovered = False
        for attempt in range(1, self.tries + 1):
            if self.cancelled.is_set():
                outcome.reason = "cancelled"
                return "failed"
            if attempt > 1:
                shutil.rmtree(pfs / "out", ignore_errors=True)
                (pfs / "out").mkdir()
            outcome.attempts = attempt
            res = self.sandbox.run(
                self.transform["cmd"],
                stdin=stdin,
                env=env,
                cwd=self._cwd(),
                mounts=mounts,
                timeout=self.timeout,
                cancel=self.cancelled,
            )
            outcome.seconds += res.seconds
            text = res.output.decode(errors="replace")
            if text:
                outcome.log.append((attempt, text))
            if res.error:
                outcome.reason = res.error
            elif res.timed_out:
                outcome.reason = f"datum timed out after {self.timeout:g}s"
            elif res.returncode not in self.accept:
                outcome.reason = (
                    f"command was killed by {_signal_name(-res.returncode)}"
                    if res.returncode < 0  # e.g. SIGXFSZ past a file size limit
                    else f"command exited with code {res.returncode}"
                )
            else:
                return "success"
            outcome.log.append(
                (attempt, f"attempt {attempt}/{self.tries} failed: {outcome.reason}")
            )
            recovered = self._err_cmd(outcome, attempt, env, mounts, pfs)
        return "recovered" if recovered else "failed"

    def _err_cmd(
        self, outcome: DatumOutcome, attempt: int, env: Mapping[str, str], mounts: Mounts, pfs: Path
    ) -> bool:
        """Run ``errCmd`` after a failed try (with an empty ``/pfs/out``); True if it exited 0."""
        if not self.transform.get("errCmd") or self.cancelled.is_set():
            return False
        shutil.rmtree(pfs / "out", ignore_errors=True)
        (pfs / "out").mkdir()
        res = self.sandbox.run(
            self.transform["errCmd"],
            stdin=_stdin(self.transform.get("errStdin")),
            env=env,
            cwd=self._cwd(),
            mounts=mounts,
            timeout=self.timeout,
            cancel=self.cancelled,
        )
        outcome.log.append((attempt, "errCmd: " + res.output.decode(errors="replace")))
        return res.returncode == 0

    def _materialise(self, datum: Datum, scratch: Path) -> Path:
        pfs = scratch / "pfs"
        (pfs / "out").mkdir(parents=True)
        for leaf in _leaves(self.spec.get("input") or {}):
            (pfs / leaf["name"]).mkdir(exist_ok=True)
        for i in datum.inputs:
            for f in i.files:
                dest = pfs / i.name / f.path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                if i.empty_files:
                    dest.touch()
                elif self.copy_inputs:
                    shutil.copyfile(self.objects.path(f.hash), dest)
                else:
                    with contextlib.suppress(FileExistsError):
                        os.link(self.objects.path(f.hash), dest)
        return pfs

    def _collect(self, datum: Datum, out: Path) -> list[Entry]:
        """Store the datum's outputs (every process of the datum has ended): regular files
        and directories only, UTF-8 names without control characters. A symlink to an
        input file stores that input file as the commit holds it, as pachd's upload does
        (its content even where the datum saw it empty, under ``emptyFiles``); a symlink
        to another file inside ``/pfs`` stores that file's content."""
        pfs = out.parent
        root = pfs.resolve()
        inputs = {(i.name, f.path): f for i in datum.inputs for f in i.files}
        files = list(_output_files(out))
        by_reference: dict[str, Entry] = {}
        try:
            # links first: a link's target may be another output, which storing moves away
            for local, rel in files:
                if not local.is_symlink():
                    continue
                name, _, path = (
                    _link_target(local, pfs, rel).relative_to(root).as_posix().partition("/")
                )
                linked = inputs.get((name, "/" + path))
                if linked is not None:
                    by_reference[rel] = Entry(rel, linked.hash, linked.size, datum.id)
                else:
                    _own_copy(local, pfs, rel)
            entries = []
            for local, rel in files:
                if rel in by_reference:
                    entries.append(by_reference[rel])
                    continue
                _own_copy(local, pfs, rel)
                digest, size = self.objects.adopt(local)
                entries.append(Entry(rel, digest, size, datum.id))
        except OutputError:
            raise
        except OSError as exc:  # e.g. no space left: name the output, not scratch
            raise OSError(exc.errno, f"cannot store output {rel}: {exc.strerror}") from exc
        return entries


class OutputError(OSError):
    """An output the store refuses: not a regular file or directory, or a bad name."""


def _output_files(root: Path, folder: Path | None = None) -> Iterator[tuple[Path, str]]:
    """The files under ``root`` (each folder's files by name, then its folders), as
    (host path, ``/``-rooted name); anything that is not a file, a folder or a symlink
    fails, naming the path, before anything is read."""
    folder = folder or root
    files, folders = [], []
    for name in sorted(os.listdir(folder)):
        local = folder / name
        rel = _output_name(root, local)
        mode = os.lstat(local).st_mode
        if stat.S_ISDIR(mode):
            folders.append(local)
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            files.append((local, rel))
        else:
            raise OutputError(
                f"output {rel} is a {_kind(mode)}: only regular files and directories "
                "can be committed"
            )
    yield from files
    for sub in folders:
        yield from _output_files(root, sub)


def _output_name(root: Path, local: Path) -> str:
    """``local``'s name under ``/pfs/out``; it must be valid UTF-8 without control
    characters (names are lines in listings and arguments downstream)."""
    rel = "/" + local.relative_to(root).as_posix()
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = ascii(os.fsencode(rel))
        raise OutputError(f"output {shown}: the name is not valid UTF-8") from None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in rel):
        raise OutputError(f"output {rel!a}: the name holds a control character")
    return rel


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ]
    return next((name for test, name in kinds if test(mode)), f"file of mode {mode:o}")


def _link_target(local: Path, pfs: Path, rel: str) -> Path:
    """The regular file inside ``/pfs`` that the symlink ``local`` leads to (a datum's
    absolute ``/pfs/...`` targets read as the datum saw them)."""
    target = os.readlink(local)
    if target.startswith(PFS_PREFIX):
        target = str(pfs / target[len(PFS_PREFIX) :])
    real = Path(target if os.path.isabs(target) else local.parent / target).resolve()
    if not real.is_relative_to(pfs.resolve()):
        raise OutputError(f"output {rel} links outside /pfs: {os.readlink(local)}")
    if not real.is_file():
        raise OutputError(
            f"output {rel} links to {os.readlink(local)}, which is not a regular file"
        )
    return real


def _own_copy(local: Path, pfs: Path, rel: str) -> None:
    """Make ``local`` a regular file that nothing else shares before it moves into the
    store: a symlink becomes a copy of its target (a regular file inside ``/pfs``, as
    Pachyderm follows links to inputs), a file with other hard links becomes a copy."""
    st = os.lstat(local)
    if stat.S_ISLNK(st.st_mode):
        real = _link_target(local, pfs, rel)
    elif st.st_nlink == 1:
        return
    else:
        real = local
    tmp = local.with_name(f".{local.name}.pachlocal-copy")
    shutil.copyfile(real, tmp)
    os.replace(tmp, local)


PFS_PREFIX = "/pfs/"

RUNTIME_VARIABLES = ("LANG", "LANGUAGE", "TZ", "JAVA_HOME")


def runtime_env(host: Mapping[str, str]) -> dict[str, str]:
    """What stands in for a pipeline image's own environment: ``PATH`` with the engine's
    interpreter first, the locale, ``TZ`` and ``JAVA_HOME`` (the JVM the image would hold)."""
    env = {k: v for k, v in host.items() if k in RUNTIME_VARIABLES or k.startswith("LC_")}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + host.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stdin(lines: Sequence[str] | None) -> bytes | None:
    return ("\n".join(lines) + "\n").encode() if lines else None


@contextlib.contextmanager
def open_engine(
    home: Path, *, write: bool, progress: Progress | None = None, command: str = ""
) -> Iterator[Engine]:
    engine = Engine(home, write=write, progress=progress, command=command)
    try:
        yield engine
    finally:
        engine.close()
