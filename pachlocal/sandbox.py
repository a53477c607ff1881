"""Run one datum's command the way a Pachyderm worker container sees it.

Two modes, chosen once per process (``PACHLOCAL_SANDBOX`` overrides):

``namespace`` (Linux, root): the datum is isolated by construction.

- A private mount namespace: the datum's scratch directory is bind-mounted on
  ``/pfs``, every input directory is remounted read-only, secret files are
  mounted read-only at their ``mountPath``, a private scratch directory is
  mounted on ``/tmp``, and the engine's state directory is covered by an empty
  read-only tmpfs, so no path leads from the datum to the object store, the
  database, other pipelines' secrets or other datums.
- A private PID namespace (``unshare --pid --fork --kill-child``, util-linux):
  the command is process 1 of its namespace; when it exits, the kernel kills
  every process it left behind before the engine looks at ``/pfs/out``. The
  engine's own death kills the namespace too (``PR_SET_PDEATHSIG``).
- No capabilities (``setpriv --bounding-set=-all``, no new privileges): root
  code cannot remount, unmount the tmpfs, ``ptrace`` the engine or write
  through a read-only mount.

``remap`` (no mount namespaces, e.g. not root): no isolation; every ``/pfs/...``
and secret ``mountPath`` prefix in ``cmd``, ``stdin`` and environment values is
rewritten to the datum's scratch directory, inputs are private copies, and
the datum's process group is killed when its command returns. Code that builds
``/pfs`` paths itself (rather than taking them from arguments or ``$<input>``)
does not work here, and a process that leaves its process group survives.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
# What a container's root holds by default (Docker's and containerd's set, less MKNOD and
# NET_RAW): a datum runs as root in its pod. Everything else goes, among it SYS_ADMIN
# (mount, unmount), SYS_PTRACE (the engine's memory, environment and root directory),
# MKNOD, SYS_MODULE, NET_ADMIN and LINUX_IMMUTABLE.
CONTAINER_CAPABILITIES = {
    "chown": 0,
    "dac_override": 1,
    "fowner": 3,
    "fsetid": 4,
    "kill": 5,
    "setgid": 6,
    "setuid": 7,
    "setpcap": 8,
    "net_bind_service": 10,
    "sys_chroot": 18,
    "audit_write": 29,
    "setfcap": 31,
}
CAP_SYS_ADMIN = 21

PFS_ROOT = "/pfs"
CGROUP_ROOTS = tuple(p for p in (Path("/sys/fs/cgroup"),) if p.is_dir())
TMP_ROOT = "/tmp"


@dataclass(frozen=True)
class Mounts:
    """What a datum sees: its ``/pfs``, read-only inputs, secrets, ``/tmp``, hidden paths."""

    pfs: Path
    readonly: tuple[str, ...] = ()
    binds: tuple[tuple[Path, str], ...] = ()
    tmp: Path | None = None
    hidden: tuple[Path, ...] = ()
    # host directories under /tmp the command needs (its code, its interpreter): they stay
    # visible, at the same path, inside the private /tmp
    keep: tuple[Path, ...] = ()


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
            preexec = _child_setup(group)
        else:
            argv = [*self.wrapper, *cmd]
            # the wrapper drops them itself once it made the PID namespace
            drop = None if self.wrapper else ([] if _thread.prepared else _dropped())
            preexec = _enter_namespace(mounts, group, drop)
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
            out, timed_out = _communicate(
                proc, stdin, timeout, lambda: _end(proc.pid, group), cancel
            )
        except BaseException:
            _end(proc.pid, group)
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
        if self.mode == "namespace" and not self.wrapper and not _thread.prepared:
            libc = _load_libc()
            for cap in _dropped():
                libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
            _thread.prepared = True

    def close(self) -> None:
        """Remove the cgroups of this process's threads, and the base once it is empty."""
        if self.cgroups is not None:
            for group in self.cgroups.glob(f"t{os.getpid()}-*"):
                _kill_cgroup(group, remove=True)
            with contextlib.suppress(OSError):
                self.cgroups.rmdir()

    def _register(self, pid: int) -> Path | None:
        if self.pids is None:
            return None
        path = self.pids / str(pid)
        with contextlib.suppress(OSError):
            path.write_text(_start_time(pid))
            return path
        return None


