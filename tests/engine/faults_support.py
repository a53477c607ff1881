"""Helpers shared by the fault-injection tests (``test_faults*.py``): running ``pachlocal``
against a second state directory, and what every case checks a user would see: a
one-line error, no scratch left behind, no half commit, a clean ``fsck``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import Pachlocal, Result

Write = Callable[[str, str | bytes], Path]


class At(Pachlocal):
    """``pachlocal`` in-process against another state directory (say, a reference run)."""

    def __call__(self, *args: str, ok: bool = True) -> Result:
        old = os.environ.get("PACHLOCAL_HOME")
        os.environ["PACHLOCAL_HOME"] = str(self.home)
        try:
            return super().__call__(*args, ok=ok)
        finally:
            if old is None:
                del os.environ["PACHLOCAL_HOME"]
            else:
                os.environ["PACHLOCAL_HOME"] = old


def one_line_error(res: Result, *fragments: str) -> str:
    """The command failed with exactly one ``pachlocal: ...`` line naming every fragment."""
    assert res.rc == 1, (res.rc, res.err)
    assert "Traceback" not in res.err
    lines = res.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pachlocal: "), res.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def leftovers(home: Path) -> list[str]:
    """Scratch and upload staging left in the state directory (none after any command)."""
    return sorted(
        str(p.relative_to(home))
        for d in ("tmp", "work")
        if (home / d).exists()
        for p in (home / d).rglob("*")
        if not p.is_dir()
    )


def assert_consistent(p: Pachlocal) -> None:
    """No open or half commit visible, ``fsck`` clean, no scratch left behind."""
    commits = p("list", "commit", "--raw").json()
    assert [c["commit"]["id"] for c in commits if not c["finished"]] == []
    res = p("fsck", ok=False)
    assert (res.rc, res.out) == (0, ""), res.err
    assert leftovers(p.home) == []


def pipeline_spec(name: str, script: str, glob: str = "/*", **env: str) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "transform": {"cmd": ["sh", "-c", script], "env": env},
        "input": {"pfs": {"repo": "in", "glob": glob}},
    }
