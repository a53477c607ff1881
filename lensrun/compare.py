"""Compare what two pachlocal state directories hold: every repo's ``master``, commit by
commit, oldest first, file by file (by content hash).

This is how a change that must not change any output is checked (a restructuring, a
dependency bump): run ``make run``'s driver on the same inputs before and after, each
into its own ``PACHLOCAL_HOME``, then ``python -m lensrun compare A B``. Commit ids are
random, so the files that name commits (the feed's ``feed_meta.json``, the model card,
ingest's per-tick manifests, which also carry the emulator's upload times) differ
between any two runs; :data:`RUN_SPECIFIC` lists them, and they are skipped unless
``--all`` is given.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pachlocal.store import Store

#: Files that carry commit ids or upload times: they differ between any two runs.
RUN_SPECIFIC = ("feed:/feed_meta.json", "model:/model_card.json", "ingest:/_manifest/*")


@dataclass(frozen=True)
class Snapshot:
    """One commit's files: ``path -> content hash``."""

    origin: str
    files: dict[str, str]


def history(home: Path) -> dict[str, list[Snapshot]]:
    """Every repo's ``master`` history in a state directory, oldest commit first."""
    store = Store(home, readonly=True)
    try:
        out = {}
        for row in store.list_repos():
            repo = row["name"]
            chain = []
            head = store.branch_head(repo, "master")
            commit = store.find_commit(repo, head) if head else None
            while commit is not None:
                files = {p: e.hash for p, e in store.manifest(commit).items()}
                chain.append(Snapshot(commit.origin, files))
                commit = store.find_commit(repo, commit.parent) if commit.parent else None
            out[repo] = chain[::-1]
        return out
    finally:
        store.close()


def _skipped(repo: str, path: str, ignore: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(f"{repo}:{path}", pattern) for pattern in ignore)


def differences(a: Path, b: Path, ignore: Sequence[str] = RUN_SPECIFIC) -> list[str]:
    """What differs between the two state directories, one line each (empty: the same)."""
    left, right = history(a), history(b)
    out = [f"repo {r}: only in {a if r in left else b}" for r in sorted(set(left) ^ set(right))]
    for repo in sorted(set(left) & set(right)):
        if len(left[repo]) != len(right[repo]):
            out.append(f"repo {repo}: {len(left[repo])} commits against {len(right[repo])}")
            continue
        for n, (x, y) in enumerate(zip(left[repo], right[repo], strict=True), 1):
            where = f"{repo} commit {n}/{len(left[repo])}"
            paths = sorted(set(x.files) | set(y.files))
            for path in paths:
                if _skipped(repo, path, ignore) or x.files.get(path) == y.files.get(path):
                    continue
                if path not in x.files or path not in y.files:
                    out.append(f"{where}: {path} only in {a if path in x.files else b}")
                else:
                    out.append(f"{where}: {path} differs")
    return out
