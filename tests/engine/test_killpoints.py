"""Crash injection: SIGKILL ``pachlocal`` at every durable step of a write, then recover.

Every durable step of the store (an object written or renamed, a manifest written, a
transaction committed, a file staged, a datum output adopted) calls
``pachlocal.store.killpoint``; with ``PACHLOCAL_KILL_AT=n`` the process sends itself
SIGKILL at the n-th one, and with ``count`` it lists them. For each scenario (one
``put file``, a multi-file ``put file``, a ``delete file``, a ``put file`` into a commit
opened by ``start commit``, and that commit's ``finish commit``; each also runs the
``cp`` job it queues) and each seed (which draws the file contents), a reference run
counts the points, then the command is killed at every point n = 1..N on a copy of the
starting state, the next writer (a further ``put file``) recovers, and:

(a) the killed write is whole or absent, at the branch head right after the kill and
    after recovery, and the next ``put file`` is visible in a finished commit;
(b) every file of every commit that existed before has the same bytes (SHA-256);
(c) ``fsck`` finds nothing;
(d) every job succeeded, and the killed change's job output equals the reference run's.

A full sweep forks each command from a server that has already imported pachlocal's
dependencies (each child imports pachlocal itself afresh, so it reads
``PACHLOCAL_KILL_AT`` as ``python -m pachlocal.cli`` does, and is killed as a process):
a command then costs about 0.1 s instead of about 0.9 s of interpreter start. The fast
tier checks that ``python -m pachlocal.cli`` passes the same kill points and kills it
for real at one point of two scenarios.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pachlocal.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
SIGKILLED = -signal.SIGKILL

CP_SPEC = {
    "pipeline": {"name": "cp"},
    "description": "Copies its input: one datum per top-level path.",
    "transform": {"cmd": ["sh", "-c", "cp -r /pfs/in/. /pfs/out/"]},
    "input": {"pfs": {"repo": "in", "glob": "/*"}},
}


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
stale = {"pachlocal.store"}
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
    delattr(pachlocal, name.rpartition(".")[2])
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
        problems = store.fsck_report().problems
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


# -- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Commands on top of the base state, then the one command killed at every point."""

    name: str
    prepare: tuple[tuple[str, ...], ...]
    killed: tuple[str, ...]


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("put-one", (), ("put", "file", "in@master:/new", "-f", "DATA/new")),
        Scenario("put-many", (), ("put", "file", "in@master:/", "-f", "DATA/many", "-r")),
        Scenario("delete", (), ("delete", "file", "in@master:/k1")),
        Scenario(
            "put-open",
            (("start", "commit", "in@master"),),
            ("put", "file", "in@master:/new", "-f", "DATA/new"),
        ),
        Scenario(
            "finish",
            (
                ("start", "commit", "in@master"),
                ("put", "file", "in@master:/new", "-f", "DATA/new"),
                ("delete", "file", "in@master:/k1"),
            ),
            ("finish", "commit", "in@master"),
        ),
    )
}


def write_data(data: Path, seed: int) -> None:
    """Seeded contents: base files, a new file, a directory of several (one of them
    overwriting a base file, one sharing another's bytes) and the file put after a kill."""
    rng = random.Random(seed)

    def blob() -> bytes:
        return rng.randbytes(rng.randint(0, 3000))

    base = [blob() for _ in range(3)]
    for i, content in enumerate(base):
        (data / "base").mkdir(parents=True, exist_ok=True)
        (data / "base" / f"k{i}").write_bytes(content)
    (data / "new").write_bytes(blob())
    many = data / "many"
    many.mkdir()
    (many / "k0").write_bytes(blob())  # a changed datum
    for i in range(rng.randint(2, 3)):
        (many / f"m{i}").write_bytes(blob())
    (many / "same").write_bytes(base[2])  # deduplicated against a stored object
    (data / "after").write_bytes(f"after {seed}\n".encode())