def _communicate(
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


def _end(pid: int, group: Path | None) -> None:
    """Kill every process of a datum: its cgroup when it has one, else its namespace's
    process 1 and its process group."""
    if group is not None:
        _kill_cgroup(group)
    else:
        _kill_tree(pid)


def _populated(group: Path) -> bool:
    try:
        return "populated 1" in (group / "cgroup.events").read_text()
    except OSError:
        return False


def _kill_cgroup(group: Path, *, remove: bool = False) -> None:
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
                _kill_cgroup(group, remove=True)
    if not pids.is_dir():
        return killed
    for entry in pids.iterdir():
        with contextlib.suppress(ValueError, OSError):
            pid = int(entry.name)
            if _start_time(pid) == entry.read_text():
                _kill_tree(pid)
                killed += 1
        entry.unlink(missing_ok=True)
    return killed


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks (field 22 of ``/proc/<pid>/stat``), which
    tells a live process from a later one that reuses its pid; empty if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


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


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _child_setup(group: Path | None) -> Callable[[], None]:
    """A ``preexec_fn``: join the datum's cgroup and die with the engine's thread."""
    procs = os.fsencode(group / "cgroup.procs") if group is not None else None
    libc = _load_libc()

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if procs is not None:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    return setup


def _mount(src: bytes | None, target: bytes, flags: int, fstype: bytes | None = None) -> None:
    libc = _load_libc()
    if libc.mount(src, target, fstype, flags, b"size=4k,mode=0555" if fstype else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target.decode()}: {os.strerror(err)}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@functools.cache
def _inheritable_capabilities() -> bool:
    """Whether this process holds inheritable capabilities (which survive an exec)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return True
    return any(
        line.startswith("CapInh:") and int(line.split()[1], 16) != 0 for line in status.splitlines()
    )


@functools.cache
def _last_capability() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


class _ThreadState(threading.local):
    prepared = False


_thread = _ThreadState()


def _dropped() -> list[int]:
    """The capabilities a datum does not get."""
    kept = set(CONTAINER_CAPABILITIES.values())
    return [cap for cap in range(_last_capability() + 1) if cap not in kept]


def _drop_capabilities(libc: ctypes.CDLL, drop: Sequence[int], inheritable: bool) -> None:
    """Leave the program exec'd next (as uid 0) a container's capabilities only: those in
    ``drop`` leave the bounding set (unless the thread did it already); no ambient or
    inheritable capability; no new privileges from set-user-ID or file-capability
    programs."""
    for cap in drop:
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    if inheritable:
        header, data = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
        if libc.capget(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capget failed")
        for half in data:
            half.inheritable = 0
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")


def _enter_namespace(
    mounts: Mounts, group: Path | None, drop: Sequence[int] | None
) -> Callable[[], None]:
    """A ``preexec_fn`` that gives the child its own ``/pfs`` and ``/tmp`` and hides the
    engine's state (runs after fork, before the wrapper's exec)."""
    pfs = os.fsencode(mounts.pfs)
    readonly = [os.fsencode(f"{PFS_ROOT}/{name}") for name in mounts.readonly]
    binds = [(os.fsencode(src), os.fsencode(tgt)) for src, tgt in mounts.binds]
    tmp = os.fsencode(mounts.tmp) if mounts.tmp is not None else None
    # the cgroup tree too: no process of the datum may leave the cgroup it is killed by
    hidden = [os.fsencode(p) for p in (*mounts.hidden, *CGROUP_ROOTS)]
    keep = [os.fsencode(p) for p in kept_under_tmp(mounts.keep)] if tmp is not None else []
    libc = _load_libc()
    setup = _child_setup(group)
    inheritable = _inheritable_capabilities()

    def enter() -> None:
        setup()
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
        _mount(None, b"/", MS_REC | MS_PRIVATE)
        _mount(pfs, PFS_ROOT.encode(), MS_BIND | MS_REC)
        for target in readonly:
            _mount(target, target, MS_BIND | MS_REC)
            _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
        for src, target in binds:
            _mount(src, target, MS_BIND)
            _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
        # the private /tmp lives under the state directory, which is hidden next, and the
        # state directory may itself be under /tmp: hold the source open across both
        tmp_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY) if tmp is not None else -1
        for path in hidden:
            _mount(b"tmpfs", path, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"tmpfs")
        kept = [(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY)) for path in keep]
        if tmp_fd >= 0:
            _mount(f"/proc/self/fd/{tmp_fd}".encode(), TMP_ROOT.encode(), MS_BIND)
            os.close(tmp_fd)
        for path, fd in kept:  # recursive: what is hidden inside stays hidden
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}".encode(), path, MS_BIND | MS_REC)
            os.close(fd)
        if drop is not None:
            _drop_capabilities(libc, drop, inheritable)

    return enter


def kept_under_tmp(paths: Sequence[Path]) -> list[Path]:
    """The outermost of ``paths`` that lie under ``/tmp`` (which a datum sees privately)."""
    inside = sorted({p for p in paths if p.is_relative_to(TMP_ROOT) and p != Path(TMP_ROOT)})
    outer: list[Path] = []
    for path in inside:
        if not any(path.is_relative_to(o) for o in outer) and path.is_dir():
            outer.append(path)
    return outer


def namespace_wrapper(pid_namespace: bool) -> tuple[str, ...] | str:
    """Without a cgroup to kill a datum's processes by, the util-linux programs that give
    it a PID namespace and then drop its capabilities (or why they cannot be used);
    with one, no wrapper: the engine drops the capabilities itself before the exec."""
    if not pid_namespace:
        return ()
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if not setpriv or not unshare:
        return "util-linux's setpriv and unshare are not on PATH"
    kept = ",".join(f"+{name}" for name in CONTAINER_CAPABILITIES)
    drop = (setpriv, f"--bounding-set=-all,{kept}", "--inh-caps=-all", "--no-new-privs", "--")
    return (unshare, "--pid", "--fork", "--kill-child", "--mount-proc", *drop)


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


def _usable_cgroups(name: str) -> Path | None:
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
    cgroups = _usable_cgroups(cgroup_name) if cgroup_name else None
    if wanted == "remap":
        return Sandbox("remap", pids=pids, cgroups=cgroups)
    reason = ""
    wrapper = namespace_wrapper(pid_namespace=cgroups is None)
    try:
        _load_libc()
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
