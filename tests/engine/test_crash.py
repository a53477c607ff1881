"""Crash safety: SIGKILL the engine mid-job, reopen, verify, finish, compare; a user
commit is finished or visibly open, never half made; ``fsck`` finds broken state.

Killing at every durable step is in ``test_killpoints.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pachlocal.store import Store

from .conftest import Pachlocal

Write = Callable[[str, str | bytes], Path]

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


# -- user commits are finished or visibly open --------------------------------------------


def _commit_rows(pl: Pachlocal, repo: str = "in") -> list[tuple[str, bool]]:
    return [
        (c["commit"]["id"], c["finished"] is not None)
        for c in pl("list", "commit", repo, "--raw").json()
    ]


def _copy_spec() -> dict[str, Any]:
    return {
        "pipeline": {"name": "cp"},
        "transform": {"cmd": ["sh", "-c", "cp -r /pfs/in/. /pfs/out/"]},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
    }


def test_start_commit_collects_writes_until_finish_as_pachyderm_does(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    pl("create", "repo", "in")
    pl("create", "pipeline", "-f", pl.spec(tmp_path, _copy_spec()))
    commit_id = pl("start", "commit", "in@master").out.strip()
    res = pl("put", "file", "in@master:/a", "-f", str(write("a", "A")))
    assert res.err == (
        f"pachlocal: staged in open commit in@{commit_id}; "
        "visible after 'pachlocal finish commit in@master'\n"
    )
    pl("put", "file", "in@master:/b", "-f", str(write("b", "B")))
    # open and listed as such; nothing visible on the branch, no job yet
    assert _commit_rows(pl) == [(commit_id, False)]
    assert pl("list", "commit", "in").out.splitlines()[1].split()[3] == "-"
    assert pl("list", "job", "-p", "cp", "--raw").json()[0]["id"] != commit_id
    assert pl("fsck").err == f"fsck: 0 problem(s); open commit(s): in@{commit_id}\n"

    pl("finish", "commit", "in@master")
    assert _commit_rows(pl) == [(commit_id, True)]
    assert pl.files("in@master") == pl.files("cp@master") == {"/a": b"A", "/b": b"B"}
    assert pl("fsck").err == "fsck: 0 problem(s)\n"


def test_put_file_with_a_file_directory_collision_is_rejected_whole(
    pl: Pachlocal, write: Write
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "file")))
    before = _commit_rows(pl)
    res = pl("put", "file", "in@master:/a/b", "-f", str(write("b", "under a")), ok=False)
    assert (res.rc, res.err) == (
        1,
        "pachlocal: in@master: file / directory path collision (/a/b): /a is a file, so it "
        "cannot also be the directory of /a/b; nothing was committed\n",
    )
    # a whole directory is one commit: one colliding path rejects all of it
    write("dir/ok", "fine")
    folder = write("dir/a/inner", "under a").parents[1]
    res = pl("put", "file", "in@master:/", "-f", str(folder), "-r", ok=False)
    assert "in@master: file / directory path collision (/a/inner): /a is a file" in res.err
    assert _commit_rows(pl) == before
    assert pl.files("in@master") == {"/a": b"file"}
    assert pl("fsck").rc == 0


def test_finish_commit_with_a_collision_fails_and_the_commit_stays_open(
    pl: Pachlocal, write: Write
) -> None:
    pl("create", "repo", "in")
    commit_id = pl("start", "commit", "in@master").out.strip()
    pl("put", "file", "in@master:/a", "-f", str(write("a", "file")))
    pl("put", "file", "in@master:/a/b", "-f", str(write("b", "under a")))
    res = pl("finish", "commit", "in@master", ok=False)
    assert (res.rc, res.err) == (
        1,
        f"pachlocal: commit in@{commit_id}: file / directory path collision (/a/b): /a is "
        "a file, so it cannot also be the directory of /a/b; the commit stays open: delete "
        "one of the two and finish it again\n",
    )
    assert _commit_rows(pl) == [(commit_id, False)]
    pl("delete", "file", "in@master:/a/b")  # a file only staged in the open commit
    pl("finish", "commit", "in@master")
    assert _commit_rows(pl) == [(commit_id, True)]
    assert pl.files("in@master") == {"/a": b"file"}


def test_open_commit_keeps_the_order_of_writes(pl: Pachlocal, write: Write) -> None:
    """Put /d/x, delete /d, put /d/x again: the last put wins, as it was written last."""
    pl("create", "repo", "in")
    pl("start", "commit", "in@master")
    pl("put", "file", "in@master:/d/x", "-f", str(write("x1", "one")))
    pl("delete", "file", "in@master:/d")
    pl("put", "file", "in@master:/d/x", "-f", str(write("x2", "two")))
    pl("finish", "commit", "in@master")
    assert pl.files("in@master") == {"/d/x": b"two"}


def test_an_open_commit_left_by_an_older_version_stays_visible(pl: Pachlocal, write: Write) -> None:
    """Before implicit commits were atomic, a kill could leave one open; it looks like a
    commit from ``start commit`` and is treated as one: listed, written into, finished
    on request, never deleted behind the user's back."""
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "A")))
    store = Store(pl.home)
    left = store.start_commit("in", "master")  # what the old put file did first
    store.close()
    assert pl("list", "commit", "in", "--raw").json()[0]["finished"] is None
    res = pl("put", "file", "in@master:/b", "-f", str(write("b", "B")))
    assert f"staged in open commit in@{left}" in res.err
    assert pl("fsck").rc == 0
    pl("finish", "commit", f"in@{left}")
    assert pl.files("in@master") == {"/a": b"A", "/b": b"B"}


def test_fsck_finds_broken_state(pl: Pachlocal, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "A")))
    pl("put", "file", "in@master:/b", "-f", str(write("b", "BB")))
    store = Store(pl.home)
    head = store.resolve("in@master")
    files = store.manifest(head)
    obj = store.objects.path(files["/b"].hash)
    obj.chmod(0o644)
    obj.write_bytes(b"XX")  # same size, other bytes
    store.objects.path(files["/a"].hash).unlink()
    store.db.execute("UPDATE branches SET head='0123' WHERE repo='in'")
    orphan = store.objects.put_bytes(b"left by a killed upload")
    store.close()
    res = pl("fsck", ok=False)
    assert res.rc == 1
    assert sorted(res.out.splitlines()) == sorted(
        [
            f"commit in@{head.id}: /a: object {files['/a'].hash} is missing or does not "
            "match its hash",
            f"commit in@{head.id}: /b: object {files['/b'].hash} is missing or does not "
            "match its hash",
            "branch in@master points at missing 0123",
        ]
    )
    assert res.err == (
        "fsck: 3 problem(s); 1 unreferenced object(s) (23B) left by interrupted writes\n"
    )
    assert orphan not in res.out
