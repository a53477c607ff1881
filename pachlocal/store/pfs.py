"""Versioned files (PFS): repos, branches and commits in SQLite over the object store.

A commit's file listing (its *manifest*) is itself an object. Finishing a
commit is one SQLite transaction that inserts the commit row and moves the
branch head, after every object it names is in place: a crash at any point
leaves either the old state or the new one, plus unreferenced objects that
``fsck`` reports and ``gc`` may delete. Every durable step calls
:func:`.killpoints.killpoint`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import Commit, Entry, NotFound, StoreError, check_name, new_id
from .killpoints import killpoint
from .objects import (
    Change,
    ObjectStore,
    apply_changes,
    collision_error,
    decode_manifest,
    encode_manifest,
)
from .schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION


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


@dataclass(frozen=True)
class TriggeredBranch:
    """A branch with a trigger: it moves to its source branch's head when the trigger fires."""

    repo: str
    name: str
    head: str | None
    trigger: dict[str, Any]

    @property
    def source(self) -> str:
        return str(self.trigger.get("branch", "master"))


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
            self.db.executescript(SCHEMA)
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
                for statement in MIGRATIONS[version]:
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

    def set_branch_head(
        self, db: sqlite3.Connection, repo: str, branch: str, head: str | None
    ) -> None:
        db.execute("UPDATE branches SET head=? WHERE repo=? AND name=?", (head, repo, branch))

    def set_trigger(
        self, db: sqlite3.Connection, repo: str, branch: str, trigger: Mapping[str, Any]
    ) -> None:
        db.execute(
            "UPDATE branches SET trigger=? WHERE repo=? AND name=?",
            (json.dumps(trigger), repo, branch),
        )

    def triggered_branches(self, repo: str | None = None) -> list[TriggeredBranch]:
        """Every branch with a trigger (of ``repo``, or of every repo), by repo and name."""
        where, args = ("AND repo=?", (repo,)) if repo else ("", ())
        rows = self.db.execute(
            f"SELECT repo, name, head, trigger FROM branches WHERE trigger IS NOT NULL {where}"
            " ORDER BY repo, name",
            args,
        ).fetchall()
        return [
            TriggeredBranch(r["repo"], r["name"], r["head"], json.loads(r["trigger"])) for r in rows
        ]

    def delete_branch(self, db: sqlite3.Connection, repo: str, branch: str) -> None:
        db.execute("DELETE FROM branches WHERE repo=? AND name=?", (repo, branch))

    def set_repo_kind(self, db: sqlite3.Connection, name: str, kind: str) -> None:
        db.execute("UPDATE repos SET kind=? WHERE name=?", (kind, name))

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

    def children(self, repo: str, commit_id: str) -> list[Commit]:
        rows = self.db.execute("SELECT * FROM commits WHERE repo=? AND parent=?", (repo, commit_id))
        return [self._commit(r) for r in rows]

    def remove_commits(self, db: sqlite3.Connection, commits: Sequence[Commit]) -> None:
        """Take commits out of their repos' history: children and branch heads move to
        each commit's parent (its objects stay until a garbage collector exists)."""
        for c in commits:
            db.execute(
                "UPDATE commits SET parent=? WHERE repo=? AND parent=?", (c.parent, c.repo, c.id)
            )
            db.execute(
                "UPDATE branches SET head=? WHERE repo=? AND head=?", (c.parent, c.repo, c.id)
            )
            db.execute("DELETE FROM commits WHERE repo=? AND id=?", (c.repo, c.id))

    def sets_computed_from(self, set_id: str, commits: set[tuple[str, str]]) -> list[str]:
        """Other commit sets holding a commit whose inputs (or alias) name one of ``commits``."""
        later = set()
        for row in self.db.execute(
            "SELECT repo, id, provenance FROM commits WHERE id != ?", (set_id,)
        ):
            prov = json.loads(row["provenance"] or "{}")
            used = {(i["repo"], i["commit"]) for i in prov.get("inputs", []) if i.get("commit")}
            if prov.get("alias_of"):
                used.add((row["repo"], prov["alias_of"]))
            if used & commits:
                later.add(row["id"])
        return sorted(later)

    # -- maintenance ------------------------------------------------------------------

    def clear_tmp(self) -> None:
        shutil.rmtree(self.objects.tmp, ignore_errors=True)
        self.objects.tmp.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.unlock()
        self.db.close()


def default_home() -> Path:
    """The state directory: ``$PACHLOCAL_HOME`` or ``./.pachlocal``."""
    return Path(os.environ.get("PACHLOCAL_HOME") or ".pachlocal").absolute()
