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

Every durable step calls :func:`killpoint`; crash tests set ``PACHLOCAL_KILL_AT``
to have the process SIGKILL itself at the n-th one.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 2
#: Statements taking schema N to N + 1.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE pipelines ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE pipeline_versions ADD COLUMN spec_commit TEXT NOT NULL DEFAULT ''",
    ),
}
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
    created REAL NOT NULL, updated REAL NOT NULL, stopped INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pipeline_versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL,
    fingerprint TEXT NOT NULL, salt TEXT NOT NULL, created REAL NOT NULL,
    spec_commit TEXT NOT NULL DEFAULT '', PRIMARY KEY (name, version));
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


def _ancestry(text: str, ref: str) -> tuple[str, int]:
    """pachd's ``ancestry.Parse``: ``(name, n)``, n > 0 parents back, n < 0 the n-th
    commit from the start (``.N``), 0 the name itself."""
    cut = min((i for i in (text.find(c) for c in "^~.") if i >= 0), default=-1)
    if cut < 0:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
            raise StoreError(
                f"bad commit reference {ref!r}: {text!r} is not a branch or commit name"
            )
        return text, 0
    name, sep, tail = text[:cut], text[cut], text[cut + 1 :]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):  # pachd's ancestry.ValidateName
        raise StoreError(f"bad commit reference {ref!r}: {name!r} is not a branch or commit name")
    if tail.isdigit():
        count = int(tail)
    elif set(tail) <= {sep}:
        count = len(tail) + 1
    else:
        raise StoreError(
            f"bad commit reference {ref!r}: invalid ancestry {text!r}"
            f" (one of ^, ~ or . with a number, or repeated alone)"
        )
    return name, -count if sep == "." else count


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


def _kill_target(value: str) -> int | None:
    """``PACHLOCAL_KILL_AT``: unset (no crash injection), ``count`` (pass every kill point
    and report them at exit) or ``n`` (SIGKILL this process at the n-th kill point)."""
    if not value:
        return None
    if value == "count":
        return 0
    if not value.isdigit() or int(value) < 1:
        raise RuntimeError(f"PACHLOCAL_KILL_AT={value!r}: expected a positive integer or 'count'")
    return int(value)


_KILL_AT = _kill_target(os.environ.get("PACHLOCAL_KILL_AT", ""))  # read once, at import
_kill_passed: list[str] = []
_kill_lock = threading.Lock()


def killpoint(name: str) -> None:
    """Mark a durable step (an object written or renamed, a transaction committed, ...).

    Without ``PACHLOCAL_KILL_AT`` this returns at once. With ``PACHLOCAL_KILL_AT=n`` the
    n-th call (counted across threads) sends SIGKILL to this process, as a ``kill -9``
    or the OOM killer would stop it there; with ``count`` the names of the points passed
    are printed to stderr at exit, so a test knows how many exist and which is which.
    """
    if _KILL_AT is None:
        return
    with _kill_lock:
        _kill_passed.append(name)
        if len(_kill_passed) == _KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


def killpoints_passed() -> list[str]:
    """The kill points this process has passed, in order (empty without ``PACHLOCAL_KILL_AT``)."""
    with _kill_lock:
        return list(_kill_passed)


def _report_killpoints() -> None:
    names = killpoints_passed()
    sys.stderr.write(f"pachlocal: {len(names)} kill point(s): {' '.join(names)}\n")


