"""Crash injection: every durable step calls :func:`killpoint`; crash tests set
``PACHLOCAL_KILL_AT`` to have the process SIGKILL itself at the n-th one.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading


def _kill_target(value: str) -> int | None:
    """``PACHLOCAL_KILL_AT``: unset (no crash injection), ``count`` (pass every kill point
    and report them at exit) or ``n`` (SIGKILL this process at the n-th kill point)."""
    if not value:
        return None
    if value == "count":
        return 0
    if not value.isdigit() or int(value) < 1:
        raise RuntimeError(f"PACHLOCAL_KILL_AT={value!r}: expected a positive integer or 'count'")
    return int(value)


_KILL_AT = _kill_target(os.environ.get("PACHLOCAL_KILL_AT", ""))  # read once, at import
_kill_passed: list[str] = []
_kill_lock = threading.Lock()


def killpoint(name: str) -> None:
    """Mark a durable step (an object written or renamed, a transaction committed, ...).

    Without ``PACHLOCAL_KILL_AT`` this returns at once. With ``PACHLOCAL_KILL_AT=n`` the
    n-th call (counted across threads) sends SIGKILL to this process, as a ``kill -9``
    or the OOM killer would stop it there; with ``count`` the names of the points passed
    are printed to stderr at exit, so a test knows how many exist and which is which.
    """
    if _KILL_AT is None:
        return
    with _kill_lock:
        _kill_passed.append(name)
        if len(_kill_passed) == _KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


def killpoints_passed() -> list[str]:
    """The kill points this process has passed, in order (empty without ``PACHLOCAL_KILL_AT``)."""
    with _kill_lock:
        return list(_kill_passed)


def _report_killpoints() -> None:
    names = killpoints_passed()
    sys.stderr.write(f"pachlocal: {len(names)} kill point(s): {' '.join(names)}\n")


if _KILL_AT == 0:
    atexit.register(_report_killpoints)
