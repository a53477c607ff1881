"""``make run`` refuses what cannot work before starting anything, and its exit status
says whether every job of the run succeeded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lensrun.demo import DemoConfig, failed_jobs, run, tmp_problem
from pachlocal.engine import Engine


def test_a_state_directory_under_tmp_is_refused_with_the_reason(tmp_path: Path) -> None:
    home = Path("/tmp") / f"lens-guard-{tmp_path.name}" / "state"
    problem = tmp_problem(DemoConfig(home=home))
    assert f"{home} is under /tmp" in problem
    assert "a datum sees /tmp privately" in problem and "--pgsql-url" in problem
    assert run(DemoConfig(home=home, quiet=True)) == 2
    assert not home.exists()  # refused before anything was created or started


@pytest.mark.parametrize(
    ("home", "url"),
    [(Path("/var/tmp/lens/state"), ""), (Path("/tmp/lens/state"), "postgresql://db/lens")],
)
def test_elsewhere_or_with_an_external_server_it_is_fine(home: Path, url: str) -> None:
    assert tmp_problem(DemoConfig(home=home, pgsql_url=url)) == ""


def test_failed_jobs_are_those_of_this_run_that_failed(tmp_path: Path) -> None:
    spec = {
        "pipeline": {"name": "breaks"},
        "input": {"pfs": {"repo": "raw", "glob": "/*"}},
        "transform": {"cmd": [sys.executable, "-c", "raise SystemExit(3)"]},
        "datumTries": 1,
    }
    with Engine(tmp_path / "state") as engine:
        engine.store.create_repo("raw")
        engine.create_pipeline(spec, code_root=tmp_path)
        engine.run_pending()
        before = engine.store.next_seq() - 1
        assert failed_jobs(engine, before) == []
        engine.commit_files("raw", "master", [("/a", b"1")])
        engine.run_pending()
        failed = failed_jobs(engine, before)
        assert [(j["pipeline"], j["state"]) for j in failed] == [("breaks", "failure")]
