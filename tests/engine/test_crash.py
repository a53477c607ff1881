"""Crash safety: SIGKILL the engine mid-job, reopen, verify, finish, compare."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = "sleep 0.05; echo $(cat $in)-done > /pfs/out/$(basename $in); echo x >> $PROGRESS_FILE"


def pachlocal(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PACHLOCAL_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "pachlocal.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=check,
    )


def setup_state(home: Path, tmp: Path, n: int = 12) -> Path:
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    for i in range(n):
        (data / f"f{i:02d}").write_text(str(i))
    spec = {
        "pipeline": {"name": "slow"},
        "transform": {
            "cmd": ["sh", "-c", SCRIPT],
            "env": {"PROGRESS_FILE": str(tmp / f"progress-{home.name}")},
        },
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
    }
    spec_path = tmp / "slow.pipeline.json"
    spec_path.write_text(json.dumps(spec))
    pachlocal(home, "create", "repo", "in")
    pachlocal(home, "create", "pipeline", "-f", str(spec_path))
    return data


def files_of(home: Path, ref: str) -> dict[str, str]:
    listing = json.loads(pachlocal(home, "glob", "file", f"{ref}:/**", "--raw").stdout)
    return {
        e["path"]: pachlocal(home, "get", "file", f"{ref}:{e['path']}").stdout
        for e in listing
        if e["type"] == "file"
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("ref")
    home = tmp / "state"
    data = setup_state(home, tmp)
    pachlocal(home, "put", "file", "in@master:/", "-f", str(data), "-r")
    return files_of(home, "slow@master")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_mid_job_leaves_no_partial_commit(
    tmp_path: Path, reference: dict[str, str], seed: int
) -> None:
    home = tmp_path / "state"
    data = setup_state(home, tmp_path)
    progress = tmp_path / f"progress-{home.name}"
    env = {**os.environ, "PACHLOCAL_HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pachlocal.cli",
            "put",
            "file",
            "in@master:/",
            "-f",
            str(data),
            "-r",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wanted = random.Random(seed).randint(1, 10)  # datums done before the kill
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if progress.exists() and len(progress.read_text().splitlines()) >= wanted:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # readers see the user commit and no output commit of the killed job
    commits = json.loads(pachlocal(home, "list", "commit", "slow", "--raw").stdout)
    killed_set = json.loads(pachlocal(home, "inspect", "commit", "in@master", "--raw").stdout)[
        "commit"
    ]["id"]
    assert killed_set not in [c["commit"]["id"] for c in commits]
    assert all(c["finished"] for c in commits)
    assert pachlocal(home, "fsck").returncode == 0

    # the next writer resumes the queued job and produces what an uninterrupted run does
    pachlocal(home, "run")
    assert files_of(home, "slow@master") == reference
    job = json.loads(pachlocal(home, "inspect", "job", f"slow@{killed_set}", "--raw").stdout)
    assert job["state"] == "success"
    assert pachlocal(home, "fsck").returncode == 0


def test_second_writer_waits_or_refuses(tmp_path: Path) -> None:
    home = tmp_path / "state"
    pachlocal(home, "create", "repo", "in")
    from pachlocal.store import Store, StoreError

    holder = Store(home)
    holder.lock(what="test holder")
    try:
        other = Store(home)
        with pytest.raises(StoreError, match="in use by pid"):
            other.lock(wait=False)
        other.close()
    finally:
        holder.close()


@pytest.mark.slow
def test_serve_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "state"
    spec = {
        "pipeline": {"name": "beat"},
        "transform": {"cmd": ["sh", "-c", "sleep 30; touch /pfs/out/done"]},
        "input": {"cron": {"name": "tick", "spec": "@every 1s"}},
    }
    (tmp_path / "beat.json").write_text(json.dumps(spec))
    pachlocal(home, "create", "pipeline", "-f", str(tmp_path / "beat.json"))
    env = {**os.environ, "PACHLOCAL_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pachlocal.cli", "serve"], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until a datum is running
        jobs = json.loads(pachlocal(home, "list", "job", "-p", "beat", "--raw").stdout)
        if any(j["state"] == "running" for j in jobs):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err
    jobs = json.loads(pachlocal(home, "list", "job", "-p", "beat", "--raw").stdout)
    assert [j["state"] for j in jobs if j["state"] not in ("success", "created")] == []
    assert all(c["finished"] for c in json.loads(pachlocal(home, "list", "commit", "--raw").stdout))
    assert pachlocal(home, "fsck").returncode == 0
