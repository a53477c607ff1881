"""The engine: one state directory's repos, pipelines and jobs, behind pachctl's verbs.

It composes the rooms: the store (:mod:`.store`, every SQL statement), the job queue
(:mod:`.jobqueue`, what a commit sets off, in the commit's own transaction), branch
triggers (:mod:`.triggers`), cron ticks (:mod:`.ticks`), job scheduling
(:mod:`.scheduler`) and datum running (:mod:`.worker`, where the isolation lives).
Spec parsing is :mod:`.spec`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets as pysecrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import cron
from .jobqueue import JobQueue, branch_leaves, reads
from .sandbox import Sandbox, cgroup_base, reap
from .scheduler import EngineError, Progress, Scheduler, max_jobs_setting
from .secrets import SecretStore
from .spec import check_mount_targets, parse_pipeline_spec, refuse_unsupported, spec_fingerprint
from .store import NotFound, PpsRecords, Store, StoreError, check_name, clean_path, new_id
from .ticks import CronTicks
from .triggers import Triggers
from .worker import cgroup_name

__all__ = ["Engine", "EngineError", "Progress", "open_engine"]


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
        self.pps = PpsRecords(self.store)
        self.secrets = SecretStore(home)
        self.triggers = Triggers(self.store, self.pps)
        self.queue = JobQueue(self.store, self.pps, self.triggers)
        self.ticks = CronTicks(self.store, self.pps)
        self.write = write
        self.scheduler = Scheduler(
            home=home,
            store=self.store,
            pps=self.pps,
            queue=self.queue,
            secrets=self.secrets,
            progress=progress or Progress(),
            max_jobs=max(1, max_jobs or max_jobs_setting()),
            recover=self._recover,
        )
        if write:
            self.store.lock(wait=wait_for_lock, what=command)
            self._recover()

    @property
    def max_jobs(self) -> int:
        return self.scheduler.max_jobs

    @property
    def sandbox(self) -> Sandbox:
        return self.scheduler.sandbox

    def close(self) -> None:
        self.scheduler.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recover(self) -> None:
        """Reset jobs left ``running`` by a killed process; their outputs were never visible.
        Datum processes a killed engine left behind are killed first, so a retried job never
        runs beside its previous attempt."""
        reap(self.home / "run", cgroup_base(cgroup_name(self.home)))
        self.pps.reset_running_jobs()
        shutil.rmtree(self.home / "work", ignore_errors=True)
        self.store.clear_tmp()

    # -- pipelines ---------------------------------------------------------------------

    def pipelines(self) -> list[dict[str, Any]]:
        return self.pps.pipelines()

    def pipeline(self, name: str) -> dict[str, Any]:
        return self.pps.pipeline(name)

    def pipeline_version(self, name: str, version: int) -> dict[str, Any]:
        return self.pps.pipeline_version(name, version)

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
        existing = self.pps.find_pipeline(name)
        if existing and not (update or spec.get("update")):
            raise EngineError(f"pipeline {name} already exists (use 'update pipeline')")
        self._check_pipeline_inputs(spec)
        if self.store.repo_exists(name) and not existing:
            raise EngineError(f"cannot create pipeline {name}: a repo named {name} already exists")
        reprocess = reprocess or bool(spec.get("reprocess"))
        if spec.get("salt"):  # the spec's own salt, as pachd takes it
            salt = str(spec["salt"])
        elif existing and not reprocess:
            salt = existing["salt"]
        else:
            salt = pysecrets.token_hex(16)
        leaves = list(branch_leaves(spec.get("input") or {}))
        for leaf in leaves:
            if leaf["kind"] == "cron":
                self.store.ensure_repo(
                    leaf["repo"], kind="cron", description=f"Cron tick repo for {name}"
                )
        self.store.ensure_repo(
            name, kind="pipeline", description=f"Output repo for pipeline {name}"
        )
        set_id = new_id()
        with self.store.transaction() as db:
            self.pps.put_pipeline(
                db,
                name=name,
                spec_json=json.dumps(spec, sort_keys=True),
                fingerprint=spec_fingerprint(spec),
                version=self.pps.next_version(name),
                salt=salt,
                code_root=str(code_root),
                spec_commit=set_id,
            )
            for leaf in leaves:
                trigger = leaf.get("trigger")
                if trigger and not self.store.branch_exists(leaf["repo"], leaf["branch"]):
                    # empty until its trigger fires (pachd gives it an empty head commit)
                    self.store.create_branch(leaf["repo"], leaf["branch"], None, trigger)
                elif trigger:
                    self.store.set_trigger(db, leaf["repo"], leaf["branch"], trigger)
            verb = "update" if existing else "create"
            self.queue.open_set(db, set_id, cause=f"{verb} pipeline {name}")
            self.queue.queue_jobs(db, set_id, [name], changed=set())
        return set_id

    def _check_pipeline_inputs(self, spec: Mapping[str, Any]) -> None:
        """Input repos exist, cron schedules parse, and each secret key named exists."""
        name = spec["pipeline"]["name"]
        for leaf in branch_leaves(spec.get("input") or {}):
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

    def delete_pipeline(self, name: str, *, keep_repo: bool = False) -> None:
        pipe = self.pipeline(name)
        downstream = [p["name"] for p in self.pipelines() if self.reads(p["spec"], name)]
        if downstream and not keep_repo:
            raise EngineError(
                f"cannot delete pipeline {name}: {', '.join(downstream)} read its output"
            )
        with self.store.transaction() as db:
            self.pps.delete_pipeline(db, name)
            if keep_repo:
                self.store.set_repo_kind(db, name, "user")
        if not keep_repo:
            self.store.delete_repo(name)
            for leaf in branch_leaves(pipe["spec"].get("input") or {}):
                if leaf["kind"] == "cron" and self.store.repo_exists(leaf["repo"]):
                    self.store.delete_repo(leaf["repo"])

    def stop_pipeline(self, name: str) -> None:
        """``pachctl stop pipeline``: no job is queued for it (nor for what only it feeds)
        and its cron ticks pause; jobs already queued wait for ``start pipeline``."""
        self.pipeline(name)
        with self.store.transaction() as db:
            self.pps.set_stopped(db, name, True)

    def start_pipeline(self, name: str) -> str | None:
        """``pachctl start pipeline``: queue one job on its inputs' current heads (datums it
        already processed are skipped); the cron ticks missed while stopped come at the
        next ``tick``. Returns the commit set opened, or None if it was running."""
        if not self.pipeline(name)["stopped"]:
            return None
        set_id = new_id()
        with self.store.transaction() as db:
            self.pps.set_stopped(db, name, False)
            if self.pps.has_queued_jobs(name):
                return None  # its queued jobs run now
            self.queue.open_set(db, set_id, cause=f"start pipeline {name}")
            self.queue.queue_jobs(db, set_id, [name], set())
        return set_id

    @staticmethod
    def reads(spec: Mapping[str, Any], repo: str) -> bool:
        """Whether a pipeline spec takes ``repo`` as an input."""
        return reads(spec, repo)

    # -- triggers -------------------------------------------------------------------------

    def empty_trigger_branches(self) -> list[tuple[str, str, str]]:
        """``(repo, branch, source)`` of every triggered branch still without a head whose
        source branch holds files: what waits for its trigger's first firing. A deploy that
        wants the first data through at once runs ``create branch <repo>@<branch> --head
        <source>`` for each (the trigger stays)."""
        return self.triggers.empty_branches()

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
            self.queue.land(db, repo, branch, commit_id, logical_time, cause)
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
            with self.store.transaction():
                self.store.create_branch(repo, branch, None)
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
        when = self.pps.logical_time(target.id)
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
            self.queue.land(db, repo, branch, set_id, logical_time, cause)
        return set_id

    def _refuse_output_branch(self, repo: str, branch: str) -> None:
        """pachd's rule: only a pipeline's jobs commit to its output branch (a branch with
        provenance); its other branches take user commits."""
        if self.pps.has_pipeline(repo) and self.pipeline(repo)["spec"]["outputBranch"] == branch:
            raise EngineError(f"cannot start a commit on an output branch: {repo}@{branch}")

    def finish_commit(
        self, repo: str, commit_id: str, *, logical_time: str | None = None, cause: str = ""
    ) -> None:
        with self.store.transaction() as db:
            commit = self.store.finish_commit(db, repo, commit_id)
            self.queue.land(db, repo, commit.branch, commit_id, logical_time, cause)

    def delete_branch(self, repo: str, branch: str, *, force: bool = False) -> None:
        """``pachctl delete branch``: the branch goes, its commits stay. A pipeline's output
        branch is refused, a branch a pipeline reads needs ``force``."""
        self.store.require_repo(repo)
        if not self.store.branch_exists(repo, branch):
            raise NotFound(f"branch {repo}@{branch} not found")
        if self.pps.has_pipeline(repo) and self.pipeline(repo)["spec"]["outputBranch"] == branch:
            raise EngineError(f"cannot delete {repo}@{branch}: it is pipeline {repo}'s output")
        readers = sorted(self.queue.subscribers(repo, branch))
        if readers and not force:
            raise EngineError(
                f"cannot delete {repo}@{branch}: pipeline(s) {', '.join(readers)} read it"
                " (--force deletes it anyway)"
            )
        with self.store.transaction() as db:
            self.store.delete_branch(db, repo, branch)

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
        updated = self.pps.pipeline_of_spec_commit(set_id)
        if updated is not None:
            raise EngineError(f"cannot {verb} commit set {set_id}: it updated pipeline {updated}")
        later = self.store.sets_computed_from(set_id, {(c.repo, c.id) for c in commits})
        if later:
            raise EngineError(
                f"cannot {verb} commit set {set_id}: commit set(s) {', '.join(later)}"
                " were computed from it"
            )
        for c in commits:
            kids = self.store.children(c.repo, c.id)
            if c.finished is None or any(k.finished is None for k in kids):
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
            self.store.remove_commits(db, commits)
            self.pps.forget_set(db, set_id)
        return [f"{c.repo}@{c.id}" for c in commits]

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
        return self.pps.pending_jobs()

    def run_pending(self) -> list[dict[str, Any]]:
        """Run queued jobs until none is runnable; returns the finished job rows in the
        order they finished (:meth:`.scheduler.Scheduler.run_pending`)."""
        return self.scheduler.run_pending()

    # -- cron -------------------------------------------------------------------------------

    def cron_inputs(self) -> list[tuple[str, dict[str, Any]]]:
        return self.ticks.cron_inputs()

    def due_ticks(self, until: datetime) -> list[tuple[datetime, str, dict[str, Any]]]:
        """Every tick due up to ``until`` for every cron input, oldest first."""
        return self.ticks.due(until)

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

    def _fire_scheduled_triggers(self, until: datetime, *, run: bool) -> int:
        """Move every ``cronSpec``-triggered branch at each of its ticks up to ``until`` to
        its source's head then (pachd's ``runCronTrigger``), running the jobs after each
        move. As in pachd, a tick moves the branch even when its source has not moved:
        the readers' jobs then skip every datum."""
        moved = 0
        while True:
            due = [m for m in self.triggers.scheduled_moves() if m.when <= until]
            if not due:
                return moved
            move = due[0]
            head = self.store.branch_head(move.repo, move.source) or ""
            self._move_branch(
                move.repo,
                move.branch,
                self.store.get_commit(move.repo, head),
                move.when.isoformat(),
                f"cron trigger {move.branch} of {move.repo}@{move.source}",
            )
            moved += 1
            if run:
                self.run_pending()

    # -- queries ---------------------------------------------------------------------------

    def job(self, pipeline: str, job_id: str) -> dict[str, Any]:
        return self.pps.job(pipeline, job_id)

    def jobs(self, pipeline: str | None = None, set_id: str | None = None) -> list[dict[str, Any]]:
        return self.pps.jobs(pipeline, set_id)

    def datums(self, pipeline: str, job_id: str) -> list[dict[str, Any]]:
        return self.pps.datums(pipeline, job_id)

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


@contextlib.contextmanager
def open_engine(
    home: Path, *, write: bool, progress: Progress | None = None, command: str = ""
) -> Iterator[Engine]:
    engine = Engine(home, write=write, progress=progress, command=command)
    try:
        yield engine
    finally:
        engine.close()
