"""pachlocal is a distribution of its own: ``pip install ./pachlocal`` gives the engine and
its CLI, versioned by itself, with nothing of the Lens project."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import pachlocal

ENGINE = Path(pachlocal.__file__).resolve().parent
ROOT = ENGINE.parent
PROJECT = tomllib.loads((ENGINE / "pyproject.toml").read_text())["project"]
SETUPTOOLS = tomllib.loads((ENGINE / "pyproject.toml").read_text())["tool"]["setuptools"]


def sources() -> list[Path]:
    """The engine's modules, without build leftovers."""
    skip = {"build", "__pycache__"}
    return sorted(
        p
        for p in ENGINE.rglob("*.py")
        if not skip & set(p.relative_to(ENGINE).parts) and ".egg-info" not in str(p)
    )


def test_every_package_of_the_engine_is_in_its_distribution() -> None:
    found = sorted(
        ".".join(("pachlocal", *p.parent.relative_to(ENGINE).parts))
        for p in sources()
        if p.name == "__init__.py"
    )
    assert sorted(SETUPTOOLS["packages"]) == found


def test_the_engine_declares_every_third_party_module_it_imports() -> None:
    stdlib = set(sys.stdlib_module_names)
    imported = set()
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {a.name.partition(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    third_party = imported - stdlib - {"pachlocal", "__future__"}
    declared = {Requirement(r).name.lower() for r in PROJECT["dependencies"]}
    dists = packages_distributions()
    missing = {
        m: dists.get(m) for m in third_party if not {d.lower() for d in dists.get(m, [])} & declared
    }
    assert missing == {}


def test_the_pinned_requirements_satisfy_the_engine_s_dependencies() -> None:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower()] = next(iter(req.specifier)).version
    for text in PROJECT["dependencies"]:
        req = Requirement(text)
        assert req.name.lower() in pins, f"{req.name} is not pinned in requirements.txt"
        assert req.specifier.contains(pins[req.name.lower()]), (req, pins[req.name.lower()])


def test_the_engine_is_its_own_distribution_with_its_own_version() -> None:
    assert version("pachlocal") == pachlocal.__version__
    assert packages_distributions()["pachlocal"] == ["pachlocal"]  # the project does not ship it


@pytest.mark.slow
def test_a_wheel_of_the_engine_holds_the_engine_only(tmp_path: Path) -> None:
    """The wheel pip builds from ``pachlocal/`` (build isolation, as ``make`` installs it),
    built from a copy: setuptools writes ``build/`` beside the sources it builds."""
    tree = tmp_path / "src"
    shutil.copytree(
        ENGINE, tree, ignore=shutil.ignore_patterns("build", "__pycache__", "*.egg-info")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(tree), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("pachlocal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = sorted(n for n in names if n.endswith(".py"))
    assert modules == [f"pachlocal/{p.relative_to(ENGINE).as_posix()}" for p in sources()]
    assert not [
        n
        for n in names
        if n.split("/")[0] not in ("pachlocal", wheel.name.rsplit("-", 3)[0] + ".dist-info")
    ]
    assert f"pachlocal-{pachlocal.__version__}-" in wheel.name
