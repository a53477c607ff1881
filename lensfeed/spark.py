"""The one Spark session factory of the project.

Configuration comes from the edge (arguments, then environment):

- ``SPARK_REMOTE``: a Spark Connect server (``sc://host:15002``). The job then
  starts no JVM: the session opens in under a second and queries run on the
  server's long-lived, already warm JVM (the local runner starts one for `make run`).
  Takes precedence over ``SPARK_MASTER``. The server must see the job's files
  under the same paths, or under ``$PFS_HOST_ROOT`` (see :func:`spark_path`);
- ``SPARK_MASTER``: the master URL when none is passed (default ``local[*]``);
  a standalone cluster (``spark://127.0.0.1:7077``) works unchanged as long as
  its executors see the same local files (data reaches Spark as files under
  ``/pfs``, never through a connector);
- ``SPARK_SHUFFLE_PARTITIONS``: ``spark.sql.shuffle.partitions`` (default 8 for
  a ``local`` master, Spark's own default otherwise);
- ``SPARK_DRIVER_MEMORY``: ``spark.driver.memory`` (Spark's default when unset).

Starting a local session costs 8 to 16 s: callers start one only when there is work.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"
LOCAL_SHUFFLE_PARTITIONS = "8"


def session_settings(master: str) -> dict[str, str]:
    """The Spark configuration for ``master``, from the environment."""
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        # Parquet timestamps as INT64 micros adjusted to UTC, not the legacy INT96
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # list partition directories on the driver: they are local files, and a
        # listing job per read (one task per directory) costs seconds
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    }
    partitions = os.environ.get("SPARK_SHUFFLE_PARTITIONS", "")
    if not partitions and master.startswith("local"):
        partitions = LOCAL_SHUFFLE_PARTITIONS
    if partitions:
        settings["spark.sql.shuffle.partitions"] = partitions
    memory = os.environ.get("SPARK_DRIVER_MEMORY", "")
    if memory:
        settings["spark.driver.memory"] = memory
    return settings


def is_remote(master: str | None = None) -> bool:
    """Whether :func:`spark_session` connects to a Spark Connect server."""
    return not master and bool(os.environ.get("SPARK_REMOTE"))


def spark_path(path: str | Path) -> str:
    """``path`` as the Spark driver sees it.

    A job's ``/pfs`` may be private to it (pachlocal gives each datum its own
    mount namespace); a Spark Connect server outside it reads the same files
    through the host directory that backs ``/pfs``, given by ``$PFS_HOST_ROOT``.
    Any other path, or no such variable, is returned unchanged.
    """
    text = str(Path(path).absolute())
    host_root = os.environ.get("PFS_HOST_ROOT", "")
    if host_root and is_remote() and (text == "/pfs" or text.startswith("/pfs/")):
        return host_root.rstrip("/") + text[len("/pfs") :]
    return text


def spark_session(app: str, master: str | None = None) -> SparkSession:
    """Start (or reuse) the Spark session of this process.

    Args:
        app: the application name shown by Spark.
        master: the master URL; None means ``$SPARK_REMOTE`` (a Spark Connect
            server), else ``$SPARK_MASTER``, else ``local[*]``.

    Returns:
        The session, logging at ERROR level. Settings of an already running
        session that only apply at start (master, driver memory) are kept.
    """
    if is_remote(master):
        remote = os.environ["SPARK_REMOTE"]
        session = SparkSession.builder.appName(app).remote(remote).getOrCreate()
        session.conf.set("spark.sql.session.timeZone", "UTC")
        return session
    # Bind the loopback interface, and run Python workers with this interpreter
    # (the one that has pandas and pyarrow), unless the environment says otherwise.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    url = master or os.environ.get("SPARK_MASTER", "") or DEFAULT_MASTER
    builder = SparkSession.builder.appName(app).master(url)
    for key, value in session_settings(url).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
