"""Supervising a datum's processes: feeding its stdin and collecting its output until
it exits or times out, killing everything it started (by cgroup, or by PID
namespace and process group), and reaping what a killed engine left behind.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path


def communicate(
    proc: subprocess.Popen[bytes],
    stdin: bytes | None,
    timeout: float | None,
    end: Callable[[], None],
    cancel: threading.Event | None = None,
) -> tuple[bytes, bool]:
    """Feed ``stdin`` and collect output until the command exits (or times out), then
    ``end`` the datum's other processes and drain what they wrote: a background process
    holding the output pipe cannot keep the datum running."""
    assert proc.stdout is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: list[bytes] = []
    pending = memoryview(stdin or b"")
    sel = selectors.DefaultSelector()
    pidfd = os.pidfd_open(proc.pid)
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(pidfd, selectors.EVENT_READ, "exit")
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
    timed_out = False
    try:
        while proc.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                timed_out = True
                break
            if cancel is not None:
                if cancel.is_set():
                    break
                left = 0.2 if left is None else min(left, 0.2)
            for key, _ in sel.select(left):
                if key.data == "out":
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if chunk:
                        chunks.append(chunk)
                    else:
                        sel.unregister(proc.stdout)
                elif key.data == "in":
                    pending = _feed(proc, sel, pending)
                else:
                    proc.wait()
        end()
        proc.wait()
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        chunks.append(_drain(proc.stdout.fileno(), time.monotonic() + 5))
    finally:
        sel.close()
        os.close(pidfd)
        proc.stdout.close()
    return b"".join(chunks), timed_out


def _feed(
    proc: subprocess.Popen[bytes], sel: selectors.BaseSelector, pending: memoryview
) -> memoryview:
    assert proc.stdin is not None
    try:
        written = os.write(proc.stdin.fileno(), pending[:65536])
    except BrokenPipeError:
        written = len(pending)
    pending = pending[written:]
    if not pending:
        sel.unregister(proc.stdin)
        proc.stdin.close()
    return pending


def _drain(fd: int, deadline: float) -> bytes:
    """What is left in the output pipe once every writer is gone (bounded, in case a
    process outside the datum's reach still holds it)."""
    chunks = []
    os.set_blocking(fd, False)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def end_datum(pid: int, group: Path | None) -> None:
    """Kill every process of a datum: its cgroup when it has one, else its namespace's
    process 1 and its process group."""
    if group is not None:
        kill_cgroup(group)
    else:
        _kill_tree(pid)


def _populated(group: Path) -> bool:
    try:
        return "populated 1" in (group / "cgroup.events").read_text()
    except OSError:
        return False


def kill_cgroup(group: Path, *, remove: bool = False) -> None:
    """``cgroup.kill`` a datum's cgroup when a process is left in it and wait until
    none is; then remove the cgroup if asked."""
    if _populated(group):
        with contextlib.suppress(OSError):
            (group / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 10
        while _populated(group) and time.monotonic() < deadline:
            time.sleep(0.001)
    if remove:
        with contextlib.suppress(OSError):
            group.rmdir()


def reap(pids: Path, cgroups: Path | None = None) -> int:
    """Kill every datum process that a previous engine, killed while it ran, left
    behind: each registered pid still alive and every cgroup under ``cgroups``;
    returns how many datums were killed."""
    killed = 0
    if cgroups is not None and cgroups.is_dir():
        for group in cgroups.iterdir():
            if group.is_dir():
                killed += _populated(group)
                kill_cgroup(group, remove=True)
    if not pids.is_dir():
        return killed
    for entry in pids.iterdir():
        with contextlib.suppress(ValueError, OSError):
            pid = int(entry.name)
            if start_time(pid) == entry.read_text():
                _kill_tree(pid)
                killed += 1
        entry.unlink(missing_ok=True)
    return killed


def start_time(pid: int) -> str:
    """The process's start time in clock ticks (field 22 of ``/proc/<pid>/stat``), which
    tells a live process from a later one that reuses its pid; empty if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_tree(pid: int) -> None:
    """Kill a datum: its namespace's process 1 (which takes the whole PID namespace
    with it), its process group and the wrapper itself."""
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)
    _kill_group(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def cgroup_base(name: str) -> Path | None:
    """Where datum cgroups go: ``name`` under this process's own cgroup v2 directory,
    or None when there is no cgroup v2 hierarchy."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    roots = [line.split(" - ")[0].split()[4] for line in mounts if " - cgroup2 " in line]
    paths = [line[3:] for line in own if line.startswith("0::")]
    if not roots or not paths:
        return None
    return Path(roots[0]) / paths[0].lstrip("/") / name


def usable_cgroups(name: str) -> Path | None:
    """The cgroup base for datums when this process may create cgroups and kill them."""
    base = cgroup_base(name)
    if base is None:
        return None
    try:
        base.mkdir(exist_ok=True)
        probe = base / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        usable = (probe / "cgroup.kill").exists()
        probe.rmdir()
    except OSError:
        return None
    return base if usable else None
