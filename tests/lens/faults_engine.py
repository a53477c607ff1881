"""Driving pachlocal in the fault tests: secrets, repo contents, job logs and the checks of a failed job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pachlocal.store import Store

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 5, 1, tzinfo=UTC)  # ingest's cron start
HOUR = timedelta(hours=1)
# the bounded retries of lensfeed.pg.connect and GcsExportStore (5 tries, 0.5 s doubling)
BACKOFF = [0.5, 1.0, 2.0, 4.0]
DATUM_TRIES = 2  # both specs
Cli = Callable[..., Any]


def create_secret(home: Path, name: str, **values: str) -> None:
    """``create_secret.sh --local NAME`` with the values in its environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PGSQL_", "GCS_", "STORAGE_EMULATOR"))
    }
    env |= {
        "PACHLOCAL_HOME": str(home),
        "PACHLOCAL": str(Path(sys.executable).parent / "pachlocal"),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "create_secret.sh"), "--local", name],
        env=env | values,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"created secret {name} (keys: ")


def files(home: Path, ref: str) -> dict[str, str]:
    """Path -> content hash of a commit (``repo@commit`` or ``repo@branch``)."""
    store = Store(home, readonly=True)
    try:
        return {path: entry.hash for path, entry in store.manifest(store.resolve(ref)).items()}
    finally:
        store.close()


def contents(home: Path, ref: str) -> dict[str, bytes]:
    store = Store(home, readonly=True)
    try:
        manifest = store.manifest(store.resolve(ref))
        return {path: store.objects.read(entry.hash) for path, entry in manifest.items()}
    finally:
        store.close()


def head_id(home: Path, ref: str) -> str:
    store = Store(home, readonly=True)
    try:
        return store.resolve(ref).id
    finally:
        store.close()


def log_text(pachlocal: Cli, pipeline: str, job: str) -> dict[int, str]:
    """``pachlocal logs`` of one job: attempt -> its output."""
    by_attempt: dict[int, str] = {}
    for record in pachlocal("logs", "-p", pipeline, "--job", job, "--raw"):
        by_attempt[record["attempt"]] = by_attempt.get(record["attempt"], "") + record["message"]
    return by_attempt


def assert_failed_without_output(
    pachlocal: Cli, home: Path, pipeline: str, job_id: str, parent: str
) -> dict[str, Any]:
    """The job failed on one datum after every try, and its commit holds exactly ``parent``'s files."""
    job = pachlocal("inspect", "job", f"{pipeline}@{job_id}", "--raw")
    assert job["state"] == "failure"
    assert re.fullmatch(
        r"1 datum\(s\) failed; first: datum [0-9a-f]{64}: command exited with code 1",
        job["reason"],
    ), job["reason"]
    (datum,) = [
        d
        for d in pachlocal("list", "datum", f"{pipeline}@{job_id}", "--raw")
        if d["state"] == "failed"
    ]
    assert datum["attempts"] == DATUM_TRIES
    commit = pachlocal("inspect", "commit", f"{pipeline}@{job_id}", "--raw")
    assert commit["error"] == job["reason"]
    assert commit["parent_commit"] == {"id": parent}
    assert files(home, f"{pipeline}@{job_id}") == files(home, f"{pipeline}@{parent}")
    assert head_id(home, f"{pipeline}@master") == job_id
    return dict(datum)


def assert_fsck_clean(pachlocal: Cli) -> None:
    pachlocal("fsck")  # re-hashes every referenced object; exit 1 on any problem


def gs(bucket: str, name: str) -> str:
    return f"gs://{bucket}/{name}"
