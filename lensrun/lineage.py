"""Audit helpers: from a feed commit (or a feed row) back to the export objects.

These read a pachlocal state directory; on a Pachyderm cluster the same walk is
``pachctl inspect commit --raw`` (``direct_provenance``) down to ``ingest`` and
its ``/_manifest/<tick>.json`` files. The walks that read the store are kept
apart from the pure functions that shape what they read (:func:`render_tree`,
:func:`pick_feed_pair`, :func:`feed_moves`), so those are testable on hand-made
inputs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lensfeed.feed import ENGAGEMENT_WEIGHTS
from pachlocal.store import Commit, Store

POSTS_DIR = "/public_profile_post/"
FEED_FILE = "/feed.csv"
PREDICTIONS_FILE = "/predictions.parquet"

Key = tuple[str, str]  # (repo, commit id)


def top_of_feed(dsn: str, strategy: str, limit: int) -> list[tuple[str, float]]:
    """The best ``limit`` rows of a strategy's feed, as the feed server reads them."""
    from lensfeed.pg import connect

    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT post_id, v FROM feed WHERE strategy_name = %s ORDER BY v DESC, post_id LIMIT %s",
            (strategy, limit),
        ).fetchall()
    return [(str(r[0]), float(r[1])) for r in rows]


# -- provenance ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One commit of a provenance graph: what to say about it, the commits it was
    computed from (in spec order, repeats allowed) and lines printed under it."""

    label: str
    inputs: tuple[Key, ...] = ()
    notes: tuple[str, ...] = field(default=())


def render_tree(graph: Mapping[Key, Node], root: Key) -> list[str]:
    """The provenance tree of ``root``, one line per commit, each commit expanded once.

    An input read twice by one job (two globs over one repo) is listed once; a commit
    reached again by another path is a one-line back-reference ``(see above)``.

    Args:
        graph: every commit reachable from ``root``; a missing one prints as not found.
        root: ``(repo, commit id)`` to start from.

    Returns:
        The lines, indented two spaces per level, inputs marked ``<-``.
    """
    lines: list[str] = []
    seen: set[Key] = set()

    def visit(key: Key, depth: int) -> None:
        pad = "  " * depth + ("<- " if depth else "")
        ref = f"{key[0]}@{key[1]}"
        if key in seen:
            lines.append(f"{pad}{ref} (see above)")
            return
        seen.add(key)
        node = graph.get(key, Node("not found"))
        lines.append(f"{pad}{ref} ({node.label})")
        for child in dict.fromkeys(node.inputs):
            visit(child, depth + 1)
        lines.extend("  " * (depth + 1) + note for note in node.notes)

    visit(root, 0)
    return lines


def _label(commit: Commit) -> str:
    prov = commit.provenance
    if not prov.get("pipeline"):
        return f"{commit.origin.lower()} commit"
    code = (prov.get("git_revision") or "unknown")[:12]
    error = f", ERROR {commit.error}" if commit.error else ""
    return (
        f"pipeline {prov['pipeline']} v{prov['spec_version']}, image {prov['image']}, "
        f"code {code}{error}"
    )


def provenance_graph(store: Store, repo: str, commit_id: str) -> dict[Key, Node]:
    """Every commit ``repo@commit_id`` was computed from, each read once."""
    graph: dict[Key, Node] = {}
    stack: list[Key] = [(repo, commit_id)]
    while stack:
        key = stack.pop()
        if key in graph:
            continue
        commit = store.find_commit(*key)
        if commit is None:
            graph[key] = Node("not found")
            continue
        inputs = tuple(
            (i["repo"], i["commit"]) for i in commit.provenance.get("inputs", []) if i.get("commit")
        )
        notes = tuple(_manifest_summary(store, commit)) if key[0] == "ingest" else ()
        graph[key] = Node(_label(commit), inputs, notes)
        stack.extend(inputs)
    return graph


def _manifests(store: Store, commit: Commit) -> dict[str, list[dict[str, Any]]]:
    files = store.manifest(commit)
    return {
        path.rsplit("/", 1)[1].removesuffix(".json"): json.loads(store.objects.read(entry.hash))
        for path, entry in sorted(files.items())
        if path.startswith("/_manifest/")
    }


def _manifest_summary(store: Store, commit: Commit) -> Iterator[str]:
    manifests = _manifests(store, commit)
    if not manifests:
        return
    total = sum(len(m) for m in manifests.values())
    newest = max(manifests)
    yield f"export objects: {total} accepted over {len(manifests)} ticks; newest tick {newest}:"
    for entry in manifests[newest][:5]:
        yield f"  {entry['object']} (generation {entry['generation']}, {entry['rows']} rows)"
    if len(manifests[newest]) > 5:
        yield f"  ... {len(manifests[newest]) - 5} more"


def describe(store: Store, repo: str, commit_id: str) -> list[str]:
    """The provenance tree of a commit, one line per commit, down to export objects."""
    return render_tree(provenance_graph(store, repo, commit_id), (repo, commit_id))


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


# -- the feed ------------------------------------------------------------------------------


def post_details(
    store: Store, feed_commit: str, post_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Label, P(YES), engagement and posting time of some posts, from the predictions the
    feed commit was computed from (empty when that commit or file is missing)."""
    commit = store.find_commit("feed", feed_commit)
    inputs = commit.provenance.get("inputs", []) if commit else []
    predict = next((i for i in inputs if i.get("repo") == "predict" and i.get("commit")), None)
    source = store.find_commit("predict", predict["commit"]) if predict else None
    entry = store.manifest(source).get(PREDICTIONS_FILE) if source else None
    if entry is None:
        return {}
    columns = ["post_id", "label", "p_yes", "block_timestamp", *ENGAGEMENT_WEIGHTS]
    table = pq.read_table(io.BytesIO(store.objects.read(entry.hash)), columns=columns)
    table = table.filter(
        pc.is_in(table["post_id"], value_set=pa.array(list(post_ids), pa.string()))
    )
    details = {}
    for row in table.to_pylist():
        engagement = sum(w * (row[c] or 0) for c, w in ENGAGEMENT_WEIGHTS.items())
        details[row["post_id"]] = {**row, "engagement": engagement}
    return details


