"""The one Spark session factory of the project.

Configuration comes from the edge (arguments, then environment):

- ``SPARK_MASTER``: the master URL when none is passed (default ``local[*]``);
  a standalone cluster (``spark://127.0.0.1:7077``) works unchanged as long as
  its executors see the same local files (data reaches Spark as files under
  ``/pfs``, never through a connector);
- ``SPARK_SHUFFLE_PARTITIONS``: ``spark.sql.shuffle.partitions`` (default 8 for
  a ``local`` master, Spark's own default otherwise);
- ``SPARK_DRIVER_MEMORY``: ``spark.driver.memory`` (Spark's default when unset).

Starting a session costs 8 to 16 s: callers start one only when there is work.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"
LOCAL_SHUFFLE_PARTITIONS = "8"


def _settings(master: str) -> dict[str, str]:
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


def spark_session(app: str, master: str | None = None) -> SparkSession:
    """Start (or reuse) the Spark session of this process.

    Args:
        app: the application name shown by Spark.
        master: the master URL; ``$SPARK_MASTER`` or ``local[*]`` when None.

    Returns:
        The session, logging at ERROR level. Settings of an already running
        session that only apply at start (master, driver memory) are kept.
    """
    # Bind the loopback interface, and run Python workers with this interpreter
    # (the one that has pandas and pyarrow), unless the environment says otherwise.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    url = master or os.environ.get("SPARK_MASTER", "") or DEFAULT_MASTER
    builder = SparkSession.builder.appName(app).master(url)
    for key, value in _settings(url).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
