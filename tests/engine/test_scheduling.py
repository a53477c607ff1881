"""Job scheduling: jobs of different pipelines run at once, a pipeline's own jobs one at a
time and in order (each reuses its predecessor's datums), a job after its inputs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from pachlocal.engine import Engine, EngineError
from tests.engine.test_engine import copy_spec

SLOW_COPY = "sleep 1; cp -r /pfs/in/. /pfs/out/"


def spans(engine: Engine, pipeline: str) -> list[tuple[float, float]]:
    """(started, finished) of a pipeline's jobs that ran, oldest first."""
    rows = sorted(engine.jobs(pipeline), key=lambda j: j["seq"])
    return [(j["started"], j["finished"]) for j in rows if j["started"] is not None]


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def two_readers(engine: Engine, tmp_path: Path, script: str = SLOW_COPY) -> None:
    engine.store.create_repo("in")
    for name in ("left", "right"):
        engine.create_pipeline(copy_spec(name, "in", "/", script), code_root=tmp_path)
    engine.run_pending()  # the creation jobs (nothing to read yet)
    engine.commit_files("in", "master", [("/a", b"A")])


def test_jobs_of_different_pipelines_run_at_once(tmp_path: Path) -> None:
    with Engine(tmp_path / "state", max_jobs=2) as engine:
        two_readers(engine, tmp_path)
        finished = engine.run_pending()
        assert [(j["pipeline"], j["state"]) for j in sorted(finished, key=lambda j: j["seq"])] == [
            ("left", "success"),
            ("right", "success"),
        ]
        assert overlap(spans(engine, "left")[-1], spans(engine, "right")[-1])
        for name in ("left", "right"):
            files = engine.store.manifest(engine.store.resolve(f"{name}@master"))
            assert {
                path: engine.store.objects.path(e.hash).read_bytes() for path, e in files.items()
            } == {"/a": b"A"}


def test_one_job_at_a_time_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHLOCAL_JOBS", "1")
    with Engine(tmp_path / "state") as engine:
        assert engine.max_jobs == 1
        two_readers(engine, tmp_path)
        engine.run_pending()
        assert not overlap(spans(engine, "left")[-1], spans(engine, "right")[-1])


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_job_count_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PACHLOCAL_JOBS", value)
    with pytest.raises(EngineError, match=f"PACHLOCAL_JOBS='{value}'"):
        Engine(tmp_path / "state")


def test_a_pipelines_jobs_run_in_order_and_reuse_datums(tmp_path: Path) -> None:
    """Three commits queued before anything runs: the jobs of ``each`` never overlap, run
    oldest first, and each skips the datums its predecessor processed."""
    with Engine(tmp_path / "state", max_jobs=4) as engine:
        engine.store.create_repo("in")
        engine.create_pipeline(
            copy_spec("each", "in", "/*", "sleep 0.3; cp $in /pfs/out/"), code_root=tmp_path
        )
        engine.run_pending()
        for name in ("a", "b", "c"):
            engine.commit_files("in", "master", [(f"/{name}", name.encode())])
        engine.run_pending()
        rows = sorted(engine.jobs("each"), key=lambda j: j["seq"])[1:]
        assert [(j["state"], j["processed"], j["skipped"]) for j in rows] == [
            ("success", 1, 0),
            ("success", 1, 1),
            ("success", 1, 2),
        ]
        times = spans(engine, "each")[1:]
        assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(times))


def test_a_job_starts_after_its_inputs_are_committed(tmp_path: Path) -> None:
    with Engine(tmp_path / "state", max_jobs=4) as engine:
        engine.store.create_repo("in")
        engine.create_pipeline(copy_spec("up", "in", "/", SLOW_COPY), code_root=tmp_path)
        down: dict[str, Any] = copy_spec("down", "up", "/", "cp -r /pfs/up/. /pfs/out/")
        engine.create_pipeline(down, code_root=tmp_path)
        engine.run_pending()
        engine.commit_files("in", "master", [("/a", b"A")])
        engine.run_pending()
        up, down_span = spans(engine, "up")[-1], spans(engine, "down")[-1]
        assert up[1] <= down_span[0]
        files = engine.store.manifest(engine.store.resolve("down@master"))
        assert list(files) == ["/a"]


def test_a_failing_job_does_not_stop_the_others(tmp_path: Path) -> None:
    with Engine(tmp_path / "state", max_jobs=2) as engine:
        engine.store.create_repo("in")
        engine.create_pipeline(
            copy_spec("bad", "in", "/", "exit 4", datumTries=1), code_root=tmp_path
        )
        engine.create_pipeline(copy_spec("good", "in", "/", SLOW_COPY), code_root=tmp_path)
        engine.run_pending()
        engine.commit_files("in", "master", [("/a", b"A")])
        finished = {j["pipeline"]: j for j in engine.run_pending()}
        assert finished["bad"]["state"] == "failure"
        assert "command exited with code 4" in finished["bad"]["reason"]
        assert finished["good"]["state"] == "success"
        assert list(engine.store.manifest(engine.store.resolve("good@master"))) == ["/a"]