def build(run: Pachlocal, home: Path, data: Path, scenario: Scenario) -> None:
    spec = home.parent / "cp.pipeline.json"
    spec.write_text(json.dumps(CP_SPEC))
    ok(run(home, "create", "repo", "in"))
    ok(run(home, "create", "pipeline", "-f", str(spec)))
    ok(run(home, "put", "file", "in@master:/", "-f", str(data / "base"), "-r"))
    for argv in scenario.prepare:
        ok(run(home, *resolve(argv, data)))


def resolve(argv: tuple[str, ...], data: Path) -> tuple[str, ...]:
    return tuple(a.replace("DATA", str(data)) if a.startswith("DATA") else a for a in argv)


def recover(run: Pachlocal, home: Path, data: Path) -> None:
    """The next writer: a further ``put file``; a commit still open (an explicit one,
    never an implicit one) is then finished, as its user would."""
    ok(run(home, "put", "file", "in@master:/after", "-f", str(data / "after")))
    if read_state(home).open:
        ok(run(home, "finish", "commit", "in@master"))


@dataclass(frozen=True)
class Outcome:
    """A run to compare with: the state after the command (or without it) and recovery."""

    final: State
    change: dict[str, str] | None  # in@master right after the command
    output: dict[str, str] | None  # the cp output of the command's commit set


@dataclass(frozen=True)
class Reference:
    """The starting state, the kill points of the command, and both possible outcomes."""

    template: Path
    data: Path
    start: State
    points: list[str]
    done: Outcome  # the command ran
    skipped: Outcome  # the command never ran


def reference(run: Pachlocal, root: Path, scenario: Scenario, seed: int) -> Reference:
    data = root / "data"
    data.mkdir(parents=True)
    write_data(data, seed)
    template = root / "template" / "state"
    template.parent.mkdir()
    build(run, template, data, scenario)
    start = read_state(template)
    killed = resolve(scenario.killed, data)

    done = copy_state(template, root / "done")
    counted = ok(run(done, *killed, kill_at="count"))
    after = read_state(done)
    set_id = changed_set(start, after)
    change = after.view()
    output = after.files("cp") if set_id is None else after.commits[("cp", set_id)]
    recover(run, done, data)
    skipped = copy_state(template, root / "skipped")
    recover(run, skipped, data)
    return Reference(
        template,
        data,
        start,
        counted.passed,
        Outcome(read_state(done), change, output),
        Outcome(read_state(skipped), None, None),
    )


