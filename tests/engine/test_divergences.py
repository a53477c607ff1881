"""Places where pachlocal differed from pachd silently, each now pachd's behaviour or a
clear error (issue: same answers as Pachyderm)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pachlocal.engine import Engine
from pachlocal.store import StoreError
from tests.engine.conftest import Pachlocal
from tests.engine.test_cron_engine import cron_spec
from tests.engine.test_engine import UPPER, copy_spec

Write = Callable[[str, str | bytes], Path]


def upper_pipeline(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "abc")))
    pl("create", "pipeline", "-f", pl.spec(tmp_path, copy_spec("up", "in", "/*", UPPER)))


def test_a_user_commit_to_an_output_branch_is_refused(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    """Before: accepted, then dropped when the next job committed. pachd refuses it."""
    upper_pipeline(pl, tmp_path, write)
    before = pl("list", "commit", "up", "--raw").json()
    for args in (
        ("put", "file", "up@master:/b", "-f", str(write("b", "x"))),
        ("start", "commit", "up@master"),
    ):
        res = pl(*args, ok=False)
        assert res.rc != 0
        assert "cannot start a commit on an output branch: up@master" in res.err
    assert pl("list", "commit", "up", "--raw").json() == before
    assert pl.files("up@master") == {"/a": b"ABC"}


def test_deleting_a_repo_a_pipeline_reads_needs_force(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    """Before: deleted, leaving ``up`` reading a repo that no longer exists."""
    upper_pipeline(pl, tmp_path, write)
    res = pl("delete", "repo", "in", ok=False)
    assert res.rc != 0 and "cannot delete repo in: pipeline(s) up read it" in res.err
    assert "in" in {r["name"] for r in pl("list", "repo", "--raw").json()}
    pl("delete", "repo", "in", "--force")
    assert "in" not in {r["name"] for r in pl("list", "repo", "--raw").json()}


def test_wait_commit_takes_a_branch(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    """Before: ``wait commit up@master`` failed with "commit set master not found"."""
    upper_pipeline(pl, tmp_path, write)
    pl("put", "file", "in@master:/b", "-f", str(write("b", "def")))
    head = pl("list", "commit", "up", "--raw").json()[0]
    for ref in ("up@master", "in@master", f"up@{head['commit']['id']}", "up@master^"):
        assert pl("wait", "commit", ref).rc == 0, ref
    assert pl.files("up@master") == {"/a": b"ABC", "/b": b"DEF"}
    res = pl("wait", "commit", "up@nosuch", ok=False)
    assert res.rc != 0 and "up@nosuch: no branch or commit with that name" in res.err


UNSUPPORTED_SPECS = {
    "egress": ({"egress": {"URL": "s3://bucket/dir"}}, "egress: pachlocal does not support egress"),
    "spout": ({"spout": {}, "input": None}, "spout: pachlocal does not support spouts"),
    "service": (
        {"service": {"internalPort": 8888, "externalPort": 30888}},
        "service: pachlocal does not support services",
    ),
    "s3Out": ({"s3Out": True}, "s3Out: pachlocal does not support the S3 gateway output"),
    "pipeline project": (
        {"pipeline": {"name": "up", "project": {"name": "lens"}}},
        "pipeline.project: project 'lens': pachlocal has the 'default' project only",
    ),
    "input project": (
        {"input": {"pfs": {"repo": "in", "glob": "/*", "project": "lens"}}},
        "input.pfs.project: project 'lens': pachlocal has the 'default' project only",
    ),
    "s3 input": (
        {"input": {"pfs": {"repo": "in", "glob": "/", "s3": True}}},
        "input.pfs.s3: pachlocal does not support S3 gateway inputs",
    ),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED_SPECS))
def test_what_pachlocal_does_not_do_is_refused_naming_the_field(
    pl: Pachlocal, tmp_path: Path, case: str
) -> None:
    """Before: accepted and run as a plain job (or the project ignored)."""
    pl("create", "repo", "in")
    change, message = UNSUPPORTED_SPECS[case]
    spec = {**copy_spec("up", "in", "/*", UPPER), **change}
    spec = {k: v for k, v in spec.items() if v is not None}
    res = pl("create", "pipeline", "-f", pl.spec(tmp_path, spec, "up"), ok=False)
    assert res.rc != 0 and f"pipeline up: {message}" in res.err
    assert pl("list", "pipeline", "--raw").json() == []


def test_the_default_project_is_accepted(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "abc")))
    spec = copy_spec(
        "up", "in", "/*", UPPER, pipeline={"name": "up", "project": {"name": "default"}}
    )
    spec["input"]["pfs"]["project"] = "default"
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert pl.files("up@master") == {"/a": b"ABC"}


@pytest.mark.parametrize(("err_exit", "state"), [(0, "recovered"), (1, "failed")])
def test_err_cmd_runs_after_every_failed_try(tmp_path: Path, err_exit: int, state: str) -> None:
    """Before: errCmd ran once, after the last try. pachd's worker runs it after each."""
    spec = copy_spec(
        "flaky",
        "in",
        "/*",
        "exit 3",
        datumTries=3,
        transform={"errCmd": ["sh", "-c", f"echo handling; exit {err_exit}"]},
    )
    with Engine(tmp_path / "state") as engine:
        engine.store.create_repo("in")
        engine.commit_files("in", "master", [("/a", b"A")])
        engine.create_pipeline(spec, code_root=tmp_path)
        (job,) = engine.run_pending()
        (datum,) = engine.datums("flaky", job["id"])
        logs = engine.logs("flaky", job["id"])
    assert datum["state"] == state and datum["attempts"] == 3
    handled = [rec["attempt"] for rec in logs if rec["message"].startswith("errCmd: handling")]
    assert handled == [1, 2, 3]
    assert job["state"] == ("success" if state == "recovered" else "failure")