def feed_history(store: Store, head: str) -> list[tuple[str, str | None]]:
    """``(commit id, content hash of feed.csv or None)`` of ``head`` and its ancestors,
    newest first."""
    history: list[tuple[str, str | None]] = []
    commit: Commit | None = store.get_commit("feed", head)
    while commit is not None:
        entry = store.manifest(commit).get(FEED_FILE)
        history.append((commit.id, entry.hash if entry else None))
        commit = store.find_commit("feed", commit.parent) if commit.parent else None
    return history


def pick_feed_pair(history: Sequence[tuple[str, str | None]]) -> tuple[str, str] | None:
    """The newest feed and the most recent earlier feed whose rows differ from it.

    Args:
        history: ``(commit id, feed.csv content hash or None)``, newest first; a commit
            without a feed (before the first model) is no feed and is passed over.

    Returns:
        ``(new, old)`` commit ids, or None when fewer than two different feeds exist.
    """
    feeds = [(commit, digest) for commit, digest in history if digest]
    if not feeds:
        return None
    new, newest = feeds[0]
    return next(((new, old) for old, digest in feeds[1:] if digest != newest), None)


@dataclass(frozen=True)
class FeedMoves:
    """How the feed's order changed; positions count from 1, the top of the feed."""

    entered: list[tuple[str, int]]  # (post_id, new position)
    left: list[tuple[str, int]]  # (post_id, old position)
    moved: list[tuple[str, int, int]]  # (post_id, old position, new position)
    unchanged: int


def feed_positions(feed_csv: bytes) -> dict[str, int]:
    """``post_id -> position`` (1 = largest ``v``; ties by post_id) of a ``feed.csv``."""
    rows = list(csv.DictReader(io.StringIO(feed_csv.decode())))
    rows.sort(key=lambda r: (-float(r["v"]), r["post_id"]))
    return {r["post_id"]: i for i, r in enumerate(rows, start=1)}


def feed_moves(old_csv: bytes, new_csv: bytes) -> FeedMoves:
    """The posts that entered, left or changed position between two ``feed.csv`` files.

    Entered posts are listed top first, left ones by their old position, moved ones by
    the size of the move (largest first, then new position).
    """
    old, new = feed_positions(old_csv), feed_positions(new_csv)
    entered = sorted(((p, n) for p, n in new.items() if p not in old), key=lambda x: x[1])
    left = sorted(((p, o) for p, o in old.items() if p not in new), key=lambda x: x[1])
    moved = sorted(
        ((p, old[p], n) for p, n in new.items() if p in old and old[p] != n),
        key=lambda x: (-abs(x[1] - x[2]), x[2]),
    )
    unchanged = sum(1 for p, n in new.items() if old.get(p) == n)
    return FeedMoves(entered, left, moved, unchanged)


def feed_csv(store: Store, commit_id: str) -> bytes:
    """The bytes of ``feed.csv`` in a feed commit."""
    return store.objects.read(store.manifest(store.get_commit("feed", commit_id))[FEED_FILE].hash)