def copy_state(template: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copytree(template, dest / "state")
    shutil.copy(template.parent / "cp.pipeline.json", dest)
    return dest / "state"


def changed_set(start: State, now: State) -> str | None:
    """The commit set the killed command finished on in@master, or None if none landed
    (a ``put file`` into an open commit lands nothing until ``finish commit``)."""
    head = now.heads[("in", "master")]
    return head if head != start.heads[("in", "master")] else None


# -- the checks ---------------------------------------------------------------------------


def kill_and_recover(run: Pachlocal, ref: Reference, scenario: Scenario, n: int) -> None:
    where = f"{scenario.name}: killed at point {n} ({ref.points[n - 1]})"
    home = copy_state(ref.template, ref.template.parents[1] / f"kill-{n}")
    killed = run(home, *resolve(scenario.killed, ref.data), kill_at=n)
    assert killed.status == SIGKILLED, f"{where}: exit {killed.status}: {killed.err}"

    # right after the kill, before any recovery: the branch (or the open commit) shows
    # the old files or the whole change; the only open commit is the one start commit
    # opened (until its finish lands), never an implicit one
    mid = read_state(home)
    set_id = changed_set(ref.start, mid)
    landed = set_id is not None
    assert mid.view() in (ref.start.view(), ref.done.change), where
    if scenario.name == "finish":
        assert list(mid.open) == ([] if landed else list(ref.start.open)), where
    else:
        assert list(mid.open) == list(ref.start.open), where
        assert landed == (mid.files("in") != ref.start.files("in")), where

    recover(run, home, ref.data)
    final = read_state(home)
    # (a) whole or absent, and the next write is visible in a finished commit
    expected = ref.done if final.files("in") == ref.done.final.files("in") else ref.skipped
    assert final.files("in") == expected.final.files("in"), where
    if landed:
        assert expected is ref.done, where
    assert final.open == {}, where
    after = hashlib.sha256((ref.data / "after").read_bytes()).hexdigest()
    assert final.files("in")["/after"] == after, where
    # (b) no committed byte changed
    for key, files in ref.start.commits.items():
        assert final.commits.get(key) == files, f"{where}: commit {key} changed"
    # (c) fsck clean
    assert fsck_clean(home) == [], where
    # (d) every job succeeded; the output equals the reference run's
    assert set(final.jobs.values()) == {"success"}, f"{where}: {final.jobs}"
    assert final.files("cp") == expected.final.files("cp") == final.files("in"), where
    if set_id is not None:
        assert final.commits[("cp", set_id)] == ref.done.output, where
    shutil.rmtree(home.parent)


def sweep(
    run_factory: Callable[[int], Pachlocal], root: Path, seed: int, names: list[str]
) -> dict[str, list[str]]:
    """Kill every scenario's command at every point, a few at a time (one command runner
    per thread); returns each scenario's kill points."""
    runners: dict[int, Pachlocal] = {}
    lock = threading.Lock()

    def runner() -> Pachlocal:
        with lock:
            key = threading.get_ident()
            if key not in runners:
                runners[key] = run_factory(len(runners))
            return runners[key]

    def build_reference(name: str) -> Reference:
        return reference(runner(), root / name, SCENARIOS[name], seed)

    def kill_point(ref: Reference, name: str, n: int) -> None:
        kill_and_recover(runner(), ref, SCENARIOS[name], n)

    with cf.ThreadPoolExecutor(min(4, (os.cpu_count() or 1) + 1)) as pool:
        refs = dict(zip(names, pool.map(build_reference, names), strict=True))
        futures = [
            pool.submit(kill_point, ref, name, n)
            for name, ref in refs.items()
            for n in range(1, len(ref.points) + 1)
        ]
        for fut in futures:
            fut.result()
    return {name: ref.points for name, ref in refs.items()}


@pytest.fixture(scope="module")
def fork_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[int], Pachlocal]]:
    """The i-th fork server (one per worker thread), shared by the tests of this module."""
    root = tmp_path_factory.mktemp("fork-servers")
    servers: dict[int, ForkServer] = {}

    def server(i: int) -> Pachlocal:
        if i not in servers:
            servers[i] = ForkServer(root / f"server-{i}")
        return servers[i]

    yield server
    for each in servers.values():
        each.close()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_at_every_point_of_a_write_and_its_job(
    fork_servers: Callable[[int], Pachlocal], tmp_path: Path, seed: int
) -> None:
    points = sweep(fork_servers, tmp_path, seed, list(SCENARIOS))
    counts = {name: len(p) for name, p in points.items()}
    assert counts["put-one"] + counts["put-many"] >= 50, counts
    assert min(counts.values()) >= 5, counts
    # every kind of durable step was hit
    kinds = {p for names in points.values() for p in names}
    assert kinds >= {"object.write", "object.rename", "object.renamed", "object.adopt"}, kinds
    assert kinds >= {"manifest.write", "commit.insert", "commit.stage", "commit.finish"}, kinds
    assert kinds >= {"transaction.commit", "transaction.committed"}, kinds


@pytest.mark.integration
@pytest.mark.parametrize("name", ["put-many", "finish"])
def test_kill_a_real_pachlocal_process_then_recover(
    fork_servers: Callable[[int], Pachlocal], tmp_path: Path, name: str
) -> None:
    """``python -m pachlocal.cli`` with ``PACHLOCAL_KILL_AT``: the same kill points as a
    forked child, and killed at one seeded point it leaves a state that recovers."""
    scenario = SCENARIOS[name]
    ref = reference(fork_servers(0), tmp_path, scenario, seed=7)
    counted = real_cli(
        copy_state(ref.template, tmp_path / "count"),
        *resolve(scenario.killed, ref.data),
        kill_at="count",
    )
    assert (counted.status, counted.passed) == (0, ref.points), counted.err
    n = random.Random(name).randint(1, len(ref.points))
    kill_and_recover(real_cli, ref, scenario, n)
