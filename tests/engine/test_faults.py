"""Fault injection: a full disk, and a datum past its file size limit.

The disk-full cases mount a small tmpfs over the state directory. The test's own
thread enters a private mount namespace for that (nothing is mounted for the rest
of the machine) and returns to its original namespace afterwards, which drops the
tmpfs; they skip where mounting is not permitted. Every case checks what a user
would see: the error line, whole file listings and contents, that no half commit
is visible, that ``fsck`` passes, and that once the fault is gone the state
reaches exactly what an undisturbed run produces.

Two writers on one state are in ``test_faults_writers.py``, bad arguments in
``test_faults_arguments.py``.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Pachlocal, job_rows
from .faults_support import At, Write, assert_consistent, leftovers, one_line_error, pipeline_spec

MiB = 1 << 20


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
