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

Rooms: :mod:`.runner` (:class:`Sandbox`, :func:`detect`), :mod:`.namespace` (the
child's setup between fork and exec: mounts, capabilities, cgroup) and
:mod:`.supervise` (output, timeouts, killing and reaping a datum's processes).
"""

from .namespace import (
    CAP_SYS_ADMIN,
    CGROUP_ROOTS,
    CONTAINER_CAPABILITIES,
    PFS_ROOT,
    TMP_ROOT,
    Mounts,
    kept_under_tmp,
    namespace_wrapper,
)
from .runner import PROBE, RunResult, Sandbox, detect
from .supervise import cgroup_base, reap

__all__ = [
    "CAP_SYS_ADMIN",
    "CGROUP_ROOTS",
    "CONTAINER_CAPABILITIES",
    "PFS_ROOT",
    "PROBE",
    "TMP_ROOT",
    "Mounts",
    "RunResult",
    "Sandbox",
    "cgroup_base",
    "detect",
    "kept_under_tmp",
    "namespace_wrapper",
    "reap",
]
