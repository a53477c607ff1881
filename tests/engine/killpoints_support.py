"""Running ``pachlocal`` for the kill-point tests (``test_killpoints.py``), and reading
back what a user can see of its state.

Two ways to run a command, both reporting the kill points it passed: ``ForkServer``
forks each command from a server that has already imported pachlocal's dependencies
(each child imports pachlocal itself afresh, so it reads ``PACHLOCAL_KILL_AT`` as
``python -m pachlocal.cli`` does, and is killed as a process); ``real_cli`` runs
``python -m pachlocal.cli`` itself. ``read_state`` and ``fsck_clean`` read the state
directory without writing to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pachlocal.store import Store, fsck_report

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- running pachlocal --------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished ``pachlocal`` process: exit status (``-9`` when killed), its output and
    the kill points it passed (with ``kill_at='count'``)."""

    status: int
    out: str
    err: str
    passed: list[str]


Pachlocal = Callable[..., Run]  # (home, *argv, kill_at=None) -> Run

SERVER = r"""
import json, os, sys, traceback
sys.path.insert(0, sys.argv[1])
import pachlocal.cli  # load everything once, then forget pachlocal.store and every module
# that refers to it, so that each child imports them afresh (reading PACHLOCAL_KILL_AT)
stale = {n for n in sys.modules if n == "pachlocal.store" or n.startswith("pachlocal.store.")}
while True:
    more = {
        name
        for name, mod in list(sys.modules.items())
        if name.startswith("pachlocal.") and name not in stale
        and any(getattr(v, "__name__", None) in stale or getattr(v, "__module__", None) in stale
                for v in vars(mod).values())
    }
    if not more:
        break
    stale |= more
for name in stale:
    del sys.modules[name]
    parent, _, attr = name.rpartition(".")
    if parent in sys.modules and hasattr(sys.modules[parent], attr):
        delattr(sys.modules[parent], attr)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(req["cwd"])
            os.environ.update(req["env"])
            for fd, path in ((0, os.devnull), (1, req["out"]), (2, req["err"])):
                os.dup2(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC), fd)
            from pachlocal import store
            from pachlocal.cli import main
            rc = main(req["argv"])
            sys.stdout.flush()
            with open(req["passed"], "w") as f:
                json.dump(store.killpoints_passed(), f)
        except BaseException:
            traceback.print_exc()
            rc = 70
        sys.stderr.flush()
        os._exit(rc)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class ForkServer:
    """Runs each ``pachlocal`` command in a fresh child forked from one server process."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PACHLOCAL_KILL_AT"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(REPO_ROOT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def __call__(self, home: Path, *argv: str, kill_at: int | str | None = None) -> Run:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        files = {k: self.scratch / k for k in ("out", "err", "passed")}
        files["passed"].unlink(missing_ok=True)
        env = {"PACHLOCAL_HOME": str(home)}
        if kill_at is not None:
            env["PACHLOCAL_KILL_AT"] = str(kill_at)
        req = {"argv": list(argv), "cwd": str(home.parent), "env": env}
        req.update({k: str(v) for k, v in files.items()})
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        status = int(self.proc.stdout.readline())
        passed = files["passed"]
        return Run(
            status,
            files["out"].read_text(),
            files["err"].read_text(),
            json.loads(passed.read_text()) if passed.exists() else [],
        )

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def real_cli(home: Path, *argv: str, kill_at: int | str | None = None) -> Run:
    """``python -m pachlocal.cli``, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "PACHLOCAL_KILL_AT"}
    env["PACHLOCAL_HOME"] = str(home)
    if kill_at is not None:
        env["PACHLOCAL_KILL_AT"] = str(kill_at)
    res = subprocess.run(
        [sys.executable, "-m", "pachlocal.cli", *argv],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    passed = []
    for line in res.stderr.splitlines():  # 'pachlocal: N kill point(s): a b c'
        if " kill point(s):" in line:
            passed = line.partition(" kill point(s):")[2].split()
    return Run(res.returncode, res.stdout, res.stderr, passed)


def ok(run: Run) -> Run:
    assert run.status == 0, run.err
    return run


# -- reading the state ---------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """What a user can read: every finished commit's files (path -> SHA-256 of the bytes
    read back from the object store), the open commits, branch heads and job states."""

    commits: dict[tuple[str, str], dict[str, str]]
    open: dict[str, dict[str, str]]  # repo@id -> its files, staged ones included
    heads: dict[tuple[str, str], str | None]
    jobs: dict[tuple[str, str], str]

    def files(self, repo: str, branch: str = "master") -> dict[str, str]:
        head = self.heads.get((repo, branch))
        return self.commits[(repo, head)] if head else {}

    def view(self) -> dict[str, str]:
        """in@master as its next commit will hold it: the open commit's files, if any."""
        opened = [files for ref, files in self.open.items() if ref.startswith("in@")]
        return opened[0] if opened else self.files("in")


def read_state(home: Path) -> State:
    store = Store(home, readonly=True)
    try:
        digests: dict[str, str] = {}

        def sha(digest: str) -> str:
            if digest not in digests:
                digests[digest] = hashlib.sha256(store.objects.read(digest)).hexdigest()
            return digests[digest]

        commits, open_ = {}, {}
        for c in store.list_commits():
            files = {p: sha(e.hash) for p, e in store.manifest(c).items()}
            if c.finished is None:
                open_[f"{c.repo}@{c.id}"] = files
            else:
                commits[(c.repo, c.id)] = files
        heads = {
            (r["repo"], r["name"]): r["head"]
            for r in store.db.execute("SELECT repo, name, head FROM branches")
        }
        jobs = {
            (r["pipeline"], r["id"]): r["state"]
            for r in store.db.execute("SELECT pipeline, id, state FROM jobs")
        }
        return State(commits, open_, heads, jobs)
    finally:
        store.close()


def fsck_clean(home: Path) -> list[str]:
    """The problems ``pachlocal fsck`` reports, and no scratch files left behind."""
    store = Store(home, readonly=True)
    try:
        problems = fsck_report(store).problems
    finally:
        store.close()
    scratch = [
        str(p)
        for d in ("tmp", "work")
        if (home / d).exists()
        for p in (home / d).rglob("*")
        if p.is_file()
    ]
    return problems + [f"left behind: {p}" for p in scratch]
