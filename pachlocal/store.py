"""Versioned storage: content-addressed objects plus commit metadata in SQLite.

Layout of a state directory (``PACHLOCAL_HOME``, default ``./.pachlocal``)::

    meta.db            SQLite (WAL): repos, branches, commits, pipelines, jobs, datums
    objects/ab/<hash>  file contents, named by their SHA-256, written once
    tmp/               scratch on the same filesystem, so that renames are atomic
    lock               advisory lock held by the one process that writes

A commit's file listing (its *manifest*) is itself an object. Finishing a
commit is one SQLite transaction that inserts the commit row and moves the
branch head, after every object it names is in place: a crash at any point
leaves either the old state or the new one, plus unreferenced objects that
``fsck`` reports and ``gc`` may delete.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$")
CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS repos (
    name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, kind TEXT NOT NULL DEFAULT 'user');
CREATE TABLE IF NOT EXISTS branches (
    repo TEXT NOT NULL, name TEXT NOT NULL, head TEXT,
    trigger TEXT, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS commit_sets (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, created REAL NOT NULL,
    logical_time TEXT NOT NULL, cause TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits (
    repo TEXT NOT NULL, id TEXT NOT NULL, branch TEXT NOT NULL, parent TEXT,
    origin TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    started REAL NOT NULL, finished REAL, size INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '', manifest TEXT, provenance TEXT NOT NULL DEFAULT '{}',
    seq INTEGER NOT NULL, PRIMARY KEY (repo, id));
CREATE INDEX IF NOT EXISTS commits_by_id ON commits (id);
CREATE TABLE IF NOT EXISTS staging (
    repo TEXT NOT NULL, commit_id TEXT NOT NULL, path TEXT NOT NULL,
    hash TEXT, size INTEGER NOT NULL, PRIMARY KEY (repo, commit_id, path));
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, fingerprint TEXT NOT NULL,
    version INTEGER NOT NULL, salt TEXT NOT NULL, code_root TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pipeline_versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL,
    fingerprint TEXT NOT NULL, salt TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS jobs (
    pipeline TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
    inputs TEXT NOT NULL, spec_version INTEGER NOT NULL, code TEXT NOT NULL DEFAULT '{}',
    total INTEGER NOT NULL DEFAULT 0, processed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (pipeline, id));
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS datums (
    pipeline TEXT NOT NULL, job TEXT NOT NULL, datum TEXT NOT NULL,
    hash TEXT NOT NULL, state TEXT NOT NULL, inputs TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, seconds REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '', PRIMARY KEY (pipeline, job, datum));
"""


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


