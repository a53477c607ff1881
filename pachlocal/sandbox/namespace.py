"""What runs in a datum's child process between fork and exec: its mount namespace
(``/pfs``, read-only inputs, secrets, a private ``/tmp``, hidden state), the
capabilities it keeps (a container root's), joining its cgroup and dying with
the engine; and the util-linux wrapper that gives it a PID namespace instead.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


_libc: ctypes.CDLL | None = None


def load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def child_setup(group: Path | None) -> Callable[[], None]:
    """A ``preexec_fn``: join the datum's cgroup and die with the engine's thread."""
    procs = os.fsencode(group / "cgroup.procs") if group is not None else None
    libc = load_libc()

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
    libc = load_libc()
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
    """Per thread: whether its bounding set was dropped already (``prepare_thread``)."""

    prepared = False


thread_state = _ThreadState()


def dropped_capabilities() -> list[int]:
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


def enter_namespace(
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
    libc = load_libc()
    setup = child_setup(group)
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
