"""``pachlocal``: pachctl's verbs over a local state directory.

Every listing prints pachctl's table by default and JSON with ``--raw``.
Errors print one line and exit 1; a traceback means a bug in pachlocal.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import cron
from .diff import (
    FileRef,
    bytes_size,
    diff_listings,
    render_name_only,
    render_row_diff,
    render_unified,
    row_diff,
    table_format,
)
from .engine import Engine, EngineError, Progress
from .globs import GlobError, compile_glob
from .secrets import SecretError, parse_secret
from .spec import SpecError, load_spec_documents
from .store import Commit, Entry, StoreError, clean_path, default_home

PROJECT = "default"
# errors of the machine rather than of pachlocal: reported in one line, without a traceback
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


class UsageError(Exception):
    """Bad arguments: printed without a traceback."""


# -- output helpers ----------------------------------------------------------------------


def ago(t: float | None) -> str:
    if t is None:
        return "-"
    d = max(0, int(time.time() - t))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if d >= size:
            n = d // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "Less than a second ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cols = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    return "\n".join(
        " ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cols
    )


def emit(raw: bool, data: Any, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    if raw:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(table(headers, rows))


def parse_file_ref(ref: str) -> tuple[str, str, str]:
    """``repo@branch:/path`` -> (repo, branch-or-commit, path)."""
    head, sep, path = ref.partition(":")
    repo, at, branch = head.partition("@")
    if not repo or (at and not branch):
        raise UsageError(f"bad file reference {ref!r}: expected repo@branch:/path")
    if not at and not sep:
        return head, "master", "/"
    return repo, branch or "master", clean_path(path or "/")


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


# -- progress ------------------------------------------------------------------------------


def make_progress(quiet: bool) -> Progress:
    tty = sys.stderr.isatty() and not os.environ.get("CI")

    def datum_done(pipeline: str, done: int, total: int) -> None:
        if tty and total:
            sys.stderr.write(f"\r{pipeline}: datums {done}/{total}")
            sys.stderr.flush()

    def job_finished(job: Mapping[str, Any]) -> None:
        if tty:
            sys.stderr.write("\r\033[K")
        if not quiet:
            sys.stderr.write(
                f"job {job['pipeline']}@{job['id']}: {job['state']} "
                f"({job['processed']} processed, {job['skipped']} skipped, {job['failed']} failed"
                f"{', ' + job['reason'] if job['reason'] else ''})\n"
            )

    return Progress(datum_done=datum_done, job_finished=job_finished)


# -- commands -------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, Any], int]  # (args, Engine | None for state=False)


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call, declared next to its command."""

    flags: tuple[str, ...]
    options: dict[str, Any]


