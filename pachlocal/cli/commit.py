"""``pachlocal start|finish|list|inspect|wait|squash|delete commit``."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime
from typing import Any

from ..diff import bytes_size
from ..engine import Engine
from ..store import Commit, StoreError
from .common import PROJECT, RAW, A, ago, command, commit_set_id, emit
from .job import WAIT_ARGS, wait_set


def commit_json(e: Engine, c: Commit) -> dict[str, Any]:
    """A commit the way ``pachctl inspect commit --raw`` shows it, plus pachlocal provenance."""
    prov = c.provenance
    direct = [
        {
            "repo": {"name": i["repo"], "type": "user", "project": {"name": PROJECT}},
            "id": i["commit"],
            "branch": {"name": i["branch"]},
        }
        for i in prov.get("inputs", [])
        if i.get("commit")
    ]
    return {
        "commit": {
            "repo": {"name": c.repo, "type": "user", "project": {"name": PROJECT}},
            "id": c.id,
            "branch": {"name": c.branch},
        },
        "origin": {"kind": c.origin},
        "description": c.description,
        "parent_commit": {"id": c.parent} if c.parent else None,
        "started": datetime.fromtimestamp(c.started, UTC).isoformat(),
        "finished": datetime.fromtimestamp(c.finished, UTC).isoformat() if c.finished else None,
        "direct_provenance": direct,
        "size_bytes_upper_bound": c.size,
        "error": c.error,
        "provenance": prov,
    }


@command("start", "commit", write=True, args=[A("branch"), A("-m", "--message", default="")])
def start_commit(a: argparse.Namespace, e: Engine) -> int:
    repo, _, branch = a.branch.partition("@")
    print(e.start_commit(repo, branch or "master", a.message))
    return 0


@command("finish", "commit", write=True, args=[A("commit")])
def finish_commit(a: argparse.Namespace, e: Engine) -> int:
    repo, _, ref = a.commit.partition("@")
    commit_id = e.store.open_commit(repo, ref or "master") or ref
    e.finish_commit(repo, commit_id)
    e.run_pending()
    return 0


_LIST_COMMIT_ARGS = [
    A("target", nargs="?", help="repo, repo@branch or a commit-set id"),
    RAW,
]


def _listed_commits(e: Engine, target: str) -> list[Commit]:
    """A commit set's commits (a bare 32-character id), a branch's history (``repo@ref``),
    or every commit of a repo (or of all repos)."""
    if target and "@" not in target and not e.store.repo_exists(target) and len(target) == 32:
        commits = e.store.list_commits(commit_id=target)
        if not commits:
            raise StoreError(f"commit set {target} not found")
        return commits
    if "@" in target:
        c = e.store.resolve(target)
        history = [c]
        while c.parent:
            c = e.store.get_commit(c.repo, c.parent)
            history.append(c)
        return history
    return e.store.list_commits(repo=target or None)


@command("list", "commit", write=False, args=_LIST_COMMIT_ARGS)
def list_commit(a: argparse.Namespace, e: Engine) -> int:
    commits = _listed_commits(e, a.target or "")
    rows = [
        [
            PROJECT,
            c.repo,
            c.id,
            ago(c.finished) if c.finished else "-",
            bytes_size(c.size),
            c.origin,
            c.description or (f"error: {c.error}" if c.error else ""),
        ]
        for c in commits
    ]
    emit(
        a.raw,
        [commit_json(e, c) for c in commits],
        ["PROJECT", "REPO", "COMMIT", "FINISHED", "SIZE", "ORIGIN", "DESCRIPTION"],
        rows,
    )
    return 0


@command("inspect", "commit", write=False, args=[A("commit"), RAW])
def inspect_commit(a: argparse.Namespace, e: Engine) -> int:
    c = e.store.resolve(a.commit)
    if a.raw:
        print(json.dumps(commit_json(e, c), indent=2, sort_keys=True))
        return 0
    prov = c.provenance
    lines = [
        f"Commit: {c.repo}@{c.id}",
        f"Original Branch: {c.branch}",
        f"Origin: {c.origin}",
        f"Parent: {c.parent or '<none>'}",
        f"Started: {ago(c.started)}",
        f"Finished: {ago(c.finished)}",
        f"Size: {bytes_size(c.size)}",
    ]
    if c.error:
        lines.append(f"Error: {c.error}")
    for i in prov.get("inputs", []):
        lines.append(
            f"Provenance: {i['repo']}@{i['branch']}={i['commit'] or '<empty>'} (input {i['name']})"
        )
    if prov.get("pipeline"):
        lines.append(
            f"Pipeline: {prov['pipeline']} v{prov['spec_version']} spec {prov['spec_fingerprint'][:12]}"
            f" image {prov['image']} code {prov['git_revision'] or 'unknown'}"
        )
    print("\n".join(lines))
    return 0


def _waited_set(e: Engine, ref: str) -> str:
    """The commit set ``wait commit`` waits for: an id as given; for ``repo@branch``, the
    newest job's set when the branch is a pipeline's output (its head is open on pachd),
    else the branch head's."""
    repo, at, rest = ref.partition("@")
    if not at or re.fullmatch(r"[0-9a-f]{32}", rest):
        return rest or ref
    branch = re.split(r"[\^~]", rest, maxsplit=1)[0]
    if branch == rest and any(
        p["name"] == repo and p["spec"]["outputBranch"] == branch for p in e.pipelines()
    ):
        jobs = e.jobs(repo)
        if jobs:
            return str(jobs[0]["id"])
    return e.store.resolve(ref).id


@command("wait", "commit", write=True, args=WAIT_ARGS)
def wait_commit(a: argparse.Namespace, e: Engine) -> int:
    set_id = _waited_set(e, a.commit)
    if not e.store.list_commits(commit_id=set_id) and not e.jobs(set_id=set_id):
        raise StoreError(f"commit set {set_id} not found")
    return wait_set(e, set_id, a.timeout)


@command("squash", "commit", write=True, args=[A("commit", help="a commit set id")])
def squash_commit(a: argparse.Namespace, e: Engine) -> int:
    for removed in e.squash_commit_set(commit_set_id(a.commit)):
        print(f"squashed {removed}")
    return 0


@command("delete", "commit", write=True, args=[A("commit", help="a commit set id")])
def delete_commit(a: argparse.Namespace, e: Engine) -> int:
    for removed in e.squash_commit_set(commit_set_id(a.commit), drop=True):
        print(f"deleted {removed}")
    return 0
