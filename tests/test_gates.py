"""The quality gates of ``make lint`` fail on a deliberately broken file of each kind."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pachlocal.spec import SpecError, load_spec_documents, parse_pipeline_spec

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ruff_rejects_unused_imports_unsorted_imports_and_print_in_library_code(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "lensfeed"
    pkg.mkdir()
    (pkg / "broken.py").write_text('import sys\nimport os\n\n\ndef f() -> None:\n    print("x")\n')
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    res = run(str(BIN / "ruff"), "check", "--no-cache", "lensfeed", cwd=tmp_path)
    assert res.returncode == 1
    for code in ("F401", "I001", "T201"):  # unused import, unsorted imports, print
        assert code in res.stdout, res.stdout
    assert run(str(BIN / "ruff"), "check", "--no-cache", "pachlocal", "lensfeed").returncode == 0


def test_ruff_format_check_rejects_unformatted_code(tmp_path: Path) -> None:
    (tmp_path / "ugly.py").write_text("x=[1,2 ,3]\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    res = run(str(BIN / "ruff"), "format", "--check", "--no-cache", "ugly.py", cwd=tmp_path)
    assert res.returncode == 1 and "1 file would be reformatted" in res.stdout


def test_mypy_strict_rejects_untyped_public_functions(tmp_path: Path) -> None:
    (tmp_path / "untyped.py").write_text("def add(a, b):\n    return a + b\n")
    res = run(str(BIN / "mypy"), "--strict", "--no-incremental", str(tmp_path / "untyped.py"))
    assert res.returncode == 1
    assert "Function is missing a type annotation" in res.stdout


def test_shellcheck_rejects_unquoted_variables(tmp_path: Path) -> None:
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    res = run(str(BIN / "shellcheck"), str(script))
    assert res.returncode == 1 and "SC2086" in res.stdout
    assert run(str(BIN / "shellcheck"), "create_secret.sh", ".ci/run").returncode == 0


def test_hadolint_rejects_unpinned_images_and_packages(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    res = run(str(BIN / "hadolint"), str(dockerfile))
    assert res.returncode == 1
    assert "DL3007" in res.stdout  # the latest tag
    assert "DL3008" in res.stdout  # an unpinned apt package
    assert run(str(BIN / "hadolint"), "images/pipelines/Dockerfile").returncode == 0


def test_engine_validator_rejects_a_broken_spec() -> None:
    text = (ROOT / "specs" / "feed.pipeline.json").read_text().replace('"glob"', '"glb"', 1)
    (doc,) = load_spec_documents(text, source="feed.pipeline.json")
    with pytest.raises(SpecError, match=r"input\.pfs\.glb: unknown field"):
        parse_pipeline_spec(doc)