class ObjectStore:
    """Content-addressed blobs named by SHA-256, written once by atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root / "objects"
        self.tmp = root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            tmp = self.tmp / f"put-{uuid.uuid4().hex}"
            try:
                tmp.write_bytes(data)
                self._install(tmp, digest)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                self._check_full(exc)
                raise
        return digest

    def put_stream(self, src: IO[bytes]) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        tmp = self.tmp / f"put-{uuid.uuid4().hex}"
        try:
            with tmp.open("wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
            if self.has(digest):
                tmp.unlink()
            else:
                self._install(tmp, digest)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                self._check_full(exc)
            raise
        return digest, size

    def _check_full(self, exc: OSError) -> None:
        """A full (or read-only) filesystem under the store is a clean error naming the store;
        any other OSError (say, reading the source) is left to the caller."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
            raise StoreError(
                f"cannot write to the object store {self.root}: {exc.strerror}"
            ) from exc

    def adopt(self, file: Path) -> tuple[str, int]:
        """Move a finished file (e.g. a datum output) into the store; returns (hash, size)."""
        h = hashlib.sha256()
        size = 0
        with file.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        digest = h.hexdigest()
        if self.has(digest):
            file.unlink()
        else:
            self._install(file, digest)
        return digest, size

    def _install(self, tmp: Path, digest: str) -> None:
        dest = self.path(digest)
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"object {digest} is missing from the store") from exc

    def open(self, digest: str) -> IO[bytes]:
        return self.path(digest).open("rb")

    def verify(self, digest: str) -> bool:
        h = hashlib.sha256()
        try:
            with self.path(digest).open("rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        return h.hexdigest() == digest

    def all_digests(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    yield f.name


def encode_manifest(entries: Iterable[Entry]) -> bytes:
    rows = sorted((e.path, e.hash, e.size, e.datum) for e in entries)
    return "\n".join(json.dumps(r, separators=(",", ":")) for r in rows).encode()


def decode_manifest(data: bytes) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for line in data.splitlines():
        path, digest, size, datum = json.loads(line)
        out[path] = Entry(path, digest, size, datum)
    return out


class Store:
    """Repos, branches and commits over an :class:`ObjectStore` and SQLite."""

    def __init__(self, home: Path, *, readonly: bool = False) -> None:
        self.home = home
        if readonly and not (home / "meta.db").exists():
            raise StoreError(
                f"no pachlocal state in {home} (set PACHLOCAL_HOME or create a repo first)"
            )
        home.mkdir(parents=True, exist_ok=True)
        self.objects = ObjectStore(home)
        self.db = sqlite3.connect(home / "meta.db", isolation_level=None, timeout=60)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        if not readonly:
            self.db.executescript(_SCHEMA)
            self.db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        self._manifests: dict[str, dict[str, Entry]] = {}
        self._lock_file: IO[str] | None = None

    # -- process lock ------------------------------------------------------------

    def lock(self, *, wait: bool = True, what: str = "") -> None:
        """Take the writer lock; a second writer waits (or refuses) with a clear message."""
        f = (self.home / "lock").open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            if not wait:
                f.close()
                raise StoreError(
                    f"state directory {self.home} is in use by {holder}; try again later"
                ) from None
            sys.stderr.write(f"pachlocal: waiting for {holder} to release {self.home}\n")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({what or 'pachlocal'})")
        f.flush()
        self._lock_file = f

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.truncate(0)
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic SQLite transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def next_seq(self) -> int:
        row = self.db.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM (SELECT seq FROM commit_sets "
            "UNION ALL SELECT seq FROM commits UNION ALL SELECT seq FROM jobs)"
        ).fetchone()
        return int(row[0])

    # -- repos and branches ---------------------------------------------------------

    def create_repo(self, name: str, *, description: str = "", kind: str = "user") -> None:
        check_name("repo", name)
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM repos WHERE name=?", (name,)).fetchone():
                raise StoreError(f"repo {name} already exists")
            db.execute(
                "INSERT INTO repos (name, description, created, kind) VALUES (?,?,?,?)",
                (name, description, time.time(), kind),
            )
            db.execute(
                "INSERT INTO branches (repo, name, head) VALUES (?, 'master', NULL)", (name,)
            )

    def ensure_repo(self, name: str, *, kind: str, description: str = "") -> None:
        if not self.repo_exists(name):
            self.create_repo(name, description=description, kind=kind)

    def repo_exists(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM repos WHERE name=?", (name,)).fetchone() is not None

    def require_repo(self, name: str) -> None:
        if not self.repo_exists(name):
            raise NotFound(f"repo {name} not found")

    def list_repos(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT * FROM repos ORDER BY created DESC, name"))

    def delete_repo(self, name: str) -> None:
        self.require_repo(name)
        with self.transaction() as db:
            for table, col in (("staging", "repo"), ("commits", "repo"), ("branches", "repo")):
                db.execute(f"DELETE FROM {table} WHERE {col}=?", (name,))
            db.execute("DELETE FROM repos WHERE name=?", (name,))

    def branch_head(self, repo: str, branch: str) -> str | None:
        row = self.db.execute(
            "SELECT head FROM branches WHERE repo=? AND name=?", (repo, branch)
        ).fetchone()
        if row is None:
            self.require_repo(repo)
            raise NotFound(f"branch {branch} not found in repo {repo}")
        return row["head"] if row["head"] else None

    def branch_exists(self, repo: str, branch: str) -> bool:
        q = "SELECT 1 FROM branches WHERE repo=? AND name=?"
        return self.db.execute(q, (repo, branch)).fetchone() is not None

    def list_branches(self, repo: str) -> list[sqlite3.Row]:
        self.require_repo(repo)
        return list(self.db.execute("SELECT * FROM branches WHERE repo=? ORDER BY name", (repo,)))

    def create_branch(
        self, repo: str, name: str, head: str | None, trigger: Mapping[str, Any] | None = None
    ) -> None:
        check_name("branch", name)
        self.require_repo(repo)
        self.db.execute(
            "INSERT INTO branches (repo, name, head, trigger) VALUES (?,?,?,?) "
            "ON CONFLICT (repo, name) DO UPDATE SET head=excluded.head, trigger=excluded.trigger",
            (repo, name, head, json.dumps(trigger) if trigger else None),
        )

    # -- commits -----------------------------------------------------------------

    def _commit(self, row: sqlite3.Row) -> Commit:
        return Commit(
            repo=row["repo"],
            id=row["id"],
            branch=row["branch"],
            parent=row["parent"],
            origin=row["origin"],
            description=row["description"],
            started=row["started"],
            finished=row["finished"],
            size=row["size"],
            error=row["error"],
            manifest=row["manifest"],
            provenance=json.loads(row["provenance"]),
        )

    def get_commit(self, repo: str, commit_id: str) -> Commit:
        row = self.db.execute(
            "SELECT * FROM commits WHERE repo=? AND id=?", (repo, commit_id)
        ).fetchone()
        if row is None:
            self.require_repo(repo)
            raise NotFound(f"commit {repo}@{commit_id} not found")
        return self._commit(row)

    def find_commit(self, repo: str, commit_id: str) -> Commit | None:
        row = self.db.execute(
            "SELECT * FROM commits WHERE repo=? AND id=?", (repo, commit_id)
        ).fetchone()
        return self._commit(row) if row else None

    def resolve(self, ref: str) -> Commit:
        """Resolve ``repo@branch``, ``repo@id``, ``repo`` and ``^``/``~N`` ancestry to a commit."""
        repo, at, rest = ref.partition("@")
        m = re.fullmatch(r"([^\^~]+)((?:\^|~\d+)*)", rest or "master")
        if not repo or (at and not rest) or not m:
            raise StoreError(f"bad commit reference {ref!r}: expected repo@branch or repo@commit")
        name, ancestry = m.group(1), m.group(2)
        self.require_repo(repo)
        if self.branch_exists(repo, name):
            head = self.branch_head(repo, name)
            if head is None:
                raise NotFound(f"branch {repo}@{name} has no commits")
            commit = self.get_commit(repo, head)
        elif re.fullmatch(r"[0-9a-f]{32}", name):
            commit = self.get_commit(repo, name)
        else:
            raise NotFound(f"{repo}@{name}: no branch or commit with that name")
        for step in re.findall(r"\^|~\d+", ancestry):
            for _ in range(1 if step == "^" else int(step[1:])):
                if commit.parent is None:
                    raise NotFound(f"{ref}: commit {commit.id} has no parent")
                commit = self.get_commit(repo, commit.parent)
        return commit

    def list_commits(self, repo: str | None = None, commit_id: str | None = None) -> list[Commit]:
        clauses, args = [], []
        if repo is not None:
            self.require_repo(repo)
            clauses.append("repo=?")
            args.append(repo)
        if commit_id is not None:
            clauses.append("id=?")
            args.append(commit_id)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self.db.execute(f"SELECT * FROM commits{where} ORDER BY seq DESC, repo", args)
        return [self._commit(r) for r in rows]

    def manifest(self, commit: Commit) -> dict[str, Entry]:
        """The files of a commit (an open commit's staged view included)."""
        if commit.finished is None:
            return self._open_view(commit)
        if commit.manifest is None:
            return {}
        cached = self._manifests.get(commit.manifest)
        if cached is None:
            cached = decode_manifest(self.objects.read(commit.manifest))
            if len(self._manifests) > 64:
                self._manifests.clear()
            self._manifests[commit.manifest] = cached
        return cached

    def _open_view(self, commit: Commit) -> dict[str, Entry]:
        files = (
            dict(self.manifest(self.get_commit(commit.repo, commit.parent)))
            if commit.parent
            else {}
        )
        for row in self.db.execute(
            "SELECT path, hash, size FROM staging WHERE repo=? AND commit_id=? ORDER BY rowid",
            (commit.repo, commit.id),
        ):
            if row["hash"] is None:  # a deletion of a file or of a whole directory
                prefix = row["path"].rstrip("/") + "/"
                for p in [p for p in files if p == row["path"] or p.startswith(prefix)]:
                    del files[p]
            else:
                files[row["path"]] = Entry(row["path"], row["hash"], row["size"])
        return files

    def write_manifest(self, entries: Mapping[str, Entry]) -> tuple[str, int]:
        digest = self.objects.put_bytes(encode_manifest(entries.values()))
        return digest, sum(e.size for e in entries.values())

    def insert_commit(
        self,
        db: sqlite3.Connection,
        *,
        repo: str,
        commit_id: str,
        branch: str,
        origin: str,
        entries: Mapping[str, Entry] | None,
        provenance: Mapping[str, Any],
        description: str = "",
        error: str = "",
        started: float | None = None,
        move_head: bool = True,
    ) -> None:
        """Insert a finished commit and move the branch head, inside ``db``'s transaction."""
        parent = self.branch_head(repo, branch) if self.branch_exists(repo, branch) else None
        if entries is None:  # an errored commit keeps its parent's content
            entries = self.manifest(self.get_commit(repo, parent)) if parent else {}
        manifest, size = self.write_manifest(entries)
        now = time.time()
        db.execute(
            "INSERT INTO commits (repo, id, branch, parent, origin, description, started, "
            "finished, size, error, manifest, provenance, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                repo,
                commit_id,
                branch,
                parent,
                origin,
                description,
                started or now,
                now,
                size,
                error,
                manifest,
                json.dumps(provenance, sort_keys=True),
                self.next_seq(),
            ),
        )
        if move_head:
            db.execute(
                "INSERT INTO branches (repo, name, head) VALUES (?,?,?) "
                "ON CONFLICT (repo, name) DO UPDATE SET head=excluded.head",
                (repo, branch, commit_id),
            )

    def start_commit(self, repo: str, branch: str, description: str = "") -> str:
        """Open a USER commit on a branch; files are staged until :meth:`finish_commit`."""
        check_name("branch", branch)
        self.require_repo(repo)
        open_row = self.db.execute(
            "SELECT id FROM commits WHERE repo=? AND branch=? AND finished IS NULL", (repo, branch)
        ).fetchone()
        if open_row:
            raise StoreError(f"branch {repo}@{branch} already has an open commit {open_row['id']}")
        commit_id = new_id()
        parent = self.branch_head(repo, branch) if self.branch_exists(repo, branch) else None
        with self.transaction() as db:
            db.execute(
                "INSERT INTO commits (repo, id, branch, parent, origin, description, started, seq)"
                " VALUES (?,?,?,?, 'USER', ?,?,?)",
                (repo, commit_id, branch, parent, description, time.time(), self.next_seq()),
            )
            db.execute(
                "INSERT OR IGNORE INTO branches (repo, name, head) VALUES (?,?,NULL)",
                (repo, branch),
            )
        return commit_id

    def open_commit(self, repo: str, branch: str) -> str | None:
        row = self.db.execute(
            "SELECT id FROM commits WHERE repo=? AND branch=? AND finished IS NULL", (repo, branch)
        ).fetchone()
        return row["id"] if row else None

    def stage_file(
        self, repo: str, commit_id: str, path: str, digest: str | None, size: int
    ) -> None:
        self.db.execute(
            "INSERT INTO staging (repo, commit_id, path, hash, size) VALUES (?,?,?,?,?) "
            "ON CONFLICT (repo, commit_id, path) DO UPDATE SET hash=excluded.hash, size=excluded.size",
            (repo, commit_id, path, digest, size),
        )

    def finish_commit(self, db: sqlite3.Connection, repo: str, commit_id: str) -> Commit:
        """Finish an open commit inside ``db``'s transaction; returns the finished commit."""
        commit = self.get_commit(repo, commit_id)
        if commit.finished is not None:
            raise StoreError(f"commit {repo}@{commit_id} is already finished")
        entries = self._open_view(commit)
        manifest, size = self.write_manifest(entries)
        db.execute(
            "UPDATE commits SET finished=?, manifest=?, size=? WHERE repo=? AND id=?",
            (time.time(), manifest, size, repo, commit_id),
        )
        db.execute("DELETE FROM staging WHERE repo=? AND commit_id=?", (repo, commit_id))
        db.execute(
            "UPDATE branches SET head=? WHERE repo=? AND name=?", (commit_id, repo, commit.branch)
        )
        return self.get_commit(repo, commit_id)

    # -- maintenance ------------------------------------------------------------------

    def fsck(self) -> list[str]:
        """Verify every referenced object exists and matches its hash; returns the problems."""
        problems: list[str] = []
        checked: set[str] = set()
        for c in self.list_commits():
            if c.finished is None or c.manifest is None:
                continue
            if not self.objects.verify(c.manifest):
                problems.append(f"commit {c.repo}@{c.id}: manifest {c.manifest} missing or corrupt")
                continue
            for e in decode_manifest(self.objects.read(c.manifest)).values():
                if e.hash in checked:
                    continue
                checked.add(e.hash)
                if not self.objects.verify(e.hash):
                    problems.append(f"commit {c.repo}@{c.id}: {e.path} object {e.hash} bad")
        for b in self.db.execute("SELECT * FROM branches WHERE head IS NOT NULL"):
            if self.find_commit(b["repo"], b["head"]) is None:
                problems.append(f"branch {b['repo']}@{b['name']} points at missing {b['head']}")
        return problems

    def clear_tmp(self) -> None:
        shutil.rmtree(self.objects.tmp, ignore_errors=True)
        self.objects.tmp.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.unlock()
        self.db.close()


def default_home() -> Path:
    """The state directory: ``$PACHLOCAL_HOME`` or ``./.pachlocal``."""
    return Path(os.environ.get("PACHLOCAL_HOME") or ".pachlocal").absolute()
