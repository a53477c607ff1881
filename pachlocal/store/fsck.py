"""``pachlocal fsck``: every invariant a crash must not break, checked.

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

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Commit
from .objects import decode_manifest, path_collision
from .pfs import Store


@dataclass
class FsckReport:
    """What :func:`fsck_report` found."""

    problems: list[str] = field(default_factory=list)
    open_commits: list[str] = field(default_factory=list)  # repo@id
    unreferenced: list[str] = field(default_factory=list)  # objects nothing refers to
    unreferenced_bytes: int = 0


def fsck_report(store: Store) -> FsckReport:
    """Check every invariant of the module docstring; each problem names what is wrong."""
    check = _Checker(store)
    check.commits()
    check.branches()
    check.staging()
    check.pipelines_and_jobs()
    check.unreferenced_objects()
    return check.report


class _Checker:
    """One fsck pass: each object is re-hashed once, and a bad one reported once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self.report = FsckReport()
        self.problems = self.report.problems
        self.sizes: dict[str, int | None] = {}  # object -> its size once re-hashed, None if bad
        self.reported: set[str] = set()  # a bad object is reported at its first reference
        self.repos = {r["name"] for r in self.db.execute("SELECT name FROM repos")}
        self.all_commits = {(c.repo, c.id): c for c in store.list_commits()}

    def object_problem(self, digest: str, size: int | None) -> str:
        if digest not in self.sizes:
            self.sizes[digest] = self.store.objects.verified_size(digest)
        actual = self.sizes[digest]
        if actual is None:
            return f"object {digest} is missing or does not match its hash"
        if size is not None and actual != size:
            return f"object {digest} holds {actual} bytes, not {size}"
        return ""

    def commits(self) -> None:
        sets = {r["id"] for r in self.db.execute("SELECT id FROM commit_sets")}
        for c in self.all_commits.values():
            where = f"commit {c.repo}@{c.id}"
            if c.repo not in self.repos:
                self.problems.append(f"{where}: repo {c.repo} does not exist")
            if c.parent and (c.repo, c.parent) not in self.all_commits:
                self.problems.append(f"{where}: parent {c.parent} is missing")
            if c.finished is None:
                self.report.open_commits.append(f"{c.repo}@{c.id}")
                continue
            if c.id not in sets:
                self.problems.append(f"{where}: commit set {c.id} is missing")
            self.finished_commit(c, where)

    def finished_commit(self, c: Commit, where: str) -> None:
        if c.manifest is None:
            self.problems.append(f"{where}: finished without a manifest")
            return
        bad = self.object_problem(c.manifest, None)
        if bad:
            self.problems.append(f"{where}: manifest {bad}")
            return
        try:
            files = decode_manifest(self.store.objects.read(c.manifest))
        except (ValueError, TypeError) as exc:
            self.problems.append(f"{where}: manifest {c.manifest} cannot be decoded: {exc}")
            return
        total = sum(e.size for e in files.values())
        if c.size != total:
            self.problems.append(f"{where}: size {c.size} but its files hold {total} bytes")
        for e in files.values():
            bad = self.object_problem(e.hash, e.size)
            if bad and e.hash not in self.reported:
                self.reported.add(e.hash)
                self.problems.append(f"{where}: {e.path}: {bad}")
        clash = path_collision(files)
        if clash is not None:
            self.problems.append(
                f"{where}: file / directory path collision: {clash[0]} and {clash[1]}"
            )

    def branches(self) -> None:
        for b in self.db.execute("SELECT repo, name, head FROM branches"):
            where = f"branch {b['repo']}@{b['name']}"
            if b["repo"] not in self.repos:
                self.problems.append(f"{where}: repo {b['repo']} does not exist")
            head = self.all_commits.get((b["repo"], b["head"])) if b["head"] else None
            if b["head"] and head is None:
                self.problems.append(f"{where} points at missing {b['head']}")
            elif head is not None and head.finished is None:
                self.problems.append(f"{where} points at open commit {b['head']}")

    def staging(self) -> None:
        for r in self.db.execute("SELECT repo, commit_id, path, hash, size FROM staging"):
            where = f"staged file {r['repo']}@{r['commit_id']}:{r['path']}"
            owner = self.all_commits.get((r["repo"], r["commit_id"]))
            if owner is None or owner.finished is not None:
                self.problems.append(f"{where}: its commit is missing or already finished")
            bad = self.object_problem(r["hash"], r["size"]) if r["hash"] is not None else ""
            if bad and r["hash"] not in self.reported:
                self.reported.add(r["hash"])
                self.problems.append(f"{where}: {bad}")

    def pipelines_and_jobs(self) -> None:
        pipelines = {r["name"] for r in self.db.execute("SELECT name FROM pipelines")}
        for r in self.db.execute("SELECT name FROM repos WHERE kind='pipeline' ORDER BY name"):
            if r["name"] not in pipelines:
                self.problems.append(f"repo {r['name']}: the output repo of a missing pipeline")
        for j in self.db.execute("SELECT pipeline, id, state FROM jobs ORDER BY seq"):
            where = f"job {j['pipeline']}@{j['id']} ({j['state']})"
            out = self.all_commits.get((j["pipeline"], j["id"]))
            if j["state"] in ("success", "failure", "unrunnable"):
                if out is None or out.finished is None:
                    self.problems.append(f"{where}: its output commit is missing or open")
                elif j["state"] == "success" and out.error:
                    self.problems.append(f"{where}: its output commit carries an error")
            elif j["state"] in ("created", "running") and out is not None:
                self.problems.append(f"{where}: it has an output commit already")

    def unreferenced_objects(self) -> None:
        for digest in self.store.objects.all_digests():
            if digest not in self.sizes:
                self.report.unreferenced.append(digest)
                self.report.unreferenced_bytes += self.store.objects.path(digest).stat().st_size