if _KILL_AT == 0:
    atexit.register(_report_killpoints)


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
                killpoint("object.write")
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
            killpoint("object.write")
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
        killpoint("object.adopt")
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
        killpoint("object.rename")
        os.replace(tmp, dest)
        killpoint("object.renamed")

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"object {digest} is missing from the store") from exc

    def open(self, digest: str) -> IO[bytes]:
        return self.path(digest).open("rb")

    def verify(self, digest: str) -> bool:
        return self.verified_size(digest) is not None

    def verified_size(self, digest: str) -> int | None:
        """The object's size if it exists and re-hashes to its name, else None."""
        h = hashlib.sha256()
        size = 0
        try:
            with self.path(digest).open("rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            return None
        return size if h.hexdigest() == digest else None

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


# One change to a commit's files: (path, content hash, size); a hash of None deletes the
# file or the whole directory at ``path``.
Change = tuple[str, str | None, int]


def apply_changes(files: Mapping[str, Entry], changes: Iterable[Change]) -> dict[str, Entry]:
    """``files`` with ``changes`` applied in order (a later change to a path wins).

    Args:
        files: the parent commit's files, path -> entry; not modified.
        changes: puts and deletions, oldest first.

    Returns:
        The new file listing.
    """
    out = dict(files)
    for path, digest, size in changes:
        if digest is None:
            prefix = path.rstrip("/") + "/"
            for p in [p for p in out if p == path or p.startswith(prefix)]:
                del out[p]
        else:
            out[path] = Entry(path, digest, size)
    return out


def path_collision(paths: Iterable[str]) -> tuple[str, str] | None:
    """The first file that another file needs as a directory, with that file
    (``("/a", "/a/b")``), or None: Pachyderm's ``file / directory path collision``."""
    files = set(paths)
    clashes = []
    for path in files:
        i = path.find("/", 1)
        while i != -1:
            if path[:i] in files:
                clashes.append((path[:i], path))
                break
            i = path.find("/", i + 1)
    return min(clashes, key=lambda c: (c[1], c[0])) if clashes else None


def collision_error(files: Iterable[str], where: str, outcome: str) -> StoreError | None:
    """A :class:`StoreError` naming both paths of a file / directory collision, or None."""
    clash = path_collision(files)
    if clash is None:
        return None
    parent, child = clash
    return StoreError(
        f"{where}: file / directory path collision ({child}): {parent} is a file, so it "
        f"cannot also be the directory of {child}; {outcome}"
    )


@dataclass
class FsckReport:
    """What :meth:`Store.fsck_report` found."""

    problems: list[str] = field(default_factory=list)
    open_commits: list[str] = field(default_factory=list)  # repo@id
    unreferenced: list[str] = field(default_factory=list)  # objects nothing refers to
    unreferenced_bytes: int = 0


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
            self._migrate()
        self._manifests: dict[str, dict[str, Entry]] = {}
        self._lock_file: IO[str] | None = None

    def _migrate(self) -> None:
        """Bring a state directory written by an older pachlocal up to this schema (a
        newer one is refused: its meaning is unknown here)."""
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        found = int(row["value"])
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"{self.home}: state written by a newer pachlocal (schema {found}, this one "
                f"reads {SCHEMA_VERSION})"
            )
        if found == SCHEMA_VERSION:
            return
        with self.transaction() as db:
            for version in range(found, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version]:
                    db.execute(statement)
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

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
        killpoint("transaction.commit")
        self.db.execute("COMMIT")
        killpoint("transaction.committed")

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
        """Resolve ``repo@branch``, ``repo@id`` and ``repo`` with pachd's ancestry syntax:
        ``^``/``~`` go back (``b^``, ``b^^``, ``b^3``, ``b~3``), ``.N`` counts from the
        branch's first commit (``b.1`` is the first); separators are not mixed."""
        repo, at, rest = ref.partition("@")
        if not repo or (at and not rest):
            raise StoreError(f"bad commit reference {ref!r}: expected repo@branch or repo@commit")
        name, steps = _ancestry(rest or "master", ref)
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
        if steps < 0:  # counted from the first commit
            chain = [commit]
            while chain[-1].parent is not None:
                chain.append(self.get_commit(repo, chain[-1].parent))
            if -steps > len(chain):
                raise NotFound(f"{ref}: {repo}@{name} has {len(chain)} commit(s)")
            return chain[len(chain) + steps]
        for _ in range(steps):
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
        parent = self.manifest(self.get_commit(commit.repo, commit.parent)) if commit.parent else {}
        staged = self.db.execute(
            "SELECT path, hash, size FROM staging WHERE repo=? AND commit_id=? ORDER BY rowid",
            (commit.repo, commit.id),
        )
        return apply_changes(parent, ((r["path"], r["hash"], r["size"]) for r in staged))

    def write_manifest(self, entries: Mapping[str, Entry]) -> tuple[str, int]:
        killpoint("manifest.write")
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
        killpoint("commit.insert")
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

    def commit_changes(
        self,
        db: sqlite3.Connection,
        repo: str,
        branch: str,
        changes: Sequence[Change],
        *,
        description: str = "",
    ) -> str:
        """Insert a finished USER commit, the branch head plus ``changes``, and move the head,
        inside ``db``'s transaction: the all-or-nothing commit of one ``put file`` or
        ``delete file``. Every object ``changes`` names must already be stored. A file /
        directory path collision raises :class:`StoreError` before anything is written."""
        check_name("branch", branch)
        self.require_repo(repo)
        head = self.branch_head(repo, branch) if self.branch_exists(repo, branch) else None
        files = apply_changes(self.manifest(self.get_commit(repo, head)) if head else {}, changes)
        clash = collision_error(files, f"{repo}@{branch}", "nothing was committed")
        if clash is not None:
            raise clash
        commit_id = new_id()
        self.insert_commit(
            db,
            repo=repo,
            commit_id=commit_id,
            branch=branch,
            origin="USER",
            entries=files,
            provenance={},
            description=description,
        )
        return commit_id

    def start_commit(self, repo: str, branch: str, description: str = "") -> str:
        """Open a USER commit on a branch (``pachctl start commit``): later writes to the
        branch are staged in it until :meth:`finish_commit`; ``list commit`` shows it open."""
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

    def stage(
        self, db: sqlite3.Connection, repo: str, commit_id: str, changes: Sequence[Change]
    ) -> None:
        """Add ``changes`` to an open commit, inside ``db``'s transaction (the objects they
        name are already stored)."""
        for path, digest, size in changes:
            self.stage_file(db, repo, commit_id, path, digest, size)

    def stage_file(
        self,
        db: sqlite3.Connection,
        repo: str,
        commit_id: str,
        path: str,
        digest: str | None,
        size: int,
    ) -> None:
        # a new row, not an update in place: changes apply in row order, so a path put
        # again after its directory was deleted must come after that deletion
        killpoint("commit.stage")
        db.execute(
            "DELETE FROM staging WHERE repo=? AND commit_id=? AND path=?", (repo, commit_id, path)
        )
        db.execute(
            "INSERT INTO staging (repo, commit_id, path, hash, size) VALUES (?,?,?,?,?)",
            (repo, commit_id, path, digest, size),
        )

    def finish_commit(self, db: sqlite3.Connection, repo: str, commit_id: str) -> Commit:
        """Finish an open commit inside ``db``'s transaction; returns the finished commit.

        A file / directory path collision raises :class:`StoreError` and the commit stays
        open, so that one of the two paths can be deleted before finishing it again."""
        commit = self.get_commit(repo, commit_id)
        if commit.finished is not None:
            raise StoreError(f"commit {repo}@{commit_id} is already finished")
        entries = self._open_view(commit)
        clash = collision_error(
            entries,
            f"commit {repo}@{commit_id}",
            "the commit stays open: delete one of the two and finish it again",
        )
        if clash is not None:
            raise clash
        manifest, size = self.write_manifest(entries)
        killpoint("commit.finish")
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
        """The problems :meth:`fsck_report` finds, one line each."""
        return self.fsck_report().problems

    def fsck_report(self) -> FsckReport:
        """Check every invariant a crash must not break; each problem names what is wrong.

        - a branch head names an existing, finished commit of its repo;
        - a commit's repo and parent exist; a finished commit belongs to a commit set and
          has a manifest that exists, re-hashes to its name and decodes, and its size is
          the sum of its files' sizes; it holds no file / directory path collision;
        - every file of a finished commit and every staged file: its object exists,
          re-hashes to its name and has the recorded size; a staged file's commit is open;
        - a pipeline's output repo has its pipeline; a finished job (success, failure,
          unrunnable) has its finished output commit, without an error on success; a
          queued or running job has none yet.

        Open commits and objects nothing refers to (left by an interrupted write,
        harmless) are listed in the report, not counted as problems.
        """
        report = FsckReport()
        problems = report.problems
        sizes: dict[str, int | None] = {}  # object -> its size once re-hashed, None if bad

        def object_problem(digest: str, size: int | None) -> str:
            if digest not in sizes:
                sizes[digest] = self.objects.verified_size(digest)
            actual = sizes[digest]
            if actual is None:
                return f"object {digest} is missing or does not match its hash"
            if size is not None and actual != size:
                return f"object {digest} holds {actual} bytes, not {size}"
            return ""

        reported: set[str] = set()  # a bad object is reported once, at its first reference
        repos = {r["name"] for r in self.db.execute("SELECT name FROM repos")}
        sets = {r["id"] for r in self.db.execute("SELECT id FROM commit_sets")}
        commits = {(c.repo, c.id): c for c in self.list_commits()}
        for c in commits.values():
            where = f"commit {c.repo}@{c.id}"
            if c.repo not in repos:
                problems.append(f"{where}: repo {c.repo} does not exist")
            if c.parent and (c.repo, c.parent) not in commits:
                problems.append(f"{where}: parent {c.parent} is missing")
            if c.finished is None:
                report.open_commits.append(f"{c.repo}@{c.id}")
                continue
            if c.id not in sets:
                problems.append(f"{where}: commit set {c.id} is missing")
            if c.manifest is None:
                problems.append(f"{where}: finished without a manifest")
                continue
            bad = object_problem(c.manifest, None)
            if bad:
                problems.append(f"{where}: manifest {bad}")
                continue
            try:
                files = decode_manifest(self.objects.read(c.manifest))
            except (ValueError, TypeError) as exc:
                problems.append(f"{where}: manifest {c.manifest} cannot be decoded: {exc}")
                continue
            total = sum(e.size for e in files.values())
            if c.size != total:
                problems.append(f"{where}: size {c.size} but its files hold {total} bytes")
            for e in files.values():
                bad = object_problem(e.hash, e.size)
                if bad and e.hash not in reported:
                    reported.add(e.hash)
                    problems.append(f"{where}: {e.path}: {bad}")
            clash = path_collision(files)
            if clash is not None:
                problems.append(
                    f"{where}: file / directory path collision: {clash[0]} and {clash[1]}"
                )
        for b in self.db.execute("SELECT repo, name, head FROM branches"):
            where = f"branch {b['repo']}@{b['name']}"
            if b["repo"] not in repos:
                problems.append(f"{where}: repo {b['repo']} does not exist")
            head = commits.get((b["repo"], b["head"])) if b["head"] else None
            if b["head"] and head is None:
                problems.append(f"{where} points at missing {b['head']}")
            elif head is not None and head.finished is None:
                problems.append(f"{where} points at open commit {b['head']}")
        for r in self.db.execute("SELECT repo, commit_id, path, hash, size FROM staging"):
            where = f"staged file {r['repo']}@{r['commit_id']}:{r['path']}"
            owner = commits.get((r["repo"], r["commit_id"]))
            if owner is None or owner.finished is not None:
                problems.append(f"{where}: its commit is missing or already finished")
            bad = object_problem(r["hash"], r["size"]) if r["hash"] is not None else ""
            if bad and r["hash"] not in reported:
                reported.add(r["hash"])
                problems.append(f"{where}: {bad}")
        pipelines = {r["name"] for r in self.db.execute("SELECT name FROM pipelines")}
        for r in self.db.execute("SELECT name FROM repos WHERE kind='pipeline' ORDER BY name"):
            if r["name"] not in pipelines:
                problems.append(f"repo {r['name']}: the output repo of a missing pipeline")
        for j in self.db.execute("SELECT pipeline, id, state FROM jobs ORDER BY seq"):
            where = f"job {j['pipeline']}@{j['id']} ({j['state']})"
            out = commits.get((j["pipeline"], j["id"]))
            if j["state"] in ("success", "failure", "unrunnable"):
                if out is None or out.finished is None:
                    problems.append(f"{where}: its output commit is missing or open")
                elif j["state"] == "success" and out.error:
                    problems.append(f"{where}: its output commit carries an error")
            elif j["state"] in ("created", "running") and out is not None:
                problems.append(f"{where}: it has an output commit already")
        for digest in self.objects.all_digests():
            if digest not in sizes:
                report.unreferenced.append(digest)
                report.unreferenced_bytes += self.objects.path(digest).stat().st_size
        return report

    def clear_tmp(self) -> None:
        shutil.rmtree(self.objects.tmp, ignore_errors=True)
        self.objects.tmp.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.unlock()
        self.db.close()


def default_home() -> Path:
    """The state directory: ``$PACHLOCAL_HOME`` or ``./.pachlocal``."""
    return Path(os.environ.get("PACHLOCAL_HOME") or ".pachlocal").absolute()
