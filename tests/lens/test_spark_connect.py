"""The features pipeline against a Spark Connect server (``lensrun.sparkserver``).

The server is a separate JVM started from the pyspark wheel; the features spec
runs through the engine with ``SPARK_REMOTE`` set, each datum in its own mount
namespace, so the server reads the datum's files through ``PFS_HOST_ROOT``. Its
output must equal, byte for byte, the same entry point run with a local session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from lensfeed import compact
from lensfeed.spark import is_remote, spark_path
from lensrun.sparkserver import SparkConnectServer, SparkServerError
from pachlocal.engine import Engine
from pachlocal.spec import load_spec_documents
from tests.lens.layouts import features_layout, write_features_inputs

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkConnectServer]:
    with SparkConnectServer(tmp_path_factory.mktemp("spark-connect"), master="local[2]") as s:
        yield s


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, duckdb_session: Any) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    start, end = datetime(2024, 5, 2, 18, tzinfo=UTC), datetime(2024, 5, 3, tzinfo=UTC)
    write_features_inputs(root, 300, 7, start, end, trust_every=3)
    features_layout(duckdb_session, root)
    compact.merge_history(duckdb_session, root / "compact", root / "history")
    return root


def local_features(layout: Path, out: Path) -> dict[str, bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    env.update(SPARK_MASTER="local[2]", SPARK_LOCAL_IP="127.0.0.1", FEATURES_ENGINE="spark")
    args = ["--compact", "--history", "--trust", "--out"]
    paths = [layout / "compact", layout / "history", layout / "trust", out]
    command = [sys.executable, str(ROOT / "pipelines" / "features.py")]
    for flag, path in zip(args, paths, strict=True):
        command += [flag, str(path)]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    return {f"/features/{p.name}": p.read_bytes() for p in sorted((out / "features").iterdir())}


def test_features_through_the_engine_on_a_connect_server_equal_a_local_session(
    server: SparkConnectServer, layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = local_features(layout, tmp_path / "local")
    spec = ROOT / "specs" / "features.pipeline.json"
    (document,) = load_spec_documents(spec.read_text(), str(spec))
    # a datum sees its spec's environment only: the server goes into the spec
    document["transform"]["env"].update(FEATURES_ENGINE="spark", SPARK_REMOTE=server.remote)
    with Engine(tmp_path / "state") as engine:
        for repo in ("compact", "history", "trust"):
            source = layout / repo
            engine.store.create_repo(repo)
            files = [
                (f"/{p.relative_to(source).as_posix()}", p.read_bytes())
                for p in sorted(source.rglob("*"))
                if p.is_file()
            ]
            engine.commit_files(repo, "master", files)
        engine.create_pipeline(document, code_root=ROOT)
        engine.run_pending()
        jobs = {j["pipeline"]: (j["state"], j["processed"]) for j in engine.jobs()}
        assert jobs == {"features": ("success", 1)}
        store = engine.store
        manifest = store.manifest(store.resolve("features@master"))
        got = {path: store.objects.read(entry.hash) for path, entry in sorted(manifest.items())}
    assert got == expected
    assert pq.read_metadata(tmp_path / "local" / "features" / "part-00000.parquet").num_rows > 200


def test_spark_path_maps_pfs_to_the_host_root_only_for_a_remote_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PFS_HOST_ROOT", "/state/work/job/datum/")
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    assert not is_remote()
    assert spark_path("/pfs/posts/x") == "/pfs/posts/x"
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:1")
    assert is_remote() and not is_remote("local[2]")
    assert spark_path("/pfs/posts/x") == "/state/work/job/datum/posts/x"
    assert spark_path("/pfs") == "/state/work/job/datum"
    assert spark_path("/pfsx/a") == "/pfsx/a"  # only the /pfs directory itself
    assert spark_path("/tmp/a") == "/tmp/a"
    monkeypatch.delenv("PFS_HOST_ROOT")
    assert spark_path("/pfs/posts/x") == "/pfs/posts/x"


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    server = SparkConnectServer(tmp_path / "spark", master="no-such-master://x")
    with pytest.raises(SparkServerError, match="exited with"):
        server.start()
    assert server.process is None
