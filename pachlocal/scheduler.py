"""Job scheduling: run queued jobs, reuse datums, commit each job's output.

As pachd's workers do, jobs of different pipelines run at the same time (up to
``max_jobs``, default the number of cores) and the jobs of one pipeline run one at a
time, oldest first, since each reuses its predecessor's datums. Every store access
stays on the engine's thread: a job's thread only runs its datums
(:class:`~pachlocal.worker.DatumRunner`). A job's output commit is inserted, with its
provenance, in one transaction when it finishes, which also queues what it feeds. The
job table is a durable queue: a process killed mid-job leaves a ``running`` row that
the next writer resets to ``created`` and runs again from scratch.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .code import code_version
from .datums import Datum, FileInfo, InputCommit, datum_hash, form_datums
from .jobqueue import JobQueue, now_iso
from .sandbox import Sandbox, detect
from .secrets import SecretStore
from .spec import spec_fingerprint
from .store import JOB_DONE, DatumRow, Entry, PpsRecords, Store, StoreError
from .worker import DatumOutcome, DatumRunner, cgroup_name, input_json


class EngineError(Exception):
    """An engine request that cannot be satisfied; the message says why."""


@dataclass
class Progress:
    """Callbacks the CLI uses to show progress; the default shows nothing."""

    job_started: Callable[[str, str, int], None] = lambda pipeline, job, total: None
    datum_done: Callable[[str, int, int], None] = lambda pipeline, done, total: None
    job_finished: Callable[[Mapping[str, Any]], None] = lambda job: None


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


def max_jobs_setting() -> int:
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
    runner: DatumRunner

    @property
    def name(self) -> str:
        return str(self.job["pipeline"])


def merge_outputs(outcomes: Sequence[DatumOutcome]) -> tuple[dict[str, Entry], str]:
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


class Scheduler:
    """Runs the job queue of one state directory (the writer's)."""

    def __init__(
        self,
        *,
        home: Path,
        store: Store,
        pps: PpsRecords,
        queue: JobQueue,
        secrets: SecretStore,
        progress: Progress,
        max_jobs: int,
        recover: Callable[[], None],
    ) -> None:
        self.home = home
        self.store = store
        self.pps = pps
        self.queue = queue
        self.secrets = secrets
        self._progress = _serialized(progress)
        self.max_jobs = max_jobs
        self._recover = recover
        self._sandbox: Sandbox | None = None
        self._code_versions: dict[str, str] = {}

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()

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
                        done.append(self.pps.job(run.name, run.job["id"]))
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
        seen |= {p["name"] for p in self.pps.pipelines() if p["stopped"]}  # they wait for a start
        for job in self.pps.pending_jobs():
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
                done.append(self.pps.job(job["pipeline"], job["id"]))
                continue
            running[pool.submit(self._work, run)] = run
        return progressed

    def _readiness(self, job: Any) -> str:
        for inp in json.loads(job["inputs"]):
            if inp["commit"] is None:
                continue
            commit = self.store.find_commit(inp["repo"], inp["commit"])
            if commit is None or commit.finished is None:
                upstream = self.pps.find_job(inp["repo"], inp["commit"])
                if upstream is not None and upstream["state"] in JOB_DONE:
                    return f"input {inp['repo']}@{inp['commit']} was never produced"
                if upstream is None and commit is None:
                    return f"input {inp['repo']}@{inp['commit']} does not exist"
                return "wait"
            if commit.error:
                return f"unrunnable: input {inp['repo']}@{inp['commit']} failed: {commit.error}"
        return "ready"

    def _finish_unrunnable(self, job: Any, reason: str) -> None:
        pipe = self.pps.pipeline_version(job["pipeline"], job["spec_version"])
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
            "git_revision": self._code_version(self.pps.pipeline(job["pipeline"])["code_root"])
            if self.pps.has_pipeline(job["pipeline"])
            else "",
            "job": job["id"],
        }

    def _code_version(self, code_root: str) -> str:
        if code_root not in self._code_versions:
            self._code_versions[code_root] = code_version(code_root)
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
        last = self.pps.last_success(pipeline, before_seq)
        if last is None:
            return {}, {}
        commit = self.store.find_commit(pipeline, last)
        return self.pps.datum_hashes(pipeline, last), (
            self.store.manifest(commit) if commit else {}
        )

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = detect(
                self.home / "work", pids=self.home / "run", cgroup_name=cgroup_name(self.home)
            )
            for note in self._sandbox.notes:
                sys.stderr.write(f"pachlocal: {note}\n")
        return self._sandbox

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
        pipe = self.pps.pipeline_version(name, job["spec_version"])
        spec, salt = pipe["spec"], pipe["salt"]
        started = time.time()
        with self.store.transaction() as db:
            self.pps.mark_running(db, name, job_id, started)
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
        code_root = (
            self.pps.pipeline(name)["code_root"] if self.pps.has_pipeline(name) else os.getcwd()
        )
        self.sandbox  # noqa: B018 (detected here, on the engine's thread, before any datum)
        runner = DatumRunner(
            home=self.home,
            objects=self.store.objects,
            secrets=self.secrets,
            sandbox=self.sandbox,
            pipeline=name,
            job_id=job_id,
            pipe=pipe,
            code_root=Path(code_root),
        )
        self._progress.job_started(name, job_id, len(datums))
        self._progress.datum_done(name, len(skipped), len(datums))
        return _JobRun(job, pipe, started, skipped, todo, len(datums), runner)

    def _work(self, run: _JobRun) -> list[DatumOutcome]:
        """A job's thread: run its datums (no store access here)."""
        try:
            if not run.todo:
                return []
            done = len(run.skipped)
            return run.runner.run_all(
                run.todo, lambda n: self._progress.datum_done(run.name, done + n, run.total)
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
        entries, clash = merge_outputs(outcomes)
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
            lt = self.pps.logical_time(job_id) or now_iso()
            self.queue.on_commit(db, name, spec["outputBranch"], job_id, lt)
        self._progress.job_finished(self.pps.job(name, job_id))

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
        self._progress.job_finished(self.pps.job(job["pipeline"], job["id"]))

    def _record_datums(
        self,
        db: sqlite3.Connection,
        name: str,
        job_id: str,
        outcomes: Sequence[DatumOutcome],
        state: str,
        reason: str,
    ) -> None:
        rows: list[DatumRow] = [
            (
                o.datum.id,
                o.hash,
                o.state,
                json.dumps([input_json(i) for i in o.datum.inputs]),
                o.attempts,
                o.seconds,
                o.reason,
            )
            for o in outcomes
        ]
        self.pps.finish_job(db, name, job_id, rows, state, reason)

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
