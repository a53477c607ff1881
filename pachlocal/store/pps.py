"""The pipeline system's records (PPS): pipelines and their versions, commit sets, jobs
and datums, on the store's SQLite database.

Writes take the transaction (``db``) the caller opened with
:meth:`~pachlocal.store.pfs.Store.transaction`, so that a job row is queued, or a job
finished, in the same transaction that makes its commit visible.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from .errors import NotFound
from .pfs import Store

#: Job states that end a job.
JOB_DONE = ("success", "failure", "killed", "unrunnable")

#: A datum row as recorded: id, hash, state, inputs (JSON), attempts, seconds, reason.
DatumRow = tuple[str, str, str, str, int, float, str]


def _column(row: sqlite3.Row, name: str, default: Any) -> Any:
    """``row[name]``, or ``default`` where the column is missing (a row of an older schema,
    read without the writer lock that migrates it; a Row's ``in`` looks at values)."""
    return row[name] if name in tuple(row.keys()) else default


def _pipeline(row: sqlite3.Row) -> dict[str, Any]:
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


class PpsRecords:
    """Pipelines, commit sets, jobs and datums over a :class:`Store`'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    # -- pipelines ---------------------------------------------------------------------

    def pipelines(self) -> list[dict[str, Any]]:
        return [_pipeline(r) for r in self.db.execute("SELECT * FROM pipelines ORDER BY name")]

    def find_pipeline(self, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM pipelines WHERE name=?", (name,)).fetchone()
        return None if row is None else _pipeline(row)

    def pipeline(self, name: str) -> dict[str, Any]:
        found = self.find_pipeline(name)
        if found is None:
            raise NotFound(f"pipeline {name} not found")
        return found

    def has_pipeline(self, name: str) -> bool:
        q = "SELECT 1 FROM pipelines WHERE name=?"
        return self.db.execute(q, (name,)).fetchone() is not None

    def pipeline_version(self, name: str, version: int) -> dict[str, Any]:
        row = self.db.execute(
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

    def next_version(self, name: str) -> int:
        """Versions keep counting across a delete and re-create, so provenance stays
        unambiguous."""
        row = self.db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM pipeline_versions WHERE name=?", (name,)
        ).fetchone()
        return int(row[0]) + 1

    def put_pipeline(
        self,
        db: sqlite3.Connection,
        *,
        name: str,
        spec_json: str,
        fingerprint: str,
        version: int,
        salt: str,
        code_root: str,
        spec_commit: str,
    ) -> None:
        """Create or replace a pipeline, recording the new version; the spec commit is the
        commit set the creation opens, as in pachd."""
        now = time.time()
        db.execute(
            "INSERT INTO pipelines (name, spec, fingerprint, version, salt, code_root, created,"
            " updated) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET"
            " spec=excluded.spec, fingerprint=excluded.fingerprint, version=excluded.version,"
            " salt=excluded.salt, code_root=excluded.code_root, updated=excluded.updated",
            (name, spec_json, fingerprint, version, salt, code_root, now, now),
        )
        db.execute(
            "INSERT INTO pipeline_versions"
            " (name, version, spec, fingerprint, salt, created, spec_commit)"
            " VALUES (?,?,?,?,?,?,?)",
            (name, version, spec_json, fingerprint, salt, now, spec_commit),
        )

    def pipeline_of_spec_commit(self, set_id: str) -> str | None:
        """The pipeline a commit set created or updated, if any."""
        row = self.db.execute(
            "SELECT name FROM pipeline_versions WHERE spec_commit=?", (set_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def delete_pipeline(self, db: sqlite3.Connection, name: str) -> None:
        db.execute("DELETE FROM pipelines WHERE name=?", (name,))
        db.execute("DELETE FROM jobs WHERE pipeline=?", (name,))
        db.execute("DELETE FROM datums WHERE pipeline=?", (name,))

    def set_stopped(self, db: sqlite3.Connection, name: str, stopped: bool) -> None:
        db.execute("UPDATE pipelines SET stopped=? WHERE name=?", (int(stopped), name))

    # -- commit sets --------------------------------------------------------------------

    def open_set(
        self, db: sqlite3.Connection, set_id: str, *, cause: str, logical_time: str
    ) -> None:
        db.execute(
            "INSERT OR IGNORE INTO commit_sets (id, seq, created, logical_time, cause)"
            " VALUES (?,?,?,?,?)",
            (set_id, self.store.next_seq(), time.time(), logical_time, cause),
        )

    def logical_time(self, set_id: str) -> str | None:
        row = self.db.execute(
            "SELECT logical_time FROM commit_sets WHERE id=?", (set_id,)
        ).fetchone()
        return row["logical_time"] if row else None

    def forget_set(self, db: sqlite3.Connection, set_id: str) -> None:
        """Drop a commit set with its jobs and datums (its commits are the caller's)."""
        db.execute("DELETE FROM datums WHERE job=?", (set_id,))
        db.execute("DELETE FROM jobs WHERE id=?", (set_id,))
        db.execute("DELETE FROM commit_sets WHERE id=?", (set_id,))

    # -- jobs -----------------------------------------------------------------------------

    def find_job(self, pipeline: str, job_id: str) -> sqlite3.Row | None:
        return self.db.execute(  # type: ignore[no-any-return]
            "SELECT * FROM jobs WHERE pipeline=? AND id=?", (pipeline, job_id)
        ).fetchone()

    def job(self, pipeline: str, job_id: str) -> dict[str, Any]:
        row = self.find_job(pipeline, job_id)
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
        rows = self.db.execute(f"SELECT * FROM jobs{where} ORDER BY seq DESC", args)
        return [dict(r) for r in rows]

    def pending_jobs(self) -> list[sqlite3.Row]:
        return list(
            self.db.execute("SELECT * FROM jobs WHERE state IN ('created','running') ORDER BY seq")
        )

    def has_queued_jobs(self, pipeline: str) -> bool:
        q = "SELECT 1 FROM jobs WHERE pipeline=? AND state IN ('created', 'running')"
        return self.db.execute(q, (pipeline,)).fetchone() is not None

    def queue_job(
        self, db: sqlite3.Connection, pipeline: str, set_id: str, inputs: str, spec_version: int
    ) -> None:
        db.execute(
            "INSERT INTO jobs (pipeline, id, seq, state, created, inputs, spec_version)"
            " VALUES (?,?,?,'created',?,?,?)",
            (pipeline, set_id, self.store.next_seq(), time.time(), inputs, spec_version),
        )

    def rebind_job(self, db: sqlite3.Connection, pipeline: str, set_id: str, inputs: str) -> None:
        db.execute("UPDATE jobs SET inputs=? WHERE pipeline=? AND id=?", (inputs, pipeline, set_id))

    def mark_running(
        self, db: sqlite3.Connection, pipeline: str, job_id: str, started: float
    ) -> None:
        db.execute(
            "UPDATE jobs SET state='running', started=? WHERE pipeline=? AND id=?",
            (started, pipeline, job_id),
        )

    def reset_running_jobs(self) -> int:
        """Put jobs left ``running`` by a killed process back in the queue, forgetting
        their datums; returns how many."""
        stale = self.db.execute("SELECT pipeline, id FROM jobs WHERE state='running'").fetchall()
        if stale:
            with self.store.transaction() as db:
                for row in stale:
                    key = (row["pipeline"], row["id"])
                    db.execute("DELETE FROM datums WHERE pipeline=? AND job=?", key)
                    db.execute(
                        "UPDATE jobs SET state='created', started=NULL, processed=0, skipped=0,"
                        " failed=0, recovered=0 WHERE pipeline=? AND id=?",
                        key,
                    )
        return len(stale)

    def last_success(self, pipeline: str, before_seq: int) -> str | None:
        """The id of the pipeline's last successful job before ``before_seq``."""
        row = self.db.execute(
            "SELECT id FROM jobs WHERE pipeline=? AND state='success' AND seq<?"
            " ORDER BY seq DESC LIMIT 1",
            (pipeline, before_seq),
        ).fetchone()
        return None if row is None else str(row["id"])

    def finish_job(
        self,
        db: sqlite3.Connection,
        pipeline: str,
        job_id: str,
        datums: Sequence[DatumRow],
        state: str,
        reason: str,
    ) -> None:
        """Record a job's datums and its end state, with the count of each datum state."""
        db.executemany(
            "INSERT OR REPLACE INTO datums (pipeline, job, datum, hash, state, inputs,"
            " attempts, seconds, reason) VALUES (?,?,?,?,?,?,?,?,?)",
            [(pipeline, job_id, *d) for d in datums],
        )
        counts = {s: sum(d[2] == s for d in datums) for s in ("success", "skipped", "failed")}
        db.execute(
            "UPDATE jobs SET state=?, finished=?, total=?, processed=?, skipped=?, failed=?,"
            " recovered=?, reason=? WHERE pipeline=? AND id=?",
            (
                state,
                time.time(),
                len(datums),
                counts["success"],
                counts["skipped"],
                counts["failed"],
                sum(d[2] == "recovered" for d in datums),
                reason,
                pipeline,
                job_id,
            ),
        )

    # -- datums ---------------------------------------------------------------------------

    def datum_hashes(self, pipeline: str, job_id: str) -> dict[str, tuple[str, str]]:
        """``datum id -> (hash, state)`` of one job."""
        rows = self.db.execute(
            "SELECT datum, hash, state FROM datums WHERE pipeline=? AND job=?", (pipeline, job_id)
        )
        return {r["datum"]: (r["hash"], r["state"]) for r in rows}

    def datums(self, pipeline: str, job_id: str) -> list[dict[str, Any]]:
        self.job(pipeline, job_id)
        rows = self.db.execute(
            "SELECT * FROM datums WHERE pipeline=? AND job=? ORDER BY rowid", (pipeline, job_id)
        )
        return [dict(r) for r in rows]
