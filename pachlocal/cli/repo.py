"""``pachlocal create|delete|list repo`` and ``create|delete|list branch``."""

from __future__ import annotations

import argparse
import json

from ..diff import bytes_size
from ..engine import Engine, EngineError
from .common import PROJECT, RAW, A, ago, command, emit, parse_branch_ref


@command("create", "repo", write=True, args=[A("repo"), A("-d", "--description", default="")])
def create_repo(a: argparse.Namespace, e: Engine) -> int:
    e.store.create_repo(a.repo, description=a.description)
    return 0


@command(
    "delete",
    "repo",
    write=True,
    args=[
        A("repo"),
        A("-f", "--force", action="store_true", help="delete it even if pipelines read it"),
    ],
)
def delete_repo(a: argparse.Namespace, e: Engine) -> int:
    if any(p["name"] == a.repo for p in e.pipelines()):
        raise EngineError(f"repo {a.repo} is the output of a pipeline: delete the pipeline instead")
    e.store.require_repo(a.repo)
    readers = sorted(p["name"] for p in e.pipelines() if e.reads(p["spec"], a.repo))
    if readers and not a.force:
        raise EngineError(
            f"cannot delete repo {a.repo}: pipeline(s) {', '.join(readers)} read it "
            "(delete them first, or --force)"
        )
    e.store.delete_repo(a.repo)
    return 0


@command("list", "repo", write=False, args=[RAW])
def list_repo(a: argparse.Namespace, e: Engine) -> int:
    rows, data = [], []
    for r in e.store.list_repos():
        head = (
            e.store.branch_head(r["name"], "master")
            if e.store.branch_exists(r["name"], "master")
            else None
        )
        size = e.store.get_commit(r["name"], head).size if head else 0
        rows.append([PROJECT, r["name"], ago(r["created"]), bytes_size(size), r["description"]])
        data.append(
            {
                "name": r["name"],
                "created": r["created"],
                "size_bytes": size,
                "description": r["description"],
                "kind": r["kind"],
            }
        )
    emit(a.raw, data, ["PROJECT", "NAME", "CREATED", "SIZE (MASTER)", "DESCRIPTION"], rows)
    return 0


@command("list", "branch", write=False, args=[A("repo"), RAW])
def list_branch(a: argparse.Namespace, e: Engine) -> int:
    rows = [
        (b["name"], b["head"] or "-", b["trigger"] or "") for b in e.store.list_branches(a.repo)
    ]
    data = [{"branch": n, "head": h, "trigger": json.loads(t) if t else None} for n, h, t in rows]
    emit(a.raw, data, ["BRANCH", "HEAD", "TRIGGER"], rows)
    return 0


@command(
    "create",
    "branch",
    write=True,
    args=[A("branch", help="repo@branch"), A("--head", help="a commit or branch of the repo")],
)
def create_branch(a: argparse.Namespace, e: Engine) -> int:
    e.create_branch(*parse_branch_ref(a.branch), a.head)
    e.run_pending()
    return 0


@command(
    "delete",
    "branch",
    write=True,
    args=[A("branch", help="repo@branch"), A("--force", action="store_true")],
)
def delete_branch(a: argparse.Namespace, e: Engine) -> int:
    e.delete_branch(*parse_branch_ref(a.branch), force=a.force)
    return 0
