"""Fault injection: a second writer on the same state directory.

A writer that finds the state locked says once on stderr whom it waits for, writes
nothing meanwhile, and finishes after the holder; readers meanwhile see the holder's
work only. Concurrent writes end in exactly the history of the same writes run one
after the other.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .conftest import Pachlocal, job_rows
from .faults_support import At, Write, assert_consistent, pipeline_spec

REPO_ROOT = Path(__file__).resolve().parents[2]


def spawn(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pachlocal.cli", *args],
        env={**os.environ, "PACHLOCAL_HOME": str(home)},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_stderr_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    assert ready, "no message on stderr"
    return proc.stderr.readline()


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


HOLDER = """
import sys
from pathlib import Path
from pachlocal.store import Store
store = Store(Path(sys.argv[1]))
store.lock(what="fault-test holder")
print("locked", flush=True)
sys.stdin.read()
store.close()
"""


def test_second_writer_waits_for_the_lock_holder_then_finishes(pl: Pachlocal) -> None:
    pl("create", "repo", "in")
    repos = pl("list", "repo", "--raw").json()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(pl.home)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    writer = None
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "locked\n"
        writer = spawn(pl.home, "create", "repo", "late")
        assert first_stderr_line(writer) == (
            f"pachlocal: waiting for pid {holder.pid} (fault-test holder) to release {pl.home}\n"
        )
        time.sleep(0.3)
        assert writer.poll() is None  # still waiting, and it wrote nothing
        assert pl("list", "repo", "--raw").json() == repos
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        out, err = writer.communicate(timeout=60)
        assert (writer.returncode, out, err) == (0, "", "")
    finally:
        for proc in (holder, writer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [r["name"] for r in pl("list", "repo", "--raw").json()] == ["late", "in"]
    assert (pl.home / "lock").read_text() == ""
    assert_consistent(pl)


GATED = (
    'touch "$STARTED/$(basename $in)"; '
    'while [ ! -e "$GATE" ]; do sleep 0.01; done; '
    "cat $in > /pfs/out/$(basename $in)"
)


def history(p: Pachlocal) -> dict[str, Any]:
    """Commits and jobs in the order they happened, commit sets numbered by first use."""
    commits = list(reversed(p("list", "commit", "--raw").json()))
    label: dict[str, str] = {}
    for c in commits:
        label.setdefault(c["commit"]["id"], f"set{len(label)}")
    return {
        "commits": [(c["commit"]["repo"]["name"], label[c["commit"]["id"]]) for c in commits],
        "inputs": [
            [label.get(i["commit"], i["commit"]) for i in c["provenance"].get("inputs", [])]
            for c in commits
        ],
        "jobs": [
            (j["pipeline"], label[j["id"]], j["state"], j["processed"], j["skipped"])
            for j in reversed(p("list", "job", "--raw").json())
        ],
        "files": p.files("gated@master"),
    }


def test_writer_waiting_on_a_running_job_commits_after_it_never_between(
    pl: Pachlocal, tmp_path: Path, write: Write, capsys: Any
) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    started.mkdir()
    spec = pl.spec(tmp_path, pipeline_spec("gated", GATED, STARTED=str(started), GATE=str(gate)))
    pl("create", "repo", "in")
    pl("create", "pipeline", "-f", spec)
    first = second = None
    try:
        first = spawn(pl.home, "put", "file", "in@master:/a", "-f", str(write("a", "A")))
        wait_for(started / "a")  # the first writer holds the lock, mid-job
        second = spawn(pl.home, "put", "file", "in@master:/b", "-f", str(write("b", "B")))
        assert first_stderr_line(second) == (
            f"pachlocal: waiting for pid {first.pid} (put file) to release {pl.home}\n"
        )
        time.sleep(0.3)
        assert (first.poll(), second.poll()) == (None, None)
        # readers see the first user commit, its job running, and nothing of the second
        assert pl.files("in@master") == {"/a": b"A"}
        (running, _) = job_rows(pl, "gated")
        assert running["state"] == "running"
        assert len(pl("list", "commit", "gated", "--raw").json()) == 1
        assert sorted(p.name for p in started.iterdir()) == ["a"]
        gate.touch()
        for proc in (first, second):
            out, err = proc.communicate(timeout=60)
            assert (proc.returncode, out) == (0, ""), err
    finally:
        gate.touch()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    concurrent = history(pl)
    assert concurrent["commits"] == [
        ("gated", "set0"),
        ("in", "set1"),
        ("gated", "set1"),
        ("in", "set2"),
        ("gated", "set2"),
    ]
    sequential = At(tmp_path / "sequential", capsys)
    sequential("create", "repo", "in")
    sequential("create", "pipeline", "-f", spec)
    sequential("put", "file", "in@master:/a", "-f", str(write("a", "A")))
    sequential("put", "file", "in@master:/b", "-f", str(write("b", "B")))
    assert concurrent == history(sequential)
    assert concurrent["files"] == {"/a": b"A", "/b": b"B"}
    assert_consistent(pl)
