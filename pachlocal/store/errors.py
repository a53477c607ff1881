"""What the store raises, and the names and paths it accepts."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$")


class StoreError(Exception):
    """A request the store cannot satisfy; the message names the object."""


class NotFound(StoreError):
    """A repo, branch, commit, file, pipeline or job that does not exist."""


@dataclass(frozen=True)
class Entry:
    """One file of a commit: its path, content hash, size and writing datum."""

    path: str
    hash: str
    size: int
    datum: str = ""


@dataclass(frozen=True)
class Commit:
    """A commit row as stored."""

    repo: str
    id: str
    branch: str
    parent: str | None
    origin: str
    description: str
    started: float
    finished: float | None
    size: int
    error: str
    manifest: str | None
    provenance: dict[str, Any]


def new_id() -> str:
    """A commit or commit-set id: a UUIDv4 without dashes, as Pachyderm makes them."""
    return uuid.uuid4().hex


def clean_path(path: str) -> str:
    """Normalise a PFS path to ``/a/b``; reject ``..`` and control characters."""
    if any(ord(c) < 32 for c in path):
        raise StoreError(f"path {path!r}: control characters are not allowed")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StoreError(f"path {path!r}: '..' is not allowed")
    return "/" + "/".join(parts)


def check_name(kind: str, name: str) -> str:
    """Validate a repo or branch name the way Pachyderm does (letters, digits, ``_``, ``-``)."""
    if not NAME_RE.match(name):
        raise StoreError(
            f"{kind} name {name!r} is invalid: use letters, digits, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


# -- crash injection -----------------------------------------------------------------------
