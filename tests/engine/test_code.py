"""The code root is found from the spec alone: the files its ``cmd`` names, never a
folder name this project happens to use."""

from __future__ import annotations

from pathlib import Path

import pytest

from pachlocal.code import code_paths, find_code_root


def spec(*cmd: str, stdin: tuple[str, ...] = ()) -> dict[str, object]:
    return {"transform": {"cmd": list(cmd), "stdin": list(stdin)}}


def test_code_paths_are_the_relative_files_of_cmd_and_stdin() -> None:
    s = spec(
        "python3",
        "jobs/score.py",
        "--in",
        "/pfs/in",
        "-c",
        "echo hi > /pfs/out/x",
        stdin=("python3 run.py /pfs/in", "cp -r /pfs/a /pfs/out", "x=$HOME/a.sh"),
    )
    assert code_paths(s) == ["jobs/score.py", "run.py"]


def test_the_code_root_is_the_nearest_directory_holding_every_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PACHLOCAL_CODE_ROOT", raising=False)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "score.py").write_text("")
    specs = tmp_path / "deploy" / "specs"
    specs.mkdir(parents=True)
    assert find_code_root(spec("python3", "jobs/score.py"), specs) == tmp_path
    # a second named file that exists only higher up moves the root up with it
    (specs / "jobs").mkdir()
    (specs / "jobs" / "score.py").write_text("")
    assert find_code_root(spec("python3", "jobs/score.py"), specs) == specs
    assert find_code_root(spec("sh", "jobs/score.py", "tools/x.sh"), specs) == specs
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "x.sh").write_text("")
    assert find_code_root(spec("sh", "jobs/score.py", "tools/x.sh"), specs) == tmp_path


def test_without_a_named_file_the_root_is_the_spec_directory_and_the_setting_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PACHLOCAL_CODE_ROOT", raising=False)
    assert find_code_root(spec("python3", "-m", "pkg.main"), tmp_path) == tmp_path
    assert (
        find_code_root(spec("python3", "x.py"), tmp_path, default=tmp_path / "d") == tmp_path / "d"
    )
    assert find_code_root(spec("python3", "missing/x.py"), tmp_path) == tmp_path
    monkeypatch.setenv("PACHLOCAL_CODE_ROOT", str(tmp_path / "elsewhere"))
    assert find_code_root(spec("python3", "-m", "pkg"), tmp_path) == tmp_path / "elsewhere"
