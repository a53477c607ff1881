"""``pachlocal put|get|list|glob|delete|copy|diff file``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..diff import (
    FileChange,
    FileRef,
    bytes_size,
    diff_listings,
    render_name_only,
    render_row_diff,
    render_unified,
    row_diff,
    table_format,
)
from ..engine import Engine
from ..globs import compile_glob
from ..store import Commit, Entry, StoreError
from .common import RAW, A, UsageError, command, emit, parse_file_ref

_PUT_ARGS = [
    A("target", help="repo@branch:/path"),
    A("-f", "--file", required=True, help="local file or directory ('-' for stdin)"),
    A("-r", "--recursive", action="store_true"),
    A("-m", "--message", default=""),
]


@command("put", "file", write=True, args=_PUT_ARGS)
def put_file(a: argparse.Namespace, e: Engine) -> int:
    repo, branch, path = parse_file_ref(a.target)
    src = Path(a.file)
    puts: list[tuple[str, Path | bytes]] = []
    if a.file == "-":
        puts.append((path, sys.stdin.buffer.read()))
    elif src.is_dir():
        if not a.recursive:
            raise UsageError(f"{a.file} is a directory: use -r")
        base = path if path != "/" else ""
        for f in sorted(src.rglob("*")):
            if f.is_file():
                puts.append((f"{base}/{f.relative_to(src).as_posix()}", f))
    elif src.is_file():
        target = (
            path if path != "/" and not a.target.endswith("/") else f"{path.rstrip('/')}/{src.name}"
        )
        puts.append((target, src))
    else:
        raise UsageError(f"{a.file}: no such file or directory")
    _note_open(e, repo, e.commit_files(repo, branch, puts, description=a.message))
    e.run_pending()
    return 0


def _note_open(e: Engine, repo: str, commit_id: str) -> None:
    """A write that went into a commit opened by ``start commit`` is not visible until
    ``finish commit``: say so, so that it is never silently pending."""
    commit = e.store.get_commit(repo, commit_id)
    if commit.finished is None:
        print(
            f"pachlocal: staged in open commit {repo}@{commit_id}; visible after "
            f"'pachlocal finish commit {repo}@{commit.branch}'",
            file=sys.stderr,
        )


@command("delete", "file", write=True, args=[A("target")])
def delete_file(a: argparse.Namespace, e: Engine) -> int:
    repo, branch, path = parse_file_ref(a.target)
    open_id = e.store.open_commit(repo, branch) if e.store.repo_exists(repo) else None
    commit = e.store.get_commit(repo, open_id) if open_id else e.store.resolve(f"{repo}@{branch}")
    files = e.store.manifest(commit)  # an open commit's files include what is staged in it
    if path not in files and not any(p.startswith(path.rstrip("/") + "/") for p in files):
        raise StoreError(f"file {path} not found in {repo}@{branch}")
    _note_open(e, repo, e.commit_files(repo, branch, deletes=[path]))
    e.run_pending()
    return 0


def _files_under(files: Mapping[str, Entry], path: str) -> list[Entry]:
    prefix = path.rstrip("/") + "/"
    return [f for p, f in sorted(files.items()) if p == path or p.startswith(prefix) or path == "/"]


@command("get", "file", write=False, args=[A("target"), A("-o", "--output")])
def get_file(a: argparse.Namespace, e: Engine) -> int:
    repo, ref, path = parse_file_ref(a.target)
    files = e.store.manifest(e.store.resolve(f"{repo}@{ref}"))
    if path in files:
        data = e.store.objects.read(files[path].hash)
        if a.output:
            Path(a.output).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        return 0
    under = _files_under(files, path)
    if not under:
        raise StoreError(f"file {path} not found in {repo}@{ref}")
    if not a.output:
        raise UsageError(f"{path} is a directory: use -o DIR")
    for f in under:
        dest = Path(a.output) / f.path[len(path.rstrip("/")) + 1 :]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(e.store.objects.read(f.hash))
    return 0


def _children(files: Mapping[str, Entry], path: str) -> list[tuple[str, str, int]]:
    """Direct children of ``path``: (name, 'file'|'dir', size)."""
    prefix = "/" if path == "/" else path.rstrip("/") + "/"
    out: dict[str, tuple[str, int]] = {}
    for p, f in files.items():
        if not p.startswith(prefix):
            continue
        head, slash, _ = p[len(prefix) :].partition("/")
        name = prefix + head + ("/" if slash else "")
        kind, size = out.get(name, ("dir" if slash else "file", 0))
        out[name] = (kind, size + f.size)
    return [(n, k, s) for n, (k, s) in sorted(out.items())]


def _emit_listing(raw: bool, rows: list[tuple[str, str, int]]) -> None:
    """``list file`` and ``glob file``: (path, 'file'|'dir', size) rows."""
    emit(
        raw,
        [{"path": n, "type": k, "size_bytes": s} for n, k, s in rows],
        ["NAME", "TYPE", "SIZE"],
        [(n, k, bytes_size(s)) for n, k, s in rows],
    )


@command("list", "file", write=False, args=[A("target"), RAW])
def list_file(a: argparse.Namespace, e: Engine) -> int:
    repo, ref, path = parse_file_ref(a.target)
    files = e.store.manifest(e.store.resolve(f"{repo}@{ref}"))
    rows = _children(files, path) if path not in files else [(path, "file", files[path].size)]
    if not rows and path != "/":
        raise StoreError(f"file {path} not found in {repo}@{ref}")
    _emit_listing(a.raw, rows)
    return 0


@command("glob", "file", write=False, args=[A("target"), RAW])
def glob_file(a: argparse.Namespace, e: Engine) -> int:
    head, _, pattern = a.target.partition(":")
    files = e.store.manifest(e.store.resolve(head))
    g = compile_glob(pattern or "/")
    paths = set(files) | {p[:i] for p in files for i in range(1, len(p)) if p[i] == "/"}
    rows = []
    for p in sorted(paths):
        if g.match(p):
            kind = "file" if p in files else "dir"
            size = files[p].size if p in files else sum(f.size for f in _files_under(files, p))
            rows.append((p + ("/" if kind == "dir" else ""), kind, size))
    _emit_listing(a.raw, rows)
    return 0


@command("copy", "file", write=True, args=[A("source", help="repo@ref:/path"), A("target")])
def copy_file(a: argparse.Namespace, e: Engine) -> int:
    src_repo, src_ref, src_path = parse_file_ref(a.source)
    repo, branch, path = parse_file_ref(a.target)
    _note_open(e, repo, e.copy_file(f"{src_repo}@{src_ref}", src_path, repo, branch, path))
    e.run_pending()
    return 0


_DIFF_ARGS = [
    A("new", help="repo@commit:/path"),
    A("old", nargs="?", help="repo@commit:/path (default: the parent of NEW)"),
    A("--name-only", action="store_true"),
    A("--key", help="comma-separated key columns for a row-level diff of Parquet/CSV"),
    A("--limit", type=int, default=20, help="rows listed per kind in a row-level diff"),
]


def _file_refs(files: Mapping[str, Entry]) -> dict[str, FileRef]:
    return {p: FileRef(p, f.hash, f.size) for p, f in files.items()}


def _moved_under(files: Mapping[str, FileRef], old: str, new: str) -> dict[str, FileRef]:
    """The files at or under ``old``, renamed to sit at or under ``new``: to compare two
    different paths, the old side is aligned on the new one."""
    return {
        new + p[len(old) :]: FileRef(new + p[len(old) :], f.hash, f.size)
        for p, f in files.items()
        if p == old or p.startswith(old.rstrip("/") + "/")
    }


def _print_row_diffs(e: Engine, changes: Sequence[FileChange], key: str, limit: int) -> None:
    """``diff file --key``: a row-level diff of each changed Parquet or CSV file."""
    keys = [k for k in key.split(",") if k]
    for ch in changes:
        fmt = table_format(ch.path)
        if fmt is None:
            continue
        rd = row_diff(
            e.store.objects.read(ch.old.hash) if ch.old else None,
            e.store.objects.read(ch.new.hash) if ch.new else None,
            fmt,
            keys,
            limit=limit,
        )
        print(render_row_diff(ch.path, rd))


@command("diff", "file", write=False, args=_DIFF_ARGS)
def diff_file(a: argparse.Namespace, e: Engine) -> int:
    repo, ref, path = parse_file_ref(a.new)
    new_commit = e.store.resolve(f"{repo}@{ref}")
    if a.old:
        orepo, oref, opath = parse_file_ref(a.old)
        old_commit: Commit | None = e.store.resolve(f"{orepo}@{oref}")
    else:
        opath = path
        old_commit = e.store.get_commit(repo, new_commit.parent) if new_commit.parent else None
    new_files = _file_refs(e.store.manifest(new_commit))
    old_files = _file_refs(e.store.manifest(old_commit)) if old_commit else {}
    if opath != path:
        old_files = _moved_under(old_files, opath, path)
    changes = diff_listings(new_files, old_files, prefix=path)
    if a.name_only:
        print(render_name_only(changes), end="")
    elif a.key is not None:
        _print_row_diffs(e, changes, a.key, a.limit)
    else:
        new_label = f"{repo}@{new_commit.id}"
        old_label = f"{old_commit.repo}@{old_commit.id}" if old_commit else "/dev/null"
        print(render_unified(changes, e.store.objects.read, new_label, old_label), end="")
    return 0
