"""The features pipeline on a Spark standalone cluster started from the pyspark wheel.

A master and a worker run as separate JVMs (``bin/spark-class``) on loopback; the
entry point runs once against ``spark://127.0.0.1:PORT`` and once with
``local[2]``, and the two outputs must be byte-identical.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.lens.layouts import features_layout, write_features_inputs

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"exited before '{text}': {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"no '{text}' in {log} after {seconds} s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("spark-cluster")
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(spark_home / "bin" / "spark-class")
    procs = []
    try:
        master_log = work / "master.log"
        master = subprocess.Popen(
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(free_port()),
            ],
            env=env,
            stdout=master_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(master)
        wait_for(master_log, "I have been elected leader", master)
        worker_log = work / "worker.log"
        worker = subprocess.Popen(
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "2g",
                "--webui-port",
                str(free_port()),
                "--work-dir",
                str(work / "worker"),
                url,
            ],
            env=env,
            stdout=worker_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(worker)
        wait_for(worker_log, "Successfully registered with master", worker)
        yield url
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, duckdb_session: Any) -> Path:
    """~400 generated posts compacted per day (no history yet), with a trust file."""
    root = tmp_path_factory.mktemp("inputs")
    start, end = datetime(2024, 5, 3, 18, tzinfo=UTC), datetime(2024, 5, 4, tzinfo=UTC)
    write_features_inputs(root, 400, 5, start, end, trust_every=3)
    features_layout(duckdb_session, root)
    return root


def run_features(layout: Path, out: Path, master: str) -> dict[str, bytes]:
    env = {**os.environ, "SPARK_MASTER": master, "SPARK_LOCAL_IP": "127.0.0.1"}
    env["FEATURES_ENGINE"] = "spark"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipelines" / "features.py"),
            *("--compact", str(layout / "compact"), "--history", str(layout / "history")),
            *("--trust", str(layout / "trust"), "--out", str(out)),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return {p.name: p.read_bytes() for p in sorted((out / "features").iterdir())}


def test_features_on_a_standalone_cluster_equal_the_local_run(
    cluster: str, layout: Path, tmp_path: Path
) -> None:
    on_cluster = run_features(layout, tmp_path / "cluster", cluster)
    local = run_features(layout, tmp_path / "local", "local[2]")
    assert list(on_cluster) == ["part-00000.parquet"]
    assert on_cluster == local
    assert pq.read_metadata(tmp_path / "cluster" / "features" / "part-00000.parquet").num_rows > 300