def A(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


RAW = A("--raw", action="store_true", help="print JSON")


@dataclass(frozen=True)
class Command:
    handler: Handler
    write: bool
    args: Sequence[Arg]
    state: bool = True  # False: the command never touches the local state directory


COMMANDS: dict[tuple[str, str], Command] = {}


def command(
    verb: str, noun: str, *, write: bool, args: Sequence[Arg] = (), state: bool = True
) -> Callable[[Handler], Handler]:
    """Register a ``pachlocal VERB [NOUN]`` handler; ``write`` takes the state's writer lock."""

    def wrap(fn: Handler) -> Handler:
        COMMANDS[(verb, noun)] = Command(fn, write, args, state)
        return fn

    return wrap


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


@command("list", "file", write=False, args=[A("target"), RAW])
def list_file(a: argparse.Namespace, e: Engine) -> int:
    repo, ref, path = parse_file_ref(a.target)
    files = e.store.manifest(e.store.resolve(f"{repo}@{ref}"))
    rows = (
        [(n, k, s) for n, k, s in _children(files, path)]
        if path not in files
        else [(path, "file", files[path].size)]
    )
    if not rows and path != "/":
        raise StoreError(f"file {path} not found in {repo}@{ref}")
    emit(
        a.raw,
        [{"path": n, "type": k, "size_bytes": s} for n, k, s in rows],
        ["NAME", "TYPE", "SIZE"],
        [(n, k, bytes_size(s)) for n, k, s in rows],
    )
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
    emit(
        a.raw,
        [{"path": n, "type": k, "size_bytes": s} for n, k, s in rows],
        ["NAME", "TYPE", "SIZE"],
        [(n, k, bytes_size(s)) for n, k, s in rows],
    )
    return 0


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


@command("list", "commit", write=False, args=_LIST_COMMIT_ARGS)
def list_commit(a: argparse.Namespace, e: Engine) -> int:
    target = a.target or ""
    if target and "@" not in target and not e.store.repo_exists(target) and len(target) == 32:
        commits = e.store.list_commits(commit_id=target)
        if not commits:
            raise StoreError(f"commit set {target} not found")
    elif "@" in target:
        c = e.store.resolve(target)
        commits = [c]
        while c.parent:
            c = e.store.get_commit(c.repo, c.parent)
            commits.append(c)
    else:
        commits = e.store.list_commits(repo=target or None)
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


_WAIT_ARGS = [
    A("commit", help="a commit-set id, repo@commit or repo@branch"),
    A("--timeout", type=float, default=0, help="seconds (0: no limit)"),
]


def _wait_set(e: Engine, set_id: str, timeout: float) -> int:
    """Run (or wait for another process to run) every job of a commit set."""
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        if e.write:
            e.run_pending()
        jobs = e.jobs(set_id=set_id)
        pending = [j for j in jobs if j["state"] in ("created", "running")]
        if not pending:
            failed = [j for j in jobs if j["state"] != "success"]
            for j in failed:
                print(
                    f"job {j['pipeline']}@{j['id']}: {j['state']}: {j['reason']}", file=sys.stderr
                )
            return 1 if failed else 0
        if deadline and time.monotonic() > deadline:
            raise EngineError(f"timed out waiting for {len(pending)} job(s) of {set_id}")
        time.sleep(0.2)


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


@command("wait", "commit", write=True, args=_WAIT_ARGS)
def wait_commit(a: argparse.Namespace, e: Engine) -> int:
    set_id = _waited_set(e, a.commit)
    if not e.store.list_commits(commit_id=set_id) and not e.jobs(set_id=set_id):
        raise StoreError(f"commit set {set_id} not found")
    return _wait_set(e, set_id, a.timeout)


@command("wait", "job", write=True, args=_WAIT_ARGS)
def wait_job(a: argparse.Namespace, e: Engine) -> int:
    set_id = a.commit.partition("@")[2] or a.commit
    if not e.jobs(set_id=set_id):
        raise StoreError(f"job {a.commit} not found")
    return _wait_set(e, set_id, a.timeout)


_SPEC_ARGS = [
    A("-f", "--file", required=True, help="spec file (JSON or YAML)"),
    A("--reprocess", action="store_true"),
]


def _create_pipelines(a: argparse.Namespace, e: Engine, update: bool) -> int:
    path = Path(a.file)
    try:
        text = sys.stdin.read() if a.file == "-" else path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {a.file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {a.file}: not UTF-8 text") from None
    docs = load_spec_documents(text, source=a.file)
    if not docs:
        raise UsageError(f"{a.file}: no pipeline spec in the file")
    code_root = _code_root(path.resolve().parent if a.file != "-" else Path.cwd())
    for doc in docs:
        e.create_pipeline(doc, code_root=code_root, update=update, reprocess=a.reprocess)
    e.run_pending()
    return 0


def _code_root(start: Path) -> Path:
    """Where a pipeline's ``workingDir`` maps to: the nearest directory holding ``pipelines/``
    at or above the spec, else the current directory (``PACHLOCAL_CODE_ROOT`` overrides)."""
    if os.environ.get("PACHLOCAL_CODE_ROOT"):
        return Path(os.environ["PACHLOCAL_CODE_ROOT"]).resolve()
    for d in (start, *start.parents):
        if (d / "pipelines").is_dir():
            return d
    return Path.cwd()


@command("create", "pipeline", write=True, args=_SPEC_ARGS)
def create_pipeline(a: argparse.Namespace, e: Engine) -> int:
    return _create_pipelines(a, e, update=False)


@command("update", "pipeline", write=True, args=_SPEC_ARGS)
def update_pipeline(a: argparse.Namespace, e: Engine) -> int:
    return _create_pipelines(a, e, update=True)


@command(
    "delete", "pipeline", write=True, args=[A("pipeline"), A("--keep-repo", action="store_true")]
)
def delete_pipeline(a: argparse.Namespace, e: Engine) -> int:
    e.delete_pipeline(a.pipeline, keep_repo=a.keep_repo)
    return 0


def _branch_ref(text: str) -> tuple[str, str]:
    repo, at, branch = text.partition("@")
    if not at or not branch:
        raise UsageError(f"{text!r}: expected repo@branch")
    return repo, branch


@command(
    "create",
    "branch",
    write=True,
    args=[A("branch", help="repo@branch"), A("--head", help="a commit or branch of the repo")],
)
def create_branch(a: argparse.Namespace, e: Engine) -> int:
    e.create_branch(*_branch_ref(a.branch), a.head)
    e.run_pending()
    return 0


@command(
    "delete",
    "branch",
    write=True,
    args=[A("branch", help="repo@branch"), A("--force", action="store_true")],
)
def delete_branch(a: argparse.Namespace, e: Engine) -> int:
    e.delete_branch(*_branch_ref(a.branch), force=a.force)
    return 0


def _commit_set_id(ref: str) -> str:
    return ref.rpartition("@")[2]  # pachctl takes the set's id (or any commit of it)


@command("squash", "commit", write=True, args=[A("commit", help="a commit set id")])
def squash_commit(a: argparse.Namespace, e: Engine) -> int:
    for removed in e.squash_commit_set(_commit_set_id(a.commit)):
        print(f"squashed {removed}")
    return 0


@command("delete", "commit", write=True, args=[A("commit", help="a commit set id")])
def delete_commit(a: argparse.Namespace, e: Engine) -> int:
    for removed in e.squash_commit_set(_commit_set_id(a.commit), drop=True):
        print(f"deleted {removed}")
    return 0


@command("copy", "file", write=True, args=[A("source", help="repo@ref:/path"), A("target")])
def copy_file(a: argparse.Namespace, e: Engine) -> int:
    src_repo, src_ref, src_path = parse_file_ref(a.source)
    repo, branch, path = parse_file_ref(a.target)
    _note_open(e, repo, e.copy_file(f"{src_repo}@{src_ref}", src_path, repo, branch, path))
    e.run_pending()
    return 0


@command("stop", "pipeline", write=True, args=[A("pipeline")])
def stop_pipeline(a: argparse.Namespace, e: Engine) -> int:
    e.stop_pipeline(a.pipeline)
    return 0


@command("start", "pipeline", write=True, args=[A("pipeline")])
def start_pipeline(a: argparse.Namespace, e: Engine) -> int:
    e.start_pipeline(a.pipeline)
    e.run_pending()
    return 0


def _inputs_text(spec: Mapping[str, Any]) -> str:
    node = spec.get("input") or {}
    if "pfs" in node:
        return f"{node['pfs']['repo']}:{node['pfs']['glob']}"
    if "cron" in node:
        return f"cron({node['cron']['spec']})"
    for key in ("cross", "union", "join", "group"):
        if key in node:
            sep = " x " if key == "cross" else f" {key} "
            return "(" + sep.join(_inputs_text({"input": c}) for c in node[key]) + ")"
    return "none"


@command("list", "pipeline", write=False, args=[RAW])
def list_pipeline(a: argparse.Namespace, e: Engine) -> int:
    pipes = e.pipelines()
    rows = []
    for p in pipes:
        last = e.jobs(pipeline=p["name"])[:1]
        rows.append(
            [
                p["name"],
                p["version"],
                _inputs_text(p["spec"]),
                ago(p["created"]),
                "paused" if p["stopped"] else "running",
                last[0]["state"] if last else "-",
                p["spec"].get("description", ""),
            ]
        )
    emit(
        a.raw,
        pipes,
        ["NAME", "VERSION", "INPUT", "CREATED", "STATE", "LAST JOB", "DESCRIPTION"],
        rows,
    )
    return 0


@command("inspect", "pipeline", write=False, args=[A("pipeline"), RAW])
def inspect_pipeline(a: argparse.Namespace, e: Engine) -> int:
    p = e.pipeline(a.pipeline)
    if a.raw:
        print(json.dumps(p, indent=2, sort_keys=True))
    else:
        print(
            f"Name: {p['name']}\nVersion: {p['version']}\nSpec fingerprint: {p['fingerprint']}\n"
            f"Code root: {p['code_root']}\nInput: {_inputs_text(p['spec'])}\n"
            f"Spec:\n{json.dumps(p['spec'], indent=2, sort_keys=True)}"
        )
    return 0


def _job_rows(jobs: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            j["id"],
            j["pipeline"],
            ago(j["started"] or j["created"]),
            f"{j['finished'] - j['started']:.2f}s" if j["finished"] and j["started"] else "-",
            f"{j['processed'] + j['skipped'] + j['failed'] + j['recovered']}/{j['total']}"
            f" ({j['processed']} processed, {j['skipped']} skipped, {j['failed']} failed)",
            j["state"],
            j["reason"],
        ]
        for j in jobs
    ]


JOB_HEADERS = ["ID", "PIPELINE", "STARTED", "DURATION", "DATUMS", "STATE", "REASON"]


@command("list", "job", write=False, args=[A("-p", "--pipeline"), A("id", nargs="?"), RAW])
def list_job(a: argparse.Namespace, e: Engine) -> int:
    jobs = e.jobs(pipeline=a.pipeline, set_id=a.id)
    emit(a.raw, jobs, JOB_HEADERS, _job_rows(jobs))
    return 0


def _split_job(ref: str) -> tuple[str, str]:
    pipeline, sep, job_id = ref.partition("@")
    if not sep or not job_id:
        raise UsageError(f"bad job reference {ref!r}: expected pipeline@job")
    return pipeline, job_id


@command("inspect", "job", write=False, args=[A("job"), RAW])
def inspect_job(a: argparse.Namespace, e: Engine) -> int:
    job = e.job(*_split_job(a.job))
    job["inputs"] = json.loads(job["inputs"])
    if a.raw:
        print(json.dumps(job, indent=2, sort_keys=True))
    else:
        print(table(JOB_HEADERS, _job_rows([job])))
        for i in job["inputs"]:
            print(f"Input {i['name']}: {i['repo']}@{i['branch']}={i['commit'] or '<empty>'}")
    return 0


@command("list", "datum", write=False, args=[A("job"), RAW])
def list_datum(a: argparse.Namespace, e: Engine) -> int:
    datums = e.datums(*_split_job(a.job))
    for d in datums:
        d["inputs"] = json.loads(d["inputs"])
    rows = [
        [
            d["datum"],
            ", ".join(f"{i['name']}:{i['path']}" for i in d["inputs"]),
            d["state"],
            d["attempts"],
            f"{d['seconds']:.3f}s",
            d["reason"],
        ]
        for d in datums
    ]
    emit(a.raw, datums, ["ID", "FILES", "STATUS", "ATTEMPTS", "TIME", "REASON"], rows)
    return 0


_DEBUG_ARGS = [
    A("job", help="pipeline@job"),
    A("datum"),
    A("--dir", help="where to re-create /pfs (default: a new directory under /tmp)"),
]


@command("debug", "datum", write=False, args=_DEBUG_ARGS)
def debug_datum(a: argparse.Namespace, e: Engine) -> int:
    """Re-create a datum's ``/pfs`` and print how to rerun its command by hand."""
    pipeline, job_id = _split_job(a.job)
    job = e.job(pipeline, job_id)
    rows = [d for d in e.datums(pipeline, job_id) if d["datum"].startswith(a.datum)]
    if len(rows) != 1:
        raise StoreError(
            f"datum {a.datum} {'is ambiguous' if rows else 'not found'} in job {a.job}"
        )
    d = rows[0]
    base = Path(a.dir) if a.dir else Path(f"/tmp/pachlocal-debug-{d['datum'][:12]}")
    pfs = base / "pfs"
    if pfs.exists():
        shutil.rmtree(pfs)
    (pfs / "out").mkdir(parents=True)
    env: dict[str, str] = {}
    for i in json.loads(d["inputs"]):
        (pfs / i["name"]).mkdir(exist_ok=True)
        for path, digest, _size in i["files"]:
            dest = pfs / i["name"] / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(e.store.objects.read(digest))
        env[i["name"]] = f"/pfs/{i['name']}{i['path'] if i['path'] != '/' else ''}"
        env[f"{i['name']}_COMMIT"] = i["commit"]
        if i["join_on"]:
            env[f"PACH_DATUM_{i['name']}_JOIN_ON"] = i["join_on"]
        if i["group_by"]:
            env[f"PACH_DATUM_{i['name']}_GROUP_BY"] = i["group_by"]
    spec = e.pipeline_version(pipeline, job["spec_version"])["spec"]
    t = spec["transform"]
    env.update(
        {
            "PACH_DATUM_ID": d["datum"],
            "PACH_JOB_ID": job_id,
            "PACH_OUTPUT_COMMIT_ID": job_id,
            "PPS_PIPELINE_NAME": pipeline,
            **(t.get("env") or {}),
        }
    )
    secret_vars = [s["envVar"] for s in t.get("secrets") or [] if s.get("envVar")]
    cmd = " ".join(_quote(c) for c in t["cmd"])
    envs = " ".join(f"{k}={_quote(v)}" for k, v in sorted(env.items()))
    code_root = (
        e.pipeline(pipeline)["code_root"]
        if any(p["name"] == pipeline for p in e.pipelines())
        else "."
    )
    print(f"Datum {d['datum']} of {pipeline}@{job_id} ({d['state']}) re-created in {pfs}")
    print(f"Command: {json.dumps(t['cmd'])}")
    if t.get("stdin"):
        print(f"Stdin: {json.dumps(t['stdin'])}")
    if secret_vars:
        print(f"Secret variables (set them yourself): {', '.join(secret_vars)}")
    print("Rerun it in a private mount namespace (as root):")
    print(
        f"  cd {_quote(code_root)} && env {envs} unshare -m --propagation private "
        f"sh -c 'mount --bind {_quote(str(pfs))} /pfs && exec \"$@\"' sh {cmd}"
    )
    return 0


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


_LOGS_ARGS = [
    A("-p", "--pipeline", required=True),
    A("--job"),
    A("--datum"),
    RAW,
]


@command("logs", "", write=False, args=_LOGS_ARGS)
def logs(a: argparse.Namespace, e: Engine) -> int:
    e.pipeline(a.pipeline)
    recs = e.logs(a.pipeline, a.job, a.datum)
    if a.raw:
        print(json.dumps(recs, indent=2))
    else:
        for r in recs:
            for line in r["message"].rstrip("\n").splitlines():
                print(line)
    return 0


@command("run", "cron", write=True, args=[A("pipeline")])
def run_cron(a: argparse.Namespace, e: Engine) -> int:
    e.run_cron(a.pipeline)
    e.run_pending()
    return 0


@command("run", "", write=True)
def run_jobs(a: argparse.Namespace, e: Engine) -> int:
    jobs = e.run_pending()
    return 1 if any(j["state"] != "success" for j in jobs) else 0


_TICK_ARGS = [
    A("--until", required=True, help="RFC 3339 time, or 'now'"),
]


@command("tick", "", write=True, args=_TICK_ARGS)
def tick(a: argparse.Namespace, e: Engine) -> int:
    until = datetime.now(UTC) if a.until == "now" else cron.parse_rfc3339(a.until)
    e.run_pending()
    fired = e.tick_until(until)
    print(f"fired {len(fired)} tick(s) up to {cron.format_tick(until)}", file=sys.stderr)
    return 0


@command("serve", "", write=True)
def serve(a: argparse.Namespace, e: Engine) -> int:
    """Fire cron ticks on schedule and run jobs until Ctrl-C."""
    print("pachlocal: serving; Ctrl-C to stop", file=sys.stderr)
    try:
        while True:
            e.run_pending()
            e.tick_until(datetime.now(UTC))
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("pachlocal: stopped", file=sys.stderr)
    return 0


@command("create", "secret", write=True, args=[A("-f", "--file", required=True)])
def create_secret(a: argparse.Namespace, e: Engine) -> int:
    try:
        doc = json.loads(Path(a.file).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {a.file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {a.file}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SecretError(f"{a.file}: not valid JSON (line {exc.lineno})") from None
    name, values = parse_secret(doc, a.file)
    e.secrets.create(name, values)
    return 0


@command("delete", "secret", write=True, args=[A("name")])
def delete_secret(a: argparse.Namespace, e: Engine) -> int:
    e.secrets.delete(a.name)
    return 0


@command("list", "secret", write=False, args=[RAW])
def list_secret(a: argparse.Namespace, e: Engine) -> int:
    rows = e.secrets.list()
    emit(
        a.raw,
        [{"name": n, "keys": k, "created": c} for n, k, c in rows],
        ["NAME", "KEYS", "CREATED"],
        [(n, ",".join(k), ago(c)) for n, k, c in rows],
    )
    return 0


_DIFF_ARGS = [
    A("new", help="repo@commit:/path"),
    A("old", nargs="?", help="repo@commit:/path (default: the parent of NEW)"),
    A("--name-only", action="store_true"),
    A("--key", help="comma-separated key columns for a row-level diff of Parquet/CSV"),
    A("--limit", type=int, default=20, help="rows listed per kind in a row-level diff"),
]


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

    def refs(files: Mapping[str, Entry], base: str) -> dict[str, FileRef]:
        return {p: FileRef(p, f.hash, f.size) for p, f in files.items()}

    new_files = refs(e.store.manifest(new_commit), path)
    old_files = refs(e.store.manifest(old_commit), opath) if old_commit else {}
    if opath != path:  # comparing two different paths: align the old side on the new one
        old_files = {
            path + p[len(opath) :]: FileRef(path + p[len(opath) :], f.hash, f.size)
            for p, f in old_files.items()
            if p == opath or p.startswith(opath.rstrip("/") + "/")
        }
    changes = diff_listings(new_files, old_files, prefix=path)
    if a.name_only:
        print(render_name_only(changes), end="")
        return 0
    if a.key is not None:
        keys = [k for k in a.key.split(",") if k]
        for ch in changes:
            fmt = table_format(ch.path)
            if fmt is None:
                continue
            rd = row_diff(
                e.store.objects.read(ch.old.hash) if ch.old else None,
                e.store.objects.read(ch.new.hash) if ch.new else None,
                fmt,
                keys,
                limit=a.limit,
            )
            print(render_row_diff(ch.path, rd))
        return 0
    new_label = f"{repo}@{new_commit.id}"
    old_label = f"{old_commit.repo}@{old_commit.id}" if old_commit else "/dev/null"
    print(render_unified(changes, e.store.objects.read, new_label, old_label), end="")
    return 0


@command(
    "deploy",
    "",
    write=False,
    state=False,
    args=[
        A("--pachd", help="pachd address (default: PACHD_ADDRESS, else the pachctl context)"),
        A("--secrets", help="directory of filled Secret JSON files to create"),
        A("--update", action="store_true", help="replace secrets, update pipelines"),
        A("--reprocess", action="store_true", help="with --update: reprocess all datums"),
        A("--dry-run", action="store_true", help="print the plan, send nothing"),
    ],
)
def deploy(a: argparse.Namespace, e: Engine | None) -> int:
    """Create this project's repos, secrets and pipelines (specs/) on a real pachd."""
    from .deploy import deploy as run

    secrets = Path(a.secrets) if a.secrets else None
    run(
        Path("."),
        address=a.pachd,
        secrets_dir=secrets,
        update=a.update,
        out=sys.stdout,
        reprocess=a.reprocess,
        dry_run=a.dry_run,
    )
    return 0


@command("fsck", "", write=True)
def fsck(a: argparse.Namespace, e: Engine) -> int:
    """Check the state: branch heads, commits, manifests, every referenced object re-hashed,
    staged files and jobs; prints one line per problem, exits 1 if there is any."""
    report = e.store.fsck_report()
    for p in report.problems:
        print(p)
    notes = [f"fsck: {len(report.problems)} problem(s)"]
    if report.open_commits:
        notes.append(f"open commit(s): {', '.join(report.open_commits)}")
    if report.unreferenced:
        notes.append(
            f"{len(report.unreferenced)} unreferenced object(s) "
            f"({bytes_size(report.unreferenced_bytes)}) left by interrupted writes"
        )
    print("; ".join(notes), file=sys.stderr)
    return 1 if report.problems else 0


# -- entry point ---------------------------------------------------------------------------


def _add(parser: argparse.ArgumentParser, cmd: Command) -> None:
    parser.set_defaults(handler=cmd.handler, write=cmd.write, state=cmd.state)
    for arg in cmd.args:
        parser.add_argument(*arg.flags, **arg.options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pachlocal", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no job summaries on stderr")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    by_verb: dict[str, dict[str, Command]] = {}
    for (verb, noun), cmd in COMMANDS.items():
        by_verb.setdefault(verb, {})[noun] = cmd
    for verb, nouns in sorted(by_verb.items()):
        bare = nouns.get("")
        vp = verbs.add_parser(
            verb, help=((bare.handler.__doc__ or "") if bare else "").split("\n")[0]
        )
        if bare is not None:  # e.g. ``run`` (run queued jobs) beside ``run cron``
            _add(vp, bare)
        if len(nouns) > (bare is not None):
            sub = vp.add_subparsers(dest="noun", required=bare is None, metavar="NOUN")
            for noun, cmd in sorted(nouns.items()):
                if noun:
                    _add(sub.add_parser(noun), cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    home = default_home()
    engine: Engine | None = None
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.state:
            engine = Engine(
                home,
                write=args.write,
                progress=make_progress(args.quiet),
                command=" ".join(sys.argv[1:3]) if argv is None else " ".join(list(argv)[:2]),
            )
        return int(args.handler(args, engine))
    except KeyboardInterrupt:
        print(
            "pachlocal: interrupted; nothing half-committed (unfinished jobs rerun next time)",
            file=sys.stderr,
        )
        return 130
    except (
        StoreError,
        EngineError,
        SpecError,
        SecretError,
        GlobError,
        UsageError,
        cron.ScheduleError,
        ValueError,
    ) as exc:
        print(f"pachlocal: {exc}", file=sys.stderr)
        return 1
    except sqlite3.OperationalError as exc:  # a full disk or an unreadable state database
        print(f"pachlocal: {home / 'meta.db'}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"pachlocal: {exc.filename or home}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        if engine is not None:
            engine.close()


if __name__ == "__main__":
    sys.exit(main())
