"""Fault injection: a full disk, a second writer on the same state, bad arguments.

The disk-full cases mount a small tmpfs over the state directory. The test's own
thread enters a private mount namespace for that (nothing is mounted for the rest
of the machine) and returns to its original namespace afterwards, which drops the
tmpfs; they skip where mounting is not permitted. Every case checks what a user
would see: the error line, whole file listings and contents, that no half commit
is visible, that ``fsck`` passes, and that once the fault is gone the state
reaches exactly what an undisturbed run produces.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pachlocal.cli import main

from .conftest import Pachlocal, Result

Write = Callable[[str, str | bytes], Path]

REPO_ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20


# -- helpers ------------------------------------------------------------------------------


class At(Pachlocal):
    """``pachlocal`` in-process against another state directory (say, a reference run)."""

    def __call__(self, *args: str, ok: bool = True) -> Result:
        old = os.environ.get("PACHLOCAL_HOME")
        os.environ["PACHLOCAL_HOME"] = str(self.home)
        try:
            return super().__call__(*args, ok=ok)
        finally:
            if old is None:
                del os.environ["PACHLOCAL_HOME"]
            else:
                os.environ["PACHLOCAL_HOME"] = old


def one_line_error(res: Result, *fragments: str) -> str:
    """The command failed with exactly one ``pachlocal: ...`` line naming every fragment."""
    assert res.rc == 1, (res.rc, res.err)
    assert "Traceback" not in res.err
    lines = res.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pachlocal: "), res.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def leftovers(home: Path) -> list[str]:
    """Scratch and upload staging left in the state directory (none after any command)."""
    return sorted(
        str(p.relative_to(home))
        for d in ("tmp", "work")
        if (home / d).exists()
        for p in (home / d).rglob("*")
        if not p.is_dir()
    )


def assert_consistent(p: Pachlocal) -> None:
    """No open or half commit visible, ``fsck`` clean, no scratch left behind."""
    commits = p("list", "commit", "--raw").json()
    assert [c["commit"]["id"] for c in commits if not c["finished"]] == []
    res = p("fsck", ok=False)
    assert (res.rc, res.out) == (0, ""), res.err
    assert leftovers(p.home) == []


def job_rows(p: Pachlocal, pipeline: str) -> list[dict[str, Any]]:
    return p("list", "job", "-p", pipeline, "--raw").json()  # type: ignore[no-any-return]


def pipeline_spec(name: str, script: str, glob: str = "/*", **env: str) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "transform": {"cmd": ["sh", "-c", script], "env": env},
        "input": {"pfs": {"repo": "in", "glob": glob}},
    }


# -- a small filesystem under the state directory ---------------------------------------------

CLONE_NEWNS = 0x00020000
MS_REMOUNT = 0x20
MS_REC = 0x4000
MS_PRIVATE = 0x40000


class SmallDisk:
    """A tmpfs of a few MiB mounted over ``path`` in a private mount namespace of this thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.libc = ctypes.CDLL(None, use_errno=True)
        self._home_ns: int | None = None
        self._cwd = os.getcwd()

    def _mount(
        self, src: str | None, target: Path | str, fstype: str | None, flags: int, data: str
    ) -> None:
        rc = self.libc.mount(
            src.encode() if src else None,
            str(target).encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        )
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {target}: {os.strerror(err)}")

    def mount(self, size: int) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        ns = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY)
        if self.libc.unshare(CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            os.close(ns)
            raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
        self._home_ns = ns
        self._mount(None, "/", None, MS_REC | MS_PRIVATE, "")  # nothing propagates out
        self._mount("tmpfs", self.path, "tmpfs", 0, f"size={size}")

    def resize(self, size: int) -> None:
        """More room, as when space is freed or a quota raised."""
        self._mount(None, self.path, None, MS_REMOUNT, f"size={size}")

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def close(self) -> None:
        if self._home_ns is None:
            return
        if self.libc.setns(self._home_ns, CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns back to the original mount namespace: {os.strerror(err)}")
        os.close(self._home_ns)
        self._home_ns = None
        os.chdir(self._cwd)


@pytest.fixture
def small_disk(pl: Pachlocal) -> Iterator[SmallDisk]:
    """A 4 MiB state directory; ``resize`` it to give space back."""
    disk = SmallDisk(pl.home)
    try:
        disk.mount(4 * MiB)
    except OSError as exc:
        disk.close()
        pytest.skip(f"cannot mount a tmpfs in a private mount namespace here: {exc}")
    try:
        yield disk
    finally:
        disk.close()


# -- 1. a full disk -----------------------------------------------------------------------------

SIZED = "yes $(basename $in) | head -c $(cat $in) > /pfs/out/$(basename $in)"


def test_datum_writing_past_a_full_disk_fails_its_job_and_reruns_clean(
    pl: Pachlocal, small_disk: SmallDisk, tmp_path: Path, write: Write, capsys: Any
) -> None:
    """User code hits ENOSPC: the job fails naming the datum, nothing of it is visible."""
    sizes = {"a": 64 * 1024, "b": 6 * MiB}  # /b's output cannot fit in 4 MiB
    spec = pl.spec(tmp_path, pipeline_spec("sized", SIZED))

    def steps(p: Pachlocal) -> None:
        p("create", "repo", "in")
        for name, size in sizes.items():
            p("put", "file", f"in@master:/{name}", "-f", str(write(name, str(size))))
        p("create", "pipeline", "-f", spec)

    steps(pl)
    (job,) = job_rows(pl, "sized")
    assert job["state"] == "failure"
    datums = {
        d["inputs"][0]["path"]: d for d in pl("list", "datum", f"sized@{job['id']}", "--raw").json()
    }
    assert {p: (d["state"], d["attempts"]) for p, d in datums.items()} == {
        "/a": ("success", 1),
        "/b": ("failed", 3),
    }
    assert job["reason"] == (
        f"1 datum(s) failed; first: datum {datums['/b']['datum']}: command exited with code 1"
    )
    logs = pl("logs", "-p", "sized", "--datum", datums["/b"]["datum"]).out
    assert "No space left on device" in logs
    # the failed job's commit carries the error and no files: /a's output is not visible either
    head = pl("inspect", "commit", "sized@master", "--raw").json()
    assert (head["commit"]["id"], head["error"]) == (job["id"], job["reason"])
    assert pl.files("sized@master") == {}
    assert_consistent(pl)

    small_disk.resize(64 * MiB)
    pl("update", "pipeline", "-f", spec)
    assert [j["state"] for j in job_rows(pl, "sized")] == ["success", "failure"]
    reference = At(tmp_path / "reference", capsys)
    steps(reference)
    expected = {f"/{n}": (n.encode() + b"\n") * (s // 2) for n, s in sizes.items()}
    assert pl.files("sized@master") == reference.files("sized@master") == expected
    assert_consistent(pl)


def test_full_disk_while_storing_an_output_fails_the_datum_not_silently(
    pl: Pachlocal, small_disk: SmallDisk, tmp_path: Path, write: Write, capsys: Any
) -> None:
    """The engine's own copy of an output (a symlink to another output file becomes a
    copy of it) hits ENOSPC.

    Before the fix the datum counted as a success with its outputs missing, and the
    job committed an empty output. (A symlink to an input stores the input by
    reference, as pachd does: no copy, so it cannot hit a full disk.)
    """
    size = 2_200_000  # written once by the datum; its copy does not fit beside it
    script = (
        f"yes abc | head -c {size} > /pfs/out/big && ln -s big /pfs/out/big-copy "
        "&& echo small > /pfs/out/small"
    )
    spec = pl.spec(tmp_path, pipeline_spec("linked", script, glob="/"))

    def steps(p: Pachlocal) -> None:
        p("create", "repo", "in")
        p("put", "file", "in@master:/seed", "-f", str(write("seed", "1")))
        p("create", "pipeline", "-f", spec)

    steps(pl)
    (job,) = job_rows(pl, "linked")
    (datum,) = pl("list", "datum", f"linked@{job['id']}", "--raw").json()
    assert (job["state"], datum["state"]) == ("failure", "failed")
    assert datum["reason"] == (
        "engine error preparing or collecting the datum: "
        "[Errno 28] cannot store output /big-copy: No space left on device"
    )
    assert job["reason"].endswith(datum["reason"])
    assert pl.files("linked@master") == {}
    assert pl.files("in@master") == {"/seed": b"1"}
    assert_consistent(pl)

    small_disk.resize(16 * MiB)
    pl("update", "pipeline", "-f", spec)
    assert job_rows(pl, "linked")[0]["state"] == "success"
    reference = At(tmp_path / "reference", capsys)
    steps(reference)
    big = (b"abc\n" * size)[:size]
    expected = {"/big": big, "/big-copy": big, "/small": b"small\n"}
    assert pl.files("linked@master") == reference.files("linked@master") == expected
    assert_consistent(pl)


FILLING = (
    'echo "result-$(cat $in)" > /pfs/out/$(basename $in); '
    # another process fills the disk while the job runs (once): the engine then cannot
    # write the output commit's manifest. The datum cannot reach the state directory
    # itself, so it asks a filler outside (started by the test) and waits for it.
    'if [ -e "$FILL_ONCE" ]; then rm "$FILL_ONCE"; touch "$FILL_NOW"; '
    'while [ ! -e "$FILLED" ]; do sleep 0.01; done; fi; '
    "exit 0"
)


def test_full_disk_at_commit_time_leaves_the_job_queued_and_nothing_half_done(
    pl: Pachlocal, small_disk: SmallDisk, tmp_path: Path, write: Write, capsys: Any
) -> None:
    once, filler = tmp_path / "fill-once", pl.home / "filler"
    now, filled = tmp_path / "fill-now", tmp_path / "filled"
    spec = pl.spec(
        tmp_path,
        pipeline_spec(
            "filled", FILLING, FILL_ONCE=str(once), FILL_NOW=str(now), FILLED=str(filled)
        ),
    )

    def steps(p: Pachlocal) -> None:
        p("create", "repo", "in")
        p("create", "pipeline", "-f", spec)
        p("put", "file", "in@master:/a", "-f", str(write("a", "A")))

    steps(pl)  # /a goes through; the disk fills during /b's job
    before = pl("list", "commit", "filled", "--raw").json()
    once.touch()
    # started from this thread, the filler sees the small disk mounted over the state
    fill = (
        f'while [ ! -e "{now}" ]; do sleep 0.01; done; cat /dev/zero > "{filler}"; touch "{filled}"'
    )
    filling = subprocess.Popen(["sh", "-c", fill], stderr=subprocess.DEVNULL)
    res = pl("put", "file", "in@master:/b", "-f", str(write("b", "B")), ok=False)
    filling.wait(timeout=30)
    set_id = pl("inspect", "commit", "in@master", "--raw").json()["commit"]["id"]
    line = one_line_error(
        res,
        f"job filled@{set_id} stopped, nothing of it was committed: ",
        "it runs again from scratch on the next write",
    )
    # whichever write comes first once the datum's scratch space is freed: the manifest
    # object or the database
    assert (
        f"cannot write to the object store {pl.home / 'objects'}: No space left on device" in line
        or f"{pl.home / 'meta.db'}: database or disk is full" in line
    ), line
    assert filler.stat().st_size > 3 * MiB and not once.exists()
    # the user commit landed; the job's output did not, not even partly
    assert pl.files("in@master") == {"/a": b"A", "/b": b"B"}
    assert pl("list", "commit", "filled", "--raw").json() == before
    assert pl.files("filled@master") == {"/a": b"result-A\n"}
    latest = job_rows(pl, "filled")[0]
    assert (latest["id"], latest["state"]) in (
        (set_id, "created"),
        (set_id, "running"),  # even re-queueing it may not fit: the next writer does it
    )
    assert leftovers(pl.home) == []

    filler.unlink()  # space is freed
    assert_consistent(pl)  # fsck (a writer) re-queues the job ...
    assert job_rows(pl, "filled")[0]["state"] == "created"
    pl("run")  # ... and the next run finishes it
    assert [j["state"] for j in job_rows(pl, "filled")] == ["success"] * 3
    reference = At(tmp_path / "reference", capsys)
    steps(reference)
    reference("put", "file", "in@master:/b", "-f", str(write("b", "B")))
    expected = {"/a": b"result-A\n", "/b": b"result-B\n"}
    assert pl.files("filled@master") == reference.files("filled@master") == expected
    assert_consistent(pl)


def test_put_file_larger_than_the_disk_is_refused_without_a_trace(
    pl: Pachlocal, small_disk: SmallDisk, write: Write
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "kept")))
    commits = pl("list", "commit", "in", "--raw").json()
    big = os.urandom(5 * MiB)
    res = pl("put", "file", "in@master:/big", "-f", str(write("big", big)), ok=False)
    one_line_error(
        res,
        "put file /big: cannot write to the object store "
        f"{pl.home / 'objects'}: No space left on device; nothing was committed",
    )
    assert pl("list", "commit", "in", "--raw").json() == commits
    assert pl.files("in@master") == {"/a": b"kept"}
    assert small_disk.free() > 3 * MiB  # the partial upload was removed
    assert_consistent(pl)

    small_disk.resize(16 * MiB)
    pl("put", "file", "in@master:/big", "-f", str(write("big", big)))
    assert pl.files("in@master") == {"/a": b"kept", "/big": big}
    assert_consistent(pl)


def test_datum_past_its_file_size_limit_fails_readably_then_succeeds_when_lifted(
    pl: Pachlocal, tmp_path: Path, write: Write, capsys: Any
) -> None:
    """RLIMIT_FSIZE on the datum's own process: needs no privileges, runs everywhere."""
    limit = tmp_path / "limit-blocks"
    script = "ulimit -f $(cat $LIMIT); exec head -c $(cat $in) /dev/zero > /pfs/out/$(basename $in)"
    spec = pl.spec(tmp_path, pipeline_spec("capped", script, LIMIT=str(limit)))

    def steps(p: Pachlocal) -> None:
        p("create", "repo", "in")
        p("put", "file", "in@master:/small", "-f", str(write("small", "1000")))
        p("put", "file", "in@master:/large", "-f", str(write("large", "300000")))
        p("create", "pipeline", "-f", spec)

    limit.write_text("64")  # 64 blocks of 512 bytes: /large cannot be written
    steps(pl)
    (job,) = job_rows(pl, "capped")
    datums = {
        d["inputs"][0]["path"]: d
        for d in pl("list", "datum", f"capped@{job['id']}", "--raw").json()
    }
    assert datums["/large"]["reason"] == "command was killed by SIGXFSZ"
    assert (job["state"], datums["/small"]["state"], datums["/large"]["state"]) == (
        "failure",
        "success",
        "failed",
    )
    assert pl.files("capped@master") == {}
    assert_consistent(pl)

    limit.write_text("unlimited")
    pl("update", "pipeline", "-f", spec)
    reference = At(tmp_path / "reference", capsys)
    steps(reference)
    expected = {"/small": bytes(1000), "/large": bytes(300000)}
    assert pl.files("capped@master") == reference.files("capped@master") == expected
    assert_consistent(pl)


# -- 2. two writers on one state directory ----------------------------------------------------


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


# -- 3. bad arguments ------------------------------------------------------------------------------


SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds"},
    "data": {"token": "c2VjcmV0"},
}
GOOD_SPEC = pipeline_spec("copy", "cp $in /pfs/out/")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state with repo ``in`` (one file), pipeline ``copy`` and secret ``creds``."""
    tmp = tmp_path_factory.mktemp("template")
    (tmp / "a").write_text("x")
    (tmp / "copy.json").write_text(json.dumps(GOOD_SPEC))
    (tmp / "creds.json").write_text(json.dumps(SECRET))
    old = os.environ.get("PACHLOCAL_HOME")
    os.environ["PACHLOCAL_HOME"] = str(tmp / "state")
    try:
        for args in (
            ["create", "repo", "in"],
            ["put", "file", "in@master:/a", "-f", str(tmp / "a")],
            ["-q", "create", "pipeline", "-f", str(tmp / "copy.json")],
            ["create", "secret", "-f", str(tmp / "creds.json")],
        ):
            assert main(args) == 0, args
    finally:
        if old is None:
            del os.environ["PACHLOCAL_HOME"]
        else:
            os.environ["PACHLOCAL_HOME"] = old
    return tmp / "state"


def snapshot(p: Pachlocal) -> dict[str, Any]:
    """Everything a failed command must leave as it was."""
    repos = p("list", "repo", "--raw").json()
    return {
        "repos": repos,
        "branches": {r["name"]: p("list", "branch", r["name"], "--raw").json() for r in repos},
        "commits": p("list", "commit", "--raw").json(),
        "pipelines": p("list", "pipeline", "--raw").json(),
        "jobs": p("list", "job", "--raw").json(),
        "secrets": p("list", "secret", "--raw").json(),
        "files": {
            str(f.relative_to(p.home)): f.read_bytes()
            for d in ("objects", "secrets", "logs")
            for f in sorted((p.home / d).rglob("*"))
            if f.is_file()
        },
    }


def spec_with(**changes: Any) -> str:
    spec = json.loads(json.dumps(GOOD_SPEC))
    spec["pipeline"]["name"] = "fresh"
    for path, value in changes.items():
        node = spec
        *parents, last = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            del node[last]
        else:
            node[last] = value
    return json.dumps(spec)


def secret_with(**changes: Any) -> str:
    doc = {**SECRET, "metadata": {"name": "fresh"}, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not None})


# (arguments, files to write first, fragments the error line must contain); FILE is the
# written file's path, DATA a local data file
CASES: dict[str, tuple[list[str], str | bytes | None, list[str]]] = {
    # unknown repo
    "put-unknown-repo": (
        ["put", "file", "nope@master:/x", "-f", "DATA"],
        None,
        ["repo nope not found"],
    ),
    "get-unknown-repo": (["get", "file", "nope@master:/a"], None, ["repo nope not found"]),
    "list-file-unknown-repo": (["list", "file", "nope@master"], None, ["repo nope not found"]),
    "list-branch-unknown-repo": (["list", "branch", "nope"], None, ["repo nope not found"]),
    "delete-unknown-repo": (["delete", "repo", "nope"], None, ["repo nope not found"]),
    "start-commit-unknown-repo": (
        ["start", "commit", "nope@master"],
        None,
        ["repo nope not found"],
    ),
    "delete-file-unknown-repo": (
        ["delete", "file", "nope@master:/a"],
        None,
        ["repo nope not found"],
    ),
    "spec-input-unknown-repo": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(input={"pfs": {"repo": "nope", "glob": "/*"}}),
        ["pipeline fresh: input repo nope not found"],
    ),
    # unknown branch
    "get-unknown-branch": (["get", "file", "in@dev:/a"], None, ["in@dev: no branch or commit"]),
    "list-file-unknown-branch": (["list", "file", "in@dev"], None, ["in@dev: no branch or commit"]),
    "glob-unknown-branch": (["glob", "file", "in@dev:/*"], None, ["in@dev: no branch or commit"]),
    "delete-file-unknown-branch": (
        ["delete", "file", "in@dev:/a"],
        None,
        ["in@dev: no branch or commit"],
    ),
    "finish-unknown-branch": (["finish", "commit", "in@dev"], None, ["commit in@dev not found"]),
    "diff-unknown-branch": (["diff", "file", "in@dev:/a"], None, ["in@dev: no branch or commit"]),
    # bad commit references
    "ref-nonexistent": (
        ["inspect", "commit", "in@nonexistent"],
        None,
        ["in@nonexistent: no branch or commit with that name"],
    ),
    "ref-unknown-id": (
        ["inspect", "commit", "in@" + "0" * 32],
        None,
        [f"commit in@{'0' * 32} not found"],
    ),
    "ref-empty-branch": (["inspect", "commit", "in@"], None, ["bad commit reference 'in@'"]),
    "ref-empty-repo": (["inspect", "commit", "@x"], None, ["bad commit reference '@x'"]),
    "ref-at-only": (["list", "commit", "@"], None, ["bad commit reference '@'"]),
    "ref-empty": (["inspect", "commit", ""], None, ["bad commit reference ''"]),
    "ref-bad-ancestry": (["inspect", "commit", "in@master~x"], None, ["bad commit reference"]),
    "ref-past-root": (["inspect", "commit", "in@master^^"], None, ["has no parent"]),
    "ref-garbage": (["inspect", "commit", "in@@#!~"], None, ["bad commit reference 'in@@#!~'"]),
    "file-ref-empty-branch": (["get", "file", "in@:/a"], None, ["bad file reference 'in@:/a'"]),
    "file-ref-empty-repo": (["list", "file", "@x:/"], None, ["bad file reference '@x:/'"]),
    "glob-ref-empty-branch": (["glob", "file", "in@:/*"], None, ["bad commit reference 'in@'"]),
    "wait-garbage": (["wait", "commit", "garbage"], None, ["commit set garbage not found"]),
    # pipeline specs
    "spec-not-json": (
        ["create", "pipeline", "-f", "FILE"],
        '{"pipeline": {"name": "fresh"},',
        ["FILE: invalid JSON"],
    ),
    "spec-not-yaml": (["create", "pipeline", "-f", "FILE"], "pipeline: [", ["FILE: invalid YAML"]),
    "spec-binary": (
        ["create", "pipeline", "-f", "FILE"],
        b"\xff\xfe\x00",
        ["cannot read FILE: not UTF-8 text"],
    ),
    "spec-empty": (["create", "pipeline", "-f", "FILE"], "", ["FILE: no pipeline spec"]),
    "spec-scalar": (["create", "pipeline", "-f", "FILE"], "42", ["expected a pipeline spec"]),
    "spec-unknown-key": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(datumTriez=3),
        ["datumTriez: unknown field"],
    ),
    "spec-unknown-nested-key": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(input__pfs__globb="/*"),
        ["input.pfs.globb: unknown field"],
    ),
    "spec-wrong-type": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(datumTries="three"),
        ["datumTries: expected an integer"],
    ),
    "spec-wrong-nested-type": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(transform__cmd="cp a b"),
        ["transform.cmd: expected a list"],
    ),
    "spec-missing-cmd": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(transform__cmd=None),
        ["transform.cmd: required"],
    ),
    "spec-missing-name": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(pipeline__name=None),
        ["pipeline.name: required"],
    ),
    "spec-missing-glob": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(input__pfs__glob=None),
        ["input.pfs.glob: required"],
    ),
    "spec-unknown-secret": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(transform__secrets=[{"name": "absent", "key": "k", "envVar": "K"}]),
        ["secret absent not found"],
    ),
    "spec-secret-key-missing": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(transform__secrets=[{"name": "creds", "key": "nokey", "envVar": "K"}]),
        ["secret creds has no key 'nokey'"],
    ),
    "spec-existing-pipeline": (
        ["create", "pipeline", "-f", "FILE"],
        json.dumps(GOOD_SPEC),
        ["pipeline copy already exists"],
    ),
    "spec-missing-file": (
        ["create", "pipeline", "-f", "/nonexistent/x.json"],
        None,
        ["cannot read"],
    ),
    # secrets
    "secret-not-json": (["create", "secret", "-f", "FILE"], "{bad", ["FILE: not valid JSON"]),
    "secret-binary": (
        ["create", "secret", "-f", "FILE"],
        b"\xff\xfe",
        ["cannot read FILE: not UTF-8 text"],
    ),
    "secret-not-object": (["create", "secret", "-f", "FILE"], "[]", ["must be a JSON object"]),
    "secret-no-data": (
        ["create", "secret", "-f", "FILE"],
        secret_with(data=None),
        ["secret fresh has no data or stringData"],
    ),
    "secret-not-base64": (
        ["create", "secret", "-f", "FILE"],
        secret_with(data={"token": "not base64!"}),
        ["data.token: value is not valid base64"],
    ),
    "secret-data-not-map": (
        ["create", "secret", "-f", "FILE"],
        secret_with(data=["token"]),
        ["data: expected an object"],
    ),
    "secret-wrong-kind": (
        ["create", "secret", "-f", "FILE"],
        secret_with(kind="ConfigMap"),
        ["kind: expected 'Secret', got 'ConfigMap'"],
    ),
    "secret-bad-name": (
        ["create", "secret", "-f", "FILE"],
        secret_with(metadata={"name": "Not_DNS"}),
        ["metadata.name"],
    ),
    "secret-unknown-field": (
        ["create", "secret", "-f", "FILE"],
        secret_with(dataa={}),
        ["dataa: unknown field"],
    ),
    "secret-exists": (
        ["create", "secret", "-f", "FILE"],
        json.dumps({**SECRET, "data": {"token": "b3RoZXI="}}),
        ["secret creds already exists"],
    ),
    "secret-missing-file": (
        ["create", "secret", "-f", "/nonexistent/s.json"],
        None,
        ["cannot read"],
    ),
    "delete-unknown-secret": (["delete", "secret", "nope"], None, ["secret nope not found"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_fail_in_one_line_and_change_nothing(
    pl: Pachlocal, template: Path, tmp_path: Path, case: str
) -> None:
    args, content, fragments = CASES[case]
    shutil.copytree(template, pl.home)
    path = tmp_path / "input.json"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "data").write_text("data")
    args = [
        str(path) if a == "FILE" else str(tmp_path / "data") if a == "DATA" else a for a in args
    ]
    before = snapshot(pl)
    res = pl(*args, ok=False)
    one_line_error(res, *(f.replace("FILE", str(path)) for f in fragments))
    assert res.out == ""
    assert snapshot(pl) == before
    assert leftovers(pl.home) == []


def test_bad_glob_in_a_spec_fails_the_job_readably_and_an_update_recovers(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    """pachd accepts any glob string at creation; the job then fails naming it."""
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    bad = pipeline_spec("globbed", "cp $in /pfs/out/", glob="/[a")
    res = pl("create", "pipeline", "-f", pl.spec(tmp_path, bad))
    (job,) = job_rows(pl, "globbed")
    reason = "cannot form datums: input 'in': invalid glob '/[a': unexpected end of input"
    assert (job["state"], job["reason"], job["total"]) == ("failure", reason, 0)
    assert "Traceback" not in res.err and reason in res.err
    assert pl("inspect", "commit", "globbed@master", "--raw").json()["error"] == reason
    assert pl.files("globbed@master") == {}
    pl(
        "update",
        "pipeline",
        "-f",
        pl.spec(tmp_path, pipeline_spec("globbed", bad["transform"]["cmd"][2])),
    )
    assert pl.files("globbed@master") == {"/a": b"x"}
    assert_consistent(pl)
