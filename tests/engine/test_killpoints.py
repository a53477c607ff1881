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
for real at one point of two scenarios. Running commands (both ways) and reading the
state back are in ``killpoints_support.py``.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import random
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .killpoints_support import ForkServer, Pachlocal, State, fsck_clean, ok, read_state, real_cli

SIGKILLED = -signal.SIGKILL

CP_SPEC = {
    "pipeline": {"name": "cp"},
    "description": "Copies its input: one datum per top-level path.",
    "transform": {"cmd": ["sh", "-c", "cp -r /pfs/in/. /pfs/out/"]},
    "input": {"pfs": {"repo": "in", "glob": "/*"}},
}


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