@pytest.mark.parametrize("empty_files", [True, False])
def test_a_symlink_to_an_input_stores_the_input_file(
    pl: Pachlocal, tmp_path: Path, write: Write, empty_files: bool
) -> None:
    """Pachyderm's shuffle example: with ``emptyFiles`` the datum sees 0-byte inputs and
    links them to its output; the output holds the input's content. Before: 0 bytes."""
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/x/a.txt", "-f", str(write("a", "AAA")))
    script = (
        "mkdir -p /pfs/out/abs /pfs/out/rel; ln -s $in/a.txt /pfs/out/abs/a.txt; "
        "ln -s ../../in/x/a.txt /pfs/out/rel/a.txt; echo B > /pfs/out/b; ln -s b /pfs/out/c"
    )
    spec = copy_spec("shuffle", "in", "/*", script)
    spec["input"]["pfs"]["emptyFiles"] = empty_files
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert pl.files("shuffle@master") == {
        "/abs/a.txt": b"AAA",
        "/rel/a.txt": b"AAA",
        "/b": b"B\n",
        "/c": b"B\n",  # a link to another output (before: refused once /b was stored)
    }


COUNT = "ls /pfs/in | wc -l > /pfs/out/count"


def test_a_size_trigger_counts_the_bytes_added_since_it_fired(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    """Before: the sizes of every new commit (each the whole repo) were summed, and an
    empty triggered branch took the first data at once. pachd waits for the condition."""
    pl("create", "repo", "in")
    spec = copy_spec("batch", "in", "/", COUNT)
    spec["input"]["pfs"]["trigger"] = {"size": "8B"}
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    counts = []
    for i in range(4):
        pl("put", "file", f"in@master:/f{i}", "-f", str(write(f"f{i}", "abcde")))
        counts.append(pl.files("batch@master").get("/count"))
    # the repo must grow by 8 bytes (two files) since the branch's head, the first time too
    assert counts == [None, b"2\n", b"2\n", b"4\n"]


def test_a_rate_limited_trigger_fires_once_per_tick(tmp_path: Path) -> None:
    """Before: ``rateLimitSpec`` was ignored and the trigger fired at every commit."""
    spec = copy_spec("daily", "in", "/", COUNT)
    spec["input"]["pfs"]["trigger"] = {"rateLimitSpec": "@daily"}
    counts = []
    with Engine(tmp_path / "state") as engine:
        engine.store.create_repo("in")
        engine.create_pipeline(spec, code_root=tmp_path)
        engine.run_pending()
        for i, when in enumerate(["01T00:30", "01T05:00", "02T00:10", "02T01:00"]):
            engine.commit_files(
                "in", "master", [(f"/f{i}", b"x")], logical_time=f"2024-05-{when}:00+00:00"
            )
            engine.run_pending()
            head = engine.store.resolve("daily@master")
            counts.append(engine.store.objects.read(engine.store.manifest(head)["/count"].hash))
    assert counts == [b"1\n", b"1\n", b"3\n", b"3\n"]


def test_a_cron_trigger_moves_its_branch_on_schedule_not_on_commits(tmp_path: Path) -> None:
    """Before: a ``cronSpec`` trigger was checked at each commit, and an empty triggered
    branch took the first data at once. pachd (2.9+) moves the branch at each tick of the
    schedule to the source's head then, counting from the branch's head."""
    spec = copy_spec("daily", "in", "/", COUNT)
    spec["input"]["pfs"]["trigger"] = {"cronSpec": "@daily"}

    def count(engine: Engine) -> bytes | None:
        head = engine.store.branch_head("daily", "master")
        files = engine.store.manifest(engine.store.get_commit("daily", head)) if head else {}
        return engine.store.objects.read(files["/count"].hash) if "/count" in files else None

    with Engine(tmp_path / "state") as engine:
        engine.store.create_repo("in")
        engine.create_pipeline(spec, code_root=tmp_path)
        engine.run_pending()
        seen = []
        for i, when in enumerate(["01T05:00", "01T20:00", "02T03:00", "02T04:00"]):
            engine.commit_files(
                "in", "master", [(f"/f{i}", b"x")], logical_time=f"2024-05-{when}:00+00:00"
            )
            engine.run_pending()
            seen.append(count(engine))
            if i == 1:  # the first midnight after the first data
                assert engine.tick_until(datetime(2024, 5, 2, tzinfo=UTC)) == []
                seen.append(count(engine))
        engine.tick_until(datetime(2024, 5, 2, 23, tzinfo=UTC))
        seen.append(count(engine))
        engine.tick_until(datetime(2024, 5, 3, tzinfo=UTC))
        seen.append(count(engine))
        assert engine.empty_trigger_branches() == []
    assert seen == [None, None, b"2\n", b"2\n", b"2\n", b"2\n", b"4\n"]


def test_an_empty_trigger_branch_waits_and_can_be_moved_by_hand(tmp_path: Path) -> None:
    """The deploy's bootstrap: ``create branch`` moves an empty triggered branch at once and
    keeps its trigger; the schedule then counts from the commit it points at."""
    spec = copy_spec("daily", "in", "/", COUNT)
    spec["input"]["pfs"]["trigger"] = {"cronSpec": "@daily"}
    with Engine(tmp_path / "state") as engine:
        engine.store.create_repo("in")
        engine.create_pipeline(spec, code_root=tmp_path)
        engine.commit_files(
            "in", "master", [("/a", b"x")], logical_time="2024-05-01T05:00:00+00:00"
        )
        engine.run_pending()
        assert engine.empty_trigger_branches() == [("in", "daily-trigger-1", "master")]
        engine.create_branch("in", "daily-trigger-1", head="master")
        engine.run_pending()
        assert engine.empty_trigger_branches() == []
        (branch,) = [b for b in engine.store.list_branches("in") if b["name"] != "master"]
        assert json.loads(branch["trigger"])["cronSpec"] == "@daily"
        assert [move.when for move in engine.triggers.scheduled_moves()] == [
            datetime(2024, 5, 2, tzinfo=UTC)
        ]
        head = engine.store.branch_head("daily", "master")
        assert "/count" in engine.store.manifest(engine.store.get_commit("daily", head))


def test_update_with_a_later_start_resumes_from_it(pl: Pachlocal, tmp_path: Path) -> None:
    """pachd resumes after the newer of the last tick and ``start``. Before: every tick
    since the last one was backfilled (30 here instead of 1)."""
    spec = cron_spec("daily", "@daily", overwrite=False, start="2024-01-01T00:00:00Z")
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    pl("tick", "--until", "2024-01-03T12:00:00Z")
    assert sorted(pl.files("daily_tick@master")) == [
        "/2024-01-02T00:00:00Z",
        "/2024-01-03T00:00:00Z",
    ]
    spec["input"]["cron"]["start"] = "2024-02-01T00:00:00Z"
    pl("update", "pipeline", "-f", pl.spec(tmp_path, spec))
    pl("tick", "--until", "2024-02-02T12:00:00Z")
    assert sorted(pl.files("daily_tick@master"))[2:] == ["/2024-02-02T00:00:00Z"]
    # a start left in the past changes nothing: the newest tick wins
    spec["input"]["cron"]["start"] = "2024-01-01T00:00:00Z"
    pl("update", "pipeline", "-f", pl.spec(tmp_path, spec))
    pl("tick", "--until", "2024-02-03T12:00:00Z")
    assert sorted(pl.files("daily_tick@master"))[3:] == ["/2024-02-03T00:00:00Z"]


def test_a_stopped_pipeline_takes_no_job_until_started(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    """Before: ``stop pipeline`` and ``start pipeline`` did not exist."""
    upper_pipeline(pl, tmp_path, write)
    pl("stop", "pipeline", "up")
    assert [p["stopped"] for p in pl("list", "pipeline", "--raw").json()] == [True]
    jobs = len(pl("list", "job", "-p", "up", "--raw").json())
    pl("put", "file", "in@master:/b", "-f", str(write("b", "def")))
    assert len(pl("list", "job", "-p", "up", "--raw").json()) == jobs
    assert pl.files("up@master") == {"/a": b"ABC"}
    pl("start", "pipeline", "up")
    newest = pl("list", "job", "-p", "up", "--raw").json()[0]
    assert (newest["state"], newest["processed"], newest["skipped"]) == ("success", 1, 1)
    assert pl.files("up@master") == {"/a": b"ABC", "/b": b"DEF"}


def test_a_stopped_cron_pipeline_catches_up_its_ticks_when_started(
    pl: Pachlocal, tmp_path: Path
) -> None:
    spec = cron_spec("hourly", "@hourly", overwrite=False)
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    pl("tick", "--until", "2024-05-01T01:30:00Z")
    pl("stop", "pipeline", "hourly")
    pl("tick", "--until", "2024-05-01T03:30:00Z")
    assert sorted(pl.files("hourly_tick@master")) == ["/2024-05-01T01:00:00Z"]
    pl("start", "pipeline", "hourly")
    pl("tick", "--until", "2024-05-01T03:30:00Z")
    ticks = ["/2024-05-01T01:00:00Z", "/2024-05-01T02:00:00Z", "/2024-05-01T03:00:00Z"]
    assert sorted(pl.files("hourly_tick@master")) == ticks
    assert sorted(pl.files("hourly@master")) == ticks


def test_output_commits_name_their_spec_commit(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    """Before: provenance named the spec version and fingerprint, not a spec commit."""
    upper_pipeline(pl, tmp_path, write)
    first = pl("list", "job", "-p", "up", "--raw").json()[-1]["id"]
    spec = copy_spec("up", "in", "/*", UPPER, description="v2")
    pl("update", "pipeline", "-f", pl.spec(tmp_path, spec))
    second = pl("list", "job", "-p", "up", "--raw").json()[0]["id"]
    with Engine(pl.home, write=False) as engine:
        specs = [
            engine.store.get_commit("up", c).provenance["spec_commit"] for c in (first, second)
        ]
    assert specs == [first, second]  # each version's: the commit set that created it


def test_a_schema_1_state_is_migrated_on_open(tmp_path: Path) -> None:
    home = tmp_path / "state"
    with Engine(home) as engine:
        engine.store.create_repo("in")
        engine.create_pipeline(copy_spec("up", "in", "/*", UPPER), code_root=tmp_path)
        engine.run_pending()
    db = sqlite3.connect(home / "meta.db")
    db.execute("ALTER TABLE pipelines DROP COLUMN stopped")
    db.execute("ALTER TABLE pipeline_versions DROP COLUMN spec_commit")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    with Engine(home, write=False) as engine:  # a reader leaves it as it is
        assert engine.pipeline("up")["stopped"] is False
    with Engine(home) as engine:
        assert engine.store.db.execute("SELECT value FROM meta").fetchone()[0] == "2"
        assert engine.pipeline_version("up", 1)["spec_commit"] == ""
        engine.stop_pipeline("up")
        assert engine.pipeline("up")["stopped"] is True
    db = sqlite3.connect(home / "meta.db")
    db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer pachlocal"):
        Engine(home)


def test_the_specs_salt_is_the_datum_salt(tmp_path: Path) -> None:
    """Before: a ``salt`` in the spec was ignored and a random one drawn."""

    def datum_hashes(home: Path, **extra: Any) -> list[str]:
        with Engine(home) as engine:
            engine.store.create_repo("in")
            engine.commit_files("in", "master", [("/a", b"A")])
            engine.create_pipeline(copy_spec("up", "in", "/*", UPPER, **extra), code_root=tmp_path)
            (job,) = engine.run_pending()
            return [d["hash"] for d in engine.datums("up", job["id"])]

    fixed = [datum_hashes(tmp_path / f"s{i}", salt="lens-2024") for i in range(2)]
    drawn = [datum_hashes(tmp_path / f"r{i}") for i in range(2)]
    assert fixed[0] == fixed[1] and drawn[0] != drawn[1] and fixed[0] != drawn[0]


def test_create_branch_makes_and_moves_branches(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    """Before: ``create branch`` did not exist. Moving a branch is an ALIAS commit in a new
    commit set, so the pipelines reading it run on the files it now points at."""
    upper_pipeline(pl, tmp_path, write)
    first = pl("list", "commit", "in", "--raw").json()[0]["commit"]["id"]
    pl("put", "file", "in@master:/b", "-f", str(write("b", "def")))
    assert pl.files("up@master") == {"/a": b"ABC", "/b": b"DEF"}
    pl("create", "branch", "in@master", "--head", first)  # roll the input back
    assert pl.files("in@master") == {"/a": b"abc"}
    assert pl.files("up@master") == {"/a": b"ABC"}
    head = pl("inspect", "commit", "in@master", "--raw").json()
    assert head["origin"]["kind"] == "ALIAS" and head["commit"]["id"] != first
    pl("create", "branch", "in@dev")
    jobs = len(pl("list", "job", "-p", "up", "--raw").json())
    pl("create", "branch", "in@dev", "--head", "master")
    assert pl.files("in@dev") == {"/a": b"abc"}
    assert len(pl("list", "job", "-p", "up", "--raw").json()) == jobs  # up reads master only
    pl("create", "branch", "in@dev")  # pachd upserts: the branch keeps its head
    assert pl.files("in@dev") == {"/a": b"abc"}
    for args, message in (
        (("up@master", "--head", "master"), "cannot start a commit on an output branch"),
        (("in@master", "--head", "nosuch"), "in@nosuch: no branch or commit"),
    ):
        res = pl("create", "branch", *args, ok=False)
        assert res.rc != 0 and message in res.err, res.err
    pl("fsck")  # alias commits are whole commits of their own commit sets


def test_ancestry_references_follow_pachd(pl: Pachlocal, write: Write) -> None:
    """Before: only ``^``, ``^^`` and ``~N`` were read. pachd's ``ancestry.Parse`` also takes
    ``^N``, ``~~`` and ``.N`` (the N-th commit from the start), and refuses mixing."""
    pl("create", "repo", "in")
    ids = []
    for i in range(4):
        pl("put", "file", f"in@master:/f{i}", "-f", str(write(f"f{i}", str(i))))
        ids.append(pl("inspect", "commit", "in@master", "--raw").json()["commit"]["id"])
    expected = {
        "master": 3,
        "master^": 2,
        "master^2": 1,
        "master~~": 1,
        "master~3": 0,
        "master.1": 0,
        "master.4": 3,
        f"{ids[2]}^": 1,
    }
    for ref, index in expected.items():
        got = pl("inspect", "commit", f"in@{ref}", "--raw").json()["commit"]["id"]
        assert got == ids[index], ref
    for ref, message in (
        ("master^~", "invalid ancestry"),
        ("master.5", "has 4 commit(s)"),
        ("master^4", "has no parent"),
    ):
        res = pl("inspect", "commit", f"in@{ref}", ok=False)
        assert res.rc != 0 and message in res.err, res.err


def test_squash_and_delete_commit_sets(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    """Before: ``squash commit`` was refused and ``delete commit`` did not exist. As in
    pachd: squash removes a set whose commits all have children (which hold the data),
    delete removes a set of branch heads, and a set that created a pipeline is kept."""
    upper_pipeline(pl, tmp_path, write)
    creation = pl("list", "commit", "up", "--raw").json()[-1]["commit"]["id"]
    sets = []
    for name in ("b", "c"):
        pl("put", "file", f"in@master:/{name}", "-f", str(write(name, name * 2)))
        sets.append(pl("inspect", "commit", "in@master", "--raw").json()["commit"]["id"])
    res = pl("squash", "commit", sets[1], ok=False)
    assert "no child commit holds its data" in res.err
    res = pl("delete", "commit", sets[0], ok=False)
    assert "it has child commits" in res.err
    assert sorted(pl("squash", "commit", sets[0]).out.splitlines()) == [
        f"squashed in@{sets[0]}",
        f"squashed up@{sets[0]}",
    ]
    commits = [c["commit"]["id"] for c in pl("list", "commit", "in", "--raw").json()]
    assert sets[0] not in commits and len(commits) == 2
    assert pl("list", "job", sets[0], "--raw").json() == []
    assert pl.files("up@master") == {"/a": b"ABC", "/b": b"BB", "/c": b"CC"}
    assert pl("inspect", "commit", "in@master^", "--raw").json()["commit"]["id"] == commits[1]
    pl("delete", "commit", sets[1])
    assert pl.files("in@master") == {"/a": b"abc"} and pl.files("up@master") == {"/a": b"ABC"}
    res = pl("squash", "commit", creation, ok=False)
    assert "it updated pipeline up" in res.err
    pl("fsck")


def test_delete_branch_and_copy_file(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    """Before: neither verb existed. ``copy file`` copies a file or a folder in one commit;
    ``delete branch`` keeps the commits and guards the branches pipelines use."""
    upper_pipeline(pl, tmp_path, write)
    pl("create", "repo", "other")
    pl("put", "file", "other@master:/d/x", "-f", str(write("x", "xx")))
    pl("put", "file", "other@master:/d/y", "-f", str(write("y", "yy")))
    pl("copy", "file", "other@master^:/d/x", "in@master:/one")
    assert pl.files("in@master") == {"/a": b"abc", "/one": b"xx"}
    assert pl.files("up@master") == {"/a": b"ABC", "/one": b"XX"}  # an ordinary commit
    pl("create", "repo", "dst")
    pl("copy", "file", "other@master:/d", "dst@master:/copied")
    assert pl.files("dst@master") == {"/copied/x": b"xx", "/copied/y": b"yy"}
    res = pl("copy", "file", "other@master:/nope", "in@master:/z", ok=False)
    assert "file /nope not found" in res.err
    pl("create", "branch", "other@old", "--head", "master^")
    pl("delete", "branch", "other@old")
    assert {b["branch"] for b in pl("list", "branch", "other", "--raw").json()} == {"master"}
    for args, message in (
        (("up@master",), "it is pipeline up's output"),
        (("in@master",), "pipeline(s) up read it"),
    ):
        res = pl("delete", "branch", *args, ok=False)
        assert res.rc != 0 and message in res.err, res.err
    pl("delete", "branch", "in@master", "--force")
    assert len(pl("list", "commit", "in", "--raw").json()) == 2  # the commits stay
