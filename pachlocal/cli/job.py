"""``pachlocal list|inspect|wait job``, and the wait for a commit set's jobs that
``wait commit`` shares."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..engine import Engine, EngineError
from ..store import StoreError
from .common import RAW, A, ago, command, emit, parse_job_ref, table

JOB_HEADERS = ["ID", "PIPELINE", "STARTED", "DURATION", "DATUMS", "STATE", "REASON"]

WAIT_ARGS = [
    A("commit", help="a commit-set id, repo@commit or repo@branch"),
    A("--timeout", type=float, default=0, help="seconds (0: no limit)"),
]


def _job_rows(jobs: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            j["id"],
            j["pipeline"],
            ago(j["started"] or j["created"]),
            f"{j['finished'] - j['started']:.2f}s" if j["finished"] and j["started"] else "-",
            f"{j['processed'] + j['skipped'] + j['failed'] + j['recovered']}/{j['total']}"
            f" ({j['processed']} processed, {j['skipped']} skipped, {j['failed']} failed)",
            j["state"],
            j["reason"],
        ]
        for j in jobs
    ]


def wait_set(e: Engine, set_id: str, timeout: float) -> int:
    """Run (or wait for another process to run) every job of a commit set."""
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        if e.write:
            e.run_pending()
        jobs = e.jobs(set_id=set_id)
        pending = [j for j in jobs if j["state"] in ("created", "running")]
        if not pending:
            failed = [j for j in jobs if j["state"] != "success"]
            for j in failed:
                print(
                    f"job {j['pipeline']}@{j['id']}: {j['state']}: {j['reason']}", file=sys.stderr
                )
            return 1 if failed else 0
        if deadline and time.monotonic() > deadline:
            raise EngineError(f"timed out waiting for {len(pending)} job(s) of {set_id}")
        time.sleep(0.2)


@command("wait", "job", write=True, args=WAIT_ARGS)
def wait_job(a: argparse.Namespace, e: Engine) -> int:
    set_id = a.commit.partition("@")[2] or a.commit
    if not e.jobs(set_id=set_id):
        raise StoreError(f"job {a.commit} not found")
    return wait_set(e, set_id, a.timeout)


@command("list", "job", write=False, args=[A("-p", "--pipeline"), A("id", nargs="?"), RAW])
def list_job(a: argparse.Namespace, e: Engine) -> int:
    jobs = e.jobs(pipeline=a.pipeline, set_id=a.id)
    emit(a.raw, jobs, JOB_HEADERS, _job_rows(jobs))
    return 0


@command("inspect", "job", write=False, args=[A("job"), RAW])
def inspect_job(a: argparse.Namespace, e: Engine) -> int:
    job = e.job(*parse_job_ref(a.job))
    job["inputs"] = json.loads(job["inputs"])
    if a.raw:
        print(json.dumps(job, indent=2, sort_keys=True))
    else:
        print(table(JOB_HEADERS, _job_rows([job])))
        for i in job["inputs"]:
            print(f"Input {i['name']}: {i['repo']}@{i['branch']}={i['commit'] or '<empty>'}")
    return 0
