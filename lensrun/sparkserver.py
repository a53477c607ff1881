"""A Spark Connect server for local runs: one warm JVM for every features job.

A Pachyderm worker runs the features step as a fresh process per job, and a
local Spark session costs 8 to 16 s of JVM start (and a cold JIT) every time.
Against a Spark Connect server the job is a thin client: its session opens in
under a second and its queries run on a JVM that stays up and warm between
ticks. At scale the same client talks to a Spark cluster's Connect endpoint
(``SPARK_REMOTE=sc://...``); here the project starts one from the ``pyspark``
wheel (``org.apache.spark.sql.connect.service.SparkConnectServer``, run by
``spark-submit``), on loopback, with the same settings as a local session.

Usage::

    with SparkConnectServer(state_dir / "spark") as server:
        os.environ["SPARK_REMOTE"] = server.remote
        ...
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import pyspark

from lensfeed.spark import DEFAULT_MASTER, session_settings

_log = logging.getLogger(__name__)

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
READY_LINE = "Spark Connect server started at"
START_TIMEOUT_S = 120.0


class SparkServerError(RuntimeError):
    """The Spark Connect server could not be started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SparkConnectServer:
    """A Spark Connect server on ``127.0.0.1``, logging to ``<work_dir>/server.log``.

    Args:
        work_dir: its log and scratch (``spark.local.dir``) directory, created if absent.
        master: where its queries run (default ``local[*]``; a ``spark://`` cluster works).
        port: the gRPC port (default: a free one).
        driver_memory: ``spark.driver.memory`` (default 2g; the server holds every
            job's plans and shuffles).
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        master: str = DEFAULT_MASTER,
        port: int | None = None,
        driver_memory: str = "2g",
    ) -> None:
        self.work_dir = Path(work_dir).absolute()
        self.master = master
        self.port = port or _free_port()
        self.driver_memory = driver_memory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def remote(self) -> str:
        """The URL clients use: ``sc://127.0.0.1:<port>`` (``SPARK_REMOTE``)."""
        return f"sc://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "server.log"

    def command(self) -> list[str]:
        home = Path(pyspark.__file__).parent
        settings = {
            **session_settings(self.master),
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.driver.memory": self.driver_memory,
            "spark.local.dir": str(self.work_dir / "tmp"),
        }
        conf = [arg for key, value in settings.items() for arg in ("--conf", f"{key}={value}")]
        return [
            str(home / "bin" / "spark-submit"),
            "--class",
            SERVER_CLASS,
            "--name",
            "lensfeed Spark Connect server",
            "--master",
            self.master,
            *conf,
            "spark-internal",
        ]

    def start(self) -> SparkConnectServer:
        """Start the server and wait until it accepts connections.

        Raises:
            SparkServerError: it exited or did not get ready within
                :data:`START_TIMEOUT_S`; the message quotes the end of its log.
        """
        (self.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("SPARK_HOME", str(Path(pyspark.__file__).parent))
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.pop("SPARK_REMOTE", None)
        started = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.work_dir,
                start_new_session=True,  # stop() signals the whole group
            )
        while time.perf_counter() - started < START_TIMEOUT_S:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise SparkServerError(f"Spark Connect server exited with {code}: {self._tail()}")
            if READY_LINE in self.log_path.read_text(errors="replace"):
                _log.info(
                    "Spark Connect server up at %s in %.1f s",
                    self.remote,
                    time.perf_counter() - started,
                )
                return self
            time.sleep(0.2)
        self.stop()
        raise SparkServerError(
            f"Spark Connect server not ready after {START_TIMEOUT_S:.0f} s: {self._tail()}"
        )

    def _tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout``)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> SparkConnectServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
