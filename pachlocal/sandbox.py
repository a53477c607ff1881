"""Run one datum's command the way a Pachyderm worker container sees it.

Two modes, chosen once per process (``PACHLOCAL_SANDBOX`` overrides):

``namespace`` (Linux, root): the child enters a private mount namespace,
bind-mounts the datum's scratch directory on ``/pfs`` and every input
directory read-only, and mounts secret files at their ``mountPath``. Code that
hard-codes ``/pfs/<input>`` and ``/pfs/out`` runs unmodified, and two datums
running in parallel each see only their own ``/pfs``.

``remap`` (no mount namespaces): no isolation; every ``/pfs/...`` and secret
``mountPath`` prefix in ``cmd``, ``stdin`` and environment values is rewritten
to the datum's scratch directory. Code that builds ``/pfs`` paths itself
(rather than taking them from arguments or ``$<input>``) does not work here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

PFS_ROOT = "/pfs"


@dataclass(frozen=True)
class Mounts:
    """What a datum's private namespace mounts: ``/pfs``, read-only inputs, secrets."""

    pfs: Path
    readonly: tuple[str, ...] = ()
    binds: tuple[tuple[Path, str], ...] = ()


@dataclass
class RunResult:
    """The outcome of one command: exit code, merged output, whether it timed out."""

    returncode: int
    output: bytes
    timed_out: bool = False
    seconds: float = 0.0
    error: str = ""


@dataclass
class Sandbox:
    """Runs commands for datums in ``mode`` (``namespace`` or ``remap``)."""

    mode: str
    notes: list[str] = field(default_factory=list)

    def run(
        self,
        cmd: Sequence[str],
        *,
        stdin: bytes | None,
        env: Mapping[str, str],
        cwd: Path,
        mounts: Mounts,
        timeout: float | None,
    ) -> RunResult:
        """Run ``cmd`` (no shell) with the datum's view of ``/pfs``."""
        if self.mode == "remap":
            remap = _remapper(mounts)
            cmd = [remap(a) for a in cmd]
            env = {k: remap(v) for k, v in env.items()}
            if stdin is not None:
                stdin = remap(stdin.decode()).encode()
            preexec = None
        else:
            preexec = _enter_namespace(mounts)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                preexec_fn=preexec,
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return RunResult(127, b"", error=f"cannot start {cmd[0]!r}: {exc}")
        try:
            out, _ = proc.communicate(stdin, timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
            timed_out = True
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        return RunResult(
            proc.returncode, out or b"", timed_out=timed_out, seconds=time.monotonic() - start
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _remapper(mounts: Mounts) -> Callable[[str], str]:
    table = [(PFS_ROOT, str(mounts.pfs))] + [(tgt, str(src)) for src, tgt in mounts.binds]

    def remap(value: str) -> str:
        for prefix, real in table:
            value = value.replace(prefix + "/", real + "/")
            if value == prefix:
                value = real
        return value

    return remap


_libc: ctypes.CDLL | None = None


def _mount(src: bytes | None, target: bytes, flags: int) -> None:
    assert _libc is not None
    if _libc.mount(src, target, None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target.decode()}: {os.strerror(err)}")


def _enter_namespace(mounts: Mounts) -> Callable[[], None]:
    """A ``preexec_fn`` that gives the child its own ``/pfs`` (runs after fork, before exec)."""
    pfs = os.fsencode(mounts.pfs)
    readonly = [os.fsencode(f"{PFS_ROOT}/{name}") for name in mounts.readonly]
    binds = [(os.fsencode(src), os.fsencode(tgt)) for src, tgt in mounts.binds]

    def enter() -> None:
        assert _libc is not None
        if _libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
        _mount(None, b"/", MS_REC | MS_PRIVATE)
        _mount(pfs, PFS_ROOT.encode(), MS_BIND | MS_REC)
        for target in readonly:
            _mount(target, target, MS_BIND | MS_REC)
            _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
        for src, target in binds:
            _mount(src, target, MS_BIND)
            _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)

    return enter


def detect(scratch: Path) -> Sandbox:
    """Pick the sandbox mode: ``namespace`` when it demonstrably works, else ``remap``."""
    global _libc
    wanted = os.environ.get("PACHLOCAL_SANDBOX", "auto")
    if wanted not in ("auto", "namespace", "remap"):
        raise ValueError(f"PACHLOCAL_SANDBOX={wanted!r}: expected auto, namespace or remap")
    if wanted == "remap":
        return Sandbox("remap")
    reason = ""
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        if not os.path.isdir(PFS_ROOT):
            os.makedirs(PFS_ROOT, exist_ok=True)
        probe = scratch / "probe"
        (probe / "out").mkdir(parents=True, exist_ok=True)
        result = Sandbox("namespace").run(
            ["test", "-d", f"{PFS_ROOT}/out"],
            stdin=None,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            cwd=scratch,
            mounts=Mounts(probe),
            timeout=30,
        )
        shutil.rmtree(probe, ignore_errors=True)
        if result.returncode == 0:
            return Sandbox("namespace")
        reason = result.error or f"probe exited {result.returncode}"
    except OSError as exc:
        reason = str(exc)
    if wanted == "namespace":
        raise RuntimeError(f"PACHLOCAL_SANDBOX=namespace but mount namespaces fail: {reason}")
    return Sandbox(
        "remap", notes=[f"mount namespaces unavailable ({reason}); using path remapping"]
    )
