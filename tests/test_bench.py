"""Smoke test of the benchmark entry point at toy scale: it runs and writes its JSON.

No timing is asserted: only that each comparison ran, agreed with its baseline,
and reported the fields the results file promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
            "feed_push,eigentrust,predict",
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
    expected = {"feed_push_vs_to_sql", "feed_push_vs_copy", "eigentrust"}
    if "predict" in document["skipped"]:
        assert "model" in document["skipped"]["predict"]
    else:
        expected.add("predict")
    assert set(results) == expected
    for result in results.values():
        assert set(result) >= FIELDS
        assert result["ours_s"] > 0 and result["baseline_s"] > 0
    assert results["eigentrust"]["scores_equal"] is True
    if "predict" in results:
        assert results["predict"]["labels_equal"] is True
