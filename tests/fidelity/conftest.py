"""Fixtures for the fidelity suite: the engine suite's ``pl`` and ``write``, plus the
directory of stand-in programs playing the part of each example's image.

An example's image runs its program from the image's ``WORKDIR``; pachlocal maps
``WORKDIR`` to the code root, so pointing the code root at ``programs/`` lets a spec
name its stand-in by a relative path (``python3 edges.py``), as the examples do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pachlocal.sandbox import detect
from tests.engine.conftest import pl, write

__all__ = ["isolated_datums", "pl", "programs", "write"]

PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture(autouse=True)
def programs(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in programs' directory, made every datum's working directory."""
    monkeypatch.setenv("PACHLOCAL_CODE_ROOT", str(PROGRAMS))
    return PROGRAMS


@pytest.fixture(scope="session")
def sandbox_mode(tmp_path_factory: pytest.TempPathFactory) -> str:
    """How this machine runs datums: ``namespace`` (a worker pod's view) or ``remap``."""
    return detect(tmp_path_factory.mktemp("probe")).mode


@pytest.fixture
def isolated_datums(sandbox_mode: str) -> None:
    """Skips a test whose spec needs a pod's view: a bare ``/pfs`` (``find /pfs``) or a
    private ``/tmp``. Path remapping rewrites ``/pfs/...`` only and shares ``/tmp``."""
    if sandbox_mode != "namespace":
        pytest.skip("the example's shell needs mount namespaces (root on Linux)")
