"""The code a pipeline runs: where the image's working directory maps to on this machine,
and which revision of it a job ran.

On a cluster the code is in the spec's image, and the transform's ``cmd`` names it
relative to the image's working directory (``python3 pipelines/features.py ...``).
Here the *code root* stands in for that directory. It is found from the spec alone:
the nearest directory, at or above the spec file, holding every relative path the
``cmd`` and ``stdin`` name (else the current directory); ``PACHLOCAL_CODE_ROOT``
overrides the search.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: Suffixes of a script named without a directory (``python3 run.py``).
_SCRIPT_SUFFIXES = (".py", ".sh", ".R", ".jl", ".js", ".rb", ".pl")


def _is_code_path(token: str) -> bool:
    """A relative file path: no flag, no absolute or variable path, no shell syntax."""
    if not token or token[0] in "-/$~." or any(c in token for c in " =:'\"*?;|&<>"):
        return False
    return "/" in token or token.endswith(_SCRIPT_SUFFIXES)


def code_paths(spec: Mapping[str, Any]) -> list[str]:
    """The relative paths a spec's ``transform.cmd`` and ``transform.stdin`` name."""
    transform = spec.get("transform") or {}
    tokens: list[str] = list(transform.get("cmd") or [])
    for line in transform.get("stdin") or []:
        try:
            tokens.extend(shlex.split(line))
        except ValueError:
            continue
    return sorted({t for t in tokens if _is_code_path(t)})


def _upwards(start: Path) -> Iterator[Path]:
    yield start
    yield from start.parents


def find_code_root(spec: Mapping[str, Any], start: Path, *, default: Path | None = None) -> Path:
    """The directory a spec's working directory maps to (see the module docstring).

    Args:
        spec: the pipeline spec (raw or parsed).
        start: the directory holding the spec file (the current directory for stdin).

    Without a relative path in the ``cmd`` (``python3 -m pkg``, an interpreter on
    ``PATH``), or when no directory holds them all, the code root is ``default``
    (``pachctl``'s current directory, for the CLI), else ``start``.
    """
    if os.environ.get("PACHLOCAL_CODE_ROOT"):
        return Path(os.environ["PACHLOCAL_CODE_ROOT"]).resolve()
    start = start.resolve()
    fallback = (default or start).resolve()
    paths = code_paths(spec)
    if not paths:
        return fallback
    for d in _upwards(start):
        if all((d / p).exists() for p in paths):
            return d
    return fallback


def code_version(code_root: str) -> str:
    """The git revision of a code root (``+dirty`` when its tree had changes), or ``""``
    where it is not a git checkout."""
    try:
        rev = subprocess.run(
            ["git", "-C", code_root, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", code_root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev + ("+dirty" if dirty else "")
