"""The :class:`Sandbox` that runs a datum's command, and :func:`detect`, which picks
its mode (``namespace`` or ``remap``) once per process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .namespace import (
    CAP_SYS_ADMIN,
    PFS_ROOT,
    PR_CAPBSET_DROP,
    Mounts,
    child_setup,
    dropped_capabilities,
    enter_namespace,
    load_libc,
    namespace_wrapper,
    thread_state,
)
from .supervise import communicate, end_datum, kill_cgroup, start_time, usable_cgroups


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
    """Runs commands for datums in ``mode`` (``namespace`` or ``remap``).

    ``pids`` is a directory where every running command is registered (pid and
    start time), and ``cgroups`` a cgroup v2 directory under which each command
    gets its own cgroup, so that :func:`reap` can kill what a crashed engine left.
    """

    mode: str
    notes: list[str] = field(default_factory=list)
    pids: Path | None = None
    wrapper: tuple[str, ...] = ()
    cgroups: Path | None = None

    def run(
        self,
        cmd: Sequence[str],
        *,
        stdin: bytes | None,
        env: Mapping[str, str],
        cwd: Path,
        mounts: Mounts,
        timeout: float | None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run ``cmd`` (no shell) with the datum's view of ``/pfs``. When it returns,
        every process the command started has ended (those left in the background are
        killed as the command exits), so nothing writes to ``/pfs/out`` any more. Setting
        ``cancel`` kills it (e.g. on Ctrl-C)."""
        missing = _missing_program(cmd, env, cwd)
        if missing:
            return RunResult(127, b"", error=missing)
        group = self._cgroup()
        if self.mode == "remap":
            remap = _remapper(mounts)
            argv = [remap(a) for a in cmd]
            env = {k: remap(v) for k, v in env.items()}
            if stdin is not None:
                stdin = remap(stdin.decode()).encode()
            preexec = child_setup(group)
        else:
            argv = [*self.wrapper, *cmd]
            # the wrapper drops them itself once it made the PID namespace
            drop = (
                None if self.wrapper else ([] if thread_state.prepared else dropped_capabilities())
            )
            preexec = enter_namespace(mounts, group, drop)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
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
        registration = self._register(proc.pid) if group is None else None
        try:
            out, timed_out = communicate(
                proc, stdin, timeout, lambda: end_datum(proc.pid, group), cancel
            )
        except BaseException:
            end_datum(proc.pid, group)
            raise
        finally:
            if registration is not None:
                registration.unlink(missing_ok=True)
        return RunResult(
            proc.returncode, out, timed_out=timed_out, seconds=time.monotonic() - start
        )

    def _cgroup(self) -> Path | None:
        """This thread's cgroup (empty between two commands, so it is reused)."""
        if self.cgroups is None:
            return None
        path = self.cgroups / f"t{os.getpid()}-{threading.get_native_id()}"
        if not path.is_dir():
            path.mkdir()
        return path

    def prepare_thread(self) -> None:
        """Drop what a container's root does not hold from this thread's bounding set, once:
        every command it starts then inherits that (thread-level, so the engine's other
        threads keep theirs), and the per-datum child skips the work."""
        if self.mode == "namespace" and not self.wrapper and not thread_state.prepared:
            libc = load_libc()
            for cap in dropped_capabilities():
                libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
            thread_state.prepared = True

    def close(self) -> None:
        """Remove the cgroups of this process's threads, and the base once it is empty."""
        if self.cgroups is not None:
            for group in self.cgroups.glob(f"t{os.getpid()}-*"):
                kill_cgroup(group, remove=True)
            with contextlib.suppress(OSError):
                self.cgroups.rmdir()

    def _register(self, pid: int) -> Path | None:
        if self.pids is None:
            return None
        path = self.pids / str(pid)
        with contextlib.suppress(OSError):
            path.write_text(start_time(pid))
            return path
        return None


def _missing_program(cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    """Why ``cmd[0]`` cannot be started, checked before any namespace is made."""
    if not cmd:
        return "empty command"
    program = cmd[0]
    if "/" in program:
        path = Path(program) if os.path.isabs(program) else cwd / program
        ok = path.is_file() and os.access(path, os.X_OK)
    else:
        ok = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
    return "" if ok else f"cannot start {program!r}: no such executable"


def _remapper(mounts: Mounts) -> Callable[[str], str]:
    table = [(PFS_ROOT, str(mounts.pfs))] + [(tgt, str(src)) for src, tgt in mounts.binds]

    def remap(value: str) -> str:
        for prefix, real in table:
            value = value.replace(prefix + "/", real + "/")
            if value == prefix:
                value = real
        return value

    return remap


# the datum sees its /pfs, not the hidden state directory, and cannot mount
PROBE = (
    f'test -d {PFS_ROOT}/out && ! test -e "$1/probe" && '
    f"test $(( 0x$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status) >> {CAP_SYS_ADMIN} & 1 )) = 0"
)


def detect(scratch: Path, pids: Path | None = None, cgroup_name: str = "") -> Sandbox:
    """Pick the sandbox mode: ``namespace`` when it demonstrably works, else ``remap``;
    datum processes are tracked by cgroup when ``cgroup_name`` is given and cgroup v2
    is writable."""
    wanted = os.environ.get("PACHLOCAL_SANDBOX", "auto")
    if wanted not in ("auto", "namespace", "remap"):
        raise ValueError(f"PACHLOCAL_SANDBOX={wanted!r}: expected auto, namespace or remap")
    if pids is not None:
        pids.mkdir(parents=True, exist_ok=True)
    cgroups = usable_cgroups(cgroup_name) if cgroup_name else None
    if wanted == "remap":
        return Sandbox("remap", pids=pids, cgroups=cgroups)
    reason = ""
    wrapper = namespace_wrapper(pid_namespace=cgroups is None)
    try:
        load_libc()
        if isinstance(wrapper, str):
            raise OSError(wrapper)
        if not os.path.isdir(PFS_ROOT):
            os.makedirs(PFS_ROOT, exist_ok=True)
        probe = scratch / "probe"
        (probe / "out").mkdir(parents=True, exist_ok=True)
        (probe / "tmp").mkdir(parents=True, exist_ok=True)
        result = Sandbox("namespace", wrapper=wrapper, cgroups=cgroups).run(
            ["sh", "-c", PROBE, "probe", str(scratch)],
            stdin=None,
            env={"PATH": os.environ.get("PATH", os.defpath)},
            cwd=scratch,
            mounts=Mounts(probe, tmp=probe / "tmp", hidden=(scratch,)),
            timeout=30,
        )
        shutil.rmtree(probe, ignore_errors=True)
        if result.returncode == 0:
            return Sandbox("namespace", pids=pids, wrapper=wrapper, cgroups=cgroups)
        reason = result.error or (
            f"probe exited {result.returncode}: {result.output.decode(errors='replace').strip()}"
        )
    except OSError as exc:
        reason = str(exc)
    if wanted == "namespace":
        raise RuntimeError(f"PACHLOCAL_SANDBOX=namespace but mount namespaces fail: {reason}")
    return Sandbox(
        "remap",
        notes=[f"datum isolation unavailable ({reason}); using path remapping"],
        pids=pids,
        cgroups=cgroups,
    )
