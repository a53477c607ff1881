"""Audit helpers: from a feed commit (or a feed row) back to the export objects.

These read a pachlocal state directory; on a Pachyderm cluster the same walk is
``pachctl inspect commit --raw`` (``direct_provenance``) down to ``ingest`` and
its ``/_manifest/<tick>.json`` files.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pachlocal.diff import FileRef, diff_listings, render_name_only, render_row_diff, row_diff
from pachlocal.store import Commit, Store

POSTS_DIR = "/public_profile_post/"


def top_of_feed(dsn: str, strategy: str, limit: int) -> list[tuple[str, float]]:
    """The best ``limit`` rows of a strategy's feed, as the feed server reads them."""
    from lensfeed.pg import connect

    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT post_id, v FROM feed WHERE strategy_name = %s ORDER BY v DESC, post_id LIMIT %s",
            (strategy, limit),
        ).fetchall()
    return [(str(r[0]), float(r[1])) for r in rows]


def _walk(
    store: Store, repo: str, commit_id: str, depth: int, seen: set[tuple[str, str]]
) -> Iterator[str]:
    commit = store.get_commit(repo, commit_id)
    prov = commit.provenance
    pad = "  " * depth + ("<- " if depth else "")
    if prov.get("pipeline"):
        yield (
            f"{pad}{repo}@{commit.id} (pipeline {prov['pipeline']} v{prov['spec_version']}, "
            f"image {prov['image']}, code {prov['git_revision'] or 'unknown'}"
            f"{', ERROR ' + commit.error if commit.error else ''})"
        )
    else:
        yield f"{pad}{repo}@{commit.id} ({commit.origin.lower()} commit)"
    if (repo, commit.id) in seen:
        return
    seen.add((repo, commit.id))
    for inp in prov.get("inputs", []):
        if inp.get("commit"):
            yield from _walk(store, inp["repo"], inp["commit"], depth + 1, seen)
    if repo == "ingest":
        yield from _manifest_summary(store, commit, depth + 1)


def _manifests(store: Store, commit: Commit) -> dict[str, list[dict[str, Any]]]:
    files = store.manifest(commit)
    return {
        path.rsplit("/", 1)[1].removesuffix(".json"): json.loads(store.objects.read(entry.hash))
        for path, entry in sorted(files.items())
        if path.startswith("/_manifest/")
    }


def _manifest_summary(store: Store, commit: Commit, depth: int) -> Iterator[str]:
    manifests = _manifests(store, commit)
    if not manifests:
        return
    total = sum(len(m) for m in manifests.values())
    newest = max(manifests)
    pad = "  " * depth
    yield f"{pad}export objects: {total} accepted over {len(manifests)} ticks; newest tick {newest}:"
    for entry in manifests[newest][:5]:
        yield f"{pad}  {entry['object']} (generation {entry['generation']}, {entry['rows']} rows)"
    if len(manifests[newest]) > 5:
        yield f"{pad}  ... {len(manifests[newest]) - 5} more"


def describe(store: Store, repo: str, commit_id: str) -> list[str]:
    """The provenance tree of a commit, one line per commit, down to export objects."""
    return list(_walk(store, repo, commit_id, 0, set()))


def ingest_commit_of(store: Store, repo: str, commit_id: str) -> Commit | None:
    """The ``ingest`` commit a commit was (transitively) computed from."""
    stack = [(repo, commit_id)]
    while stack:
        r, c = stack.pop()
        if r == "ingest":
            return store.get_commit(r, c)
        for inp in store.get_commit(r, c).provenance.get("inputs", []):
            if inp.get("commit"):
                stack.append((inp["repo"], inp["commit"]))
    return None


def export_objects_for_post(store: Store, repo: str, commit_id: str, post_id: str) -> list[str]:
    """The export objects (``gs://...``) that delivered ``post_id`` to a commit's inputs.

    Args:
        store: the pachlocal store.
        repo: e.g. ``feed``; commit_id: one of its commits.
        post_id: a row of the feed.

    Returns:
        The objects whose ingested partition holds that post, oldest first.
    """
    ingest = ingest_commit_of(store, repo, commit_id)
    if ingest is None:
        return []
    by_path = {e["path"]: e["object"] for m in _manifests(store, ingest).values() for e in m}
    found = []
    for path, entry in sorted(store.manifest(ingest).items()):
        if path.startswith(POSTS_DIR) and path.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(store.objects.read(entry.hash)), columns=["post_id"])
            if pc.any(pc.equal(table["post_id"], post_id)).as_py():
                found.append(by_path.get(path, path))
    return found


def feed_diff(store: Store, head: str, limit: int = 5) -> list[str]:
    """Name-only and row-level diff of ``feed.csv`` between a feed commit and its parent."""
    new = store.get_commit("feed", head)
    if new.parent is None:
        return ["(first feed commit: nothing to compare)"]
    old = store.get_commit("feed", new.parent)

    def refs(commit: Commit) -> dict[str, FileRef]:
        return {p: FileRef(p, e.hash, e.size) for p, e in store.manifest(commit).items()}

    new_files, old_files = refs(new), refs(old)
    changes = diff_listings(new_files, old_files)
    lines = render_name_only(changes).splitlines()
    if "/feed.csv" in new_files and "/feed.csv" in old_files:
        rd = row_diff(
            store.objects.read(old_files["/feed.csv"].hash),
            store.objects.read(new_files["/feed.csv"].hash),
            "csv",
            ["post_id"],
            limit=limit,
        )
        lines += render_row_diff("/feed.csv", rd).splitlines()
    return lines
