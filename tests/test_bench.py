"""Smoke test of the benchmark entry point at toy scale: it runs and writes its JSON.

No timing is asserted: only that each comparison ran, agreed with its baseline,
and reported the fields the results file promises.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIELDS = {"what", "ours_s", "baseline_s", "ratio", "target", "met", "ours_runs_s"}


def test_bench_run_tiny(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--scale",
            "tiny",
            "--only",
            "feed_push,eigentrust,predict,post_score",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "what" in done.stdout and "ratio" in done.stdout
    document = json.loads(out.read_text())
    assert document["scale"] == "tiny"
    assert {"cores", "memory_gib"} <= set(document["machine"])
    results = document["results"]
    expected = {"feed_push_vs_to_sql", "feed_push_vs_copy", "eigentrust", "post_score"}
    if "predict" in document["skipped"]:
        assert "model" in document["skipped"]["predict"]
    else:
        expected.add("predict")
    assert set(results) == expected
    for result in results.values():
        assert set(result) >= FIELDS
        assert result["ours_s"] > 0 and result["baseline_s"] > 0
    assert results["eigentrust"]["scores_equal"] is True
    # every row's age, author maxima and post_score equal the pandas reference's
    assert results["post_score"]["values_equal"] is True
    assert results["post_score"]["rows_compared"] == results["post_score"]["posts"]
    if "predict" in results:
        assert results["predict"]["labels_equal"] is True


def run_dag(out: Path, *args: str) -> dict[str, dict[str, Any]]:
    """bench/dag.py's results at toy scale."""
    # a short work dir: PostgreSQL's socket path beside its data must fit in 107 bytes,
    # and a worker's tmp_path (/var/tmp/pytest-of-root/pytest-N/popen-gwK/...) may not
    work = Path(
        tempfile.mkdtemp(prefix="dag-", dir="/var/tmp" if Path("/var/tmp").is_dir() else None)
    )
    try:
        done = subprocess.run(
            [
                *(sys.executable, str(ROOT / "bench" / "dag.py"), *args, "--objects-per-hour", "1"),
                *("--out", str(out), "--work", str(work)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # exit 1 with a report only says a timing target was missed, which a smoke test does
    # not judge; exit 1 without one is a crash
    assert done.returncode in (0, 1) and out.exists(), done.stdout + done.stderr
    return json.loads(out.read_text())["results"]  # type: ignore[no-any-return]


def test_bench_dag_tiny(tmp_path: Path) -> None:
    results = run_dag(tmp_path / "dag.json", "--posts", "1500", "--ticks", "2")
    assert set(results) == {"full_dag", "empty_tick", "incremental_tick", "tick"}
    for result in results.values():
        assert result["failed_jobs"] == [], result
        assert result["ours_s"] > 0
    full = results["full_dag"]
    assert full["ticks"] == 2 and full["peak_memory_gib"] > 0
    assert full["processed"]["ingest"] == 2 and full["processed"]["feed"] == 2
    # nothing new in the empty tick: only ingest ran user code, and no JVM started
    assert results["empty_tick"]["processed"] == {"ingest": 1}
    assert results["empty_tick"]["jvms_started"] == 0
    incremental = results["incremental_tick"]
    assert incremental["added_posts"] > 0
    assert incremental["processed"]["features"] == 1 and incremental["processed"]["feed"] == 1
    assert incremental["recompute_processed"]["model"] == 1
    assert incremental["baseline_s"] > 0
