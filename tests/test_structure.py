"""The three parts and their one direction of dependency: the engine (pachlocal) knows
nothing of Lens, the library that runs inside pipelines (lensfeed, pipelines/) knows
nothing of the engine or the runner, and the local runner (lensrun) may use both."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from lensrun.demo import spec_files

ROOT = Path(__file__).resolve().parents[1]
#: package or folder -> the top-level modules it must never import
FORBIDDEN = {
    "pachlocal": {"lensfeed", "lensrun", "pipelines"},
    "lensfeed": {"pachlocal", "lensrun", "pipelines"},
    "pipelines": {"pachlocal", "lensrun"},
}


def imported_modules(source: str, filename: str = "<source>") -> set[str]:
    """Top-level names of every module ``source`` imports, at any depth (functions,
    ``TYPE_CHECKING`` blocks included); relative imports stay in their own package."""
    found = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def violations(part: str) -> list[str]:
    out = []
    for path in sorted((ROOT / part).rglob("*.py")):
        bad = imported_modules(path.read_text(), str(path)) & FORBIDDEN[part]
        out += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad)]
    return out


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_no_import_runs_against_the_direction(part: str) -> None:
    assert violations(part) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import pachlocal.engine", {"pachlocal"}),
        ("from lensrun.demo import run", {"lensrun"}),
        ("def f():\n    from pachlocal import cli\n", {"pachlocal"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lensrun\n",
            {"typing", "lensrun"},
        ),
        ("from . import sibling\nfrom .x import y", set()),
    ],
)
def test_the_checker_sees_every_kind_of_import(source: str, expected: set[str]) -> None:
    assert imported_modules(source) == expected


def test_a_violating_import_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lensfeed").mkdir()
    (tmp_path / "lensfeed" / "bad.py").write_text("from pachlocal.engine import Engine\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert violations("lensfeed") == ["lensfeed/bad.py imports pachlocal"]


def _spec(name: str, *repos: str) -> str:
    inputs = [{"pfs": {"repo": r, "glob": "/"}} for r in repos]
    node = inputs[0] if len(inputs) == 1 else {"cross": inputs}
    return json.dumps({"pipeline": {"name": name}, "input": node, "transform": {"cmd": ["true"]}})


def test_spec_order_names_a_cycle_instead_of_looping(tmp_path: Path) -> None:
    """``spec_files`` ordered specs by repeated passes; two specs reading each other made it
    loop forever. Pachyderm forbids the cycle: it is now an error naming it."""
    (tmp_path / "specs").mkdir()
    for name, repos in {"a": ("src",), "b": ("a", "c"), "c": ("b",)}.items():
        (tmp_path / "specs" / f"{name}.pipeline.json").write_text(_spec(name, *repos))
    with pytest.raises(ValueError, match=r"in a cycle: b reads c; c reads b"):
        spec_files(tmp_path)
    (tmp_path / "specs" / "c.pipeline.json").write_text(_spec("c", "a"))
    assert [doc["pipeline"]["name"] for _, doc in spec_files(tmp_path)] == ["a", "c", "b"]
