"""The engine end to end through its CLI: datums, incremental jobs, failures, provenance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Pachlocal

Write = Callable[[str, str | bytes], Path]


def copy_spec(name: str, repo: str, glob: str, script: str, **extra: Any) -> dict[str, Any]:
    """A pipeline whose command is a plain shell one-liner (the shell is the user's, not ours)."""
    return {
        "pipeline": {"name": name},
        "transform": {
            "image": "ubuntu:20.04",
            "cmd": ["sh", "-c", script],
            **extra.pop("transform", {}),
        },
        "input": {"pfs": {"repo": repo, "glob": glob}},
        **extra,
    }


UPPER = "for f in /pfs/in/*; do tr a-z A-Z < $f > /pfs/out/$(basename $f); done"


def jobs(pl: Pachlocal, pipeline: str) -> list[dict[str, Any]]:
    return pl("list", "job", "-p", pipeline, "--raw").json()  # type: ignore[no-any-return]


def datum_states(pl: Pachlocal, pipeline: str, job: str) -> dict[str, str]:
    rows = pl("list", "datum", f"{pipeline}@{job}", "--raw").json()
    return {d["inputs"][0]["path"]: d["state"] for d in rows}


def test_shell_one_liner_runs_unmodified(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a.txt", "-f", str(write("a.txt", "hello\n")))
    pl("put", "file", "in@master:/b.txt", "-f", str(write("b.txt", "world\n")))
    pl("create", "pipeline", "-f", pl.spec(tmp_path, copy_spec("upper", "in", "/*", UPPER)))
    assert pl.files("upper@master") == {"/a.txt": b"HELLO\n", "/b.txt": b"WORLD\n"}
    (job,) = jobs(pl, "upper")
    assert (job["state"], job["processed"], job["skipped"]) == ("success", 2, 0)


def test_incremental_skip_inherit_change_and_delete(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    pl("create", "repo", "in")
    for name, text in (("a", "one"), ("b", "two")):
        pl("put", "file", f"in@master:/{name}", "-f", str(write(name, text)))
    pl("create", "pipeline", "-f", pl.spec(tmp_path, copy_spec("upper", "in", "/*", UPPER)))
    pl("put", "file", "in@master:/c", "-f", str(write("c", "three")))
    newest = jobs(pl, "upper")[0]
    assert datum_states(pl, "upper", newest["id"]) == {
        "/a": "skipped",
        "/b": "skipped",
        "/c": "success",
    }
    assert pl.files("upper@master") == {"/a": b"ONE", "/b": b"TWO", "/c": b"THREE"}

    pl("put", "file", "in@master:/a", "-f", str(write("a2", "uno")))
    newest = jobs(pl, "upper")[0]
    assert datum_states(pl, "upper", newest["id"]) == {
        "/a": "success",
        "/b": "skipped",
        "/c": "skipped",
    }
    pl("delete", "file", "in@master:/b")
    assert pl.files("upper@master") == {"/a": b"UNO", "/c": b"THREE"}


def test_update_keeps_salt_and_reprocess_draws_a_new_one(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    spec = copy_spec("upper", "in", "/*", UPPER)
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    spec["description"] = "new code, same datums"
    pl("update", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert (jobs(pl, "upper")[0]["processed"], jobs(pl, "upper")[0]["skipped"]) == (0, 1)
    pl("update", "pipeline", "-f", pl.spec(tmp_path, spec), "--reprocess")
    assert (jobs(pl, "upper")[0]["processed"], jobs(pl, "upper")[0]["skipped"]) == (1, 0)


def test_two_datums_writing_one_path_fail_the_job(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "1")))
    pl("put", "file", "in@master:/b", "-f", str(write("b", "2")))
    spec = copy_spec("clash", "in", "/*", "cat /pfs/in/* > /pfs/out/same")
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    (job,) = jobs(pl, "clash")
    assert job["state"] == "failure"
    assert "duplicate path output by different datums: /same" in job["reason"]
    commit = pl("inspect", "commit", f"clash@{job['id']}", "--raw").json()
    assert "duplicate path output by different datums" in commit["error"]


def test_retries_then_success(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    counter = tmp_path / "attempts"
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    script = f"echo try >> {counter}; [ $(wc -l < {counter}) -ge 2 ] && cp /pfs/in/a /pfs/out/a"
    pl("create", "pipeline", "-f", pl.spec(tmp_path, copy_spec("flaky", "in", "/*", script)))
    (job,) = jobs(pl, "flaky")
    rows = pl("list", "datum", f"flaky@{job['id']}", "--raw").json()
    assert [(r["state"], r["attempts"]) for r in rows] == [("success", 2)]
    logs = pl("logs", "-p", "flaky", "--job", job["id"]).out
    assert "attempt 1/3 failed: command exited with code 1" in logs


def test_err_cmd_recovers_and_failures_block_downstream(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/bad", "-f", str(write("bad", "x")))
    pl("put", "file", "in@master:/good", "-f", str(write("good", "y")))
    script = "case $in in */bad) exit 3;; esac; cp $in /pfs/out/"
    recovering = copy_spec("rec", "in", "/*", script, datumTries=1, transform={"errCmd": ["true"]})
    pl("create", "pipeline", "-f", pl.spec(tmp_path, recovering))
    (job,) = jobs(pl, "rec")
    assert job["state"] == "success"
    assert datum_states(pl, "rec", job["id"]) == {"/bad": "recovered", "/good": "success"}
    assert pl.files("rec@master") == {"/good": b"y"}

    failing = copy_spec("fail", "in", "/*", script, datumTries=2)
    pl("create", "pipeline", "-f", pl.spec(tmp_path, failing))
    downstream = copy_spec("after", "fail", "/", "cp -r /pfs/fail/. /pfs/out/")
    pl("create", "pipeline", "-f", pl.spec(tmp_path, downstream))
    pl("put", "file", "in@master:/more", "-f", str(write("more", "z")))
    failed = jobs(pl, "fail")[0]
    assert failed["state"] == "failure"
    assert "command exited with code 3" in failed["reason"]
    after = jobs(pl, "after")[0]
    assert after["id"] == failed["id"]
    assert after["state"] == "unrunnable"


def test_accept_return_code_and_stdin(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    spec = {
        "pipeline": {"name": "stdin"},
        "transform": {
            "cmd": ["sh"],
            "stdin": ["cp /pfs/in/a /pfs/out/a", "exit 7"],
            "acceptReturnCode": [7],
        },
        "input": {"pfs": {"repo": "in", "glob": "/"}},
    }
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert jobs(pl, "stdin")[0]["state"] == "success"
    assert pl.files("stdin@master") == {"/a": b"x"}


def test_worker_environment(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/dir/a", "-f", str(write("a", "x")))
    script = (
        "echo $in > /pfs/out/in; echo $in_COMMIT > /pfs/out/commit; echo $PACH_DATUM_ID > /pfs/out/datum; "
        "echo $PPS_PIPELINE_NAME $PACH_JOB_ID $PACH_OUTPUT_COMMIT_ID $GREETING > /pfs/out/rest"
    )
    spec = copy_spec("envs", "in", "/*", script, transform={"env": {"GREETING": "hi"}})
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    (job,) = jobs(pl, "envs")
    files = pl.files("envs@master")
    (datum,) = pl("list", "datum", f"envs@{job['id']}", "--raw").json()
    head = pl("inspect", "commit", "in@master", "--raw").json()["commit"]["id"]
    assert files == {
        "/in": b"/pfs/in/dir\n",
        "/commit": f"{head}\n".encode(),
        "/datum": f"{datum['datum']}\n".encode(),
        "/rest": f"envs {job['id']} {job['id']} hi\n".encode(),
    }


def test_secrets_as_env_and_files(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"password": "s3cr3t-value"},
        "data": {"key.json": "eyJrIjogMX0="},
    }
    path = write("secret.json", json.dumps(secret))
    pl("create", "secret", "-f", str(path))
    listing = pl("list", "secret")
    assert "creds" in listing.out and "s3cr3t-value" not in listing.out
    assert (pl.home / "secrets" / "creds.json").stat().st_mode & 0o777 == 0o600
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    digest = hashlib.sha256(b"s3cr3t-value").hexdigest()
    spec = copy_spec(
        "sec",
        "in",
        "/*",
        # compare a digest: the spec itself must not contain the secret value
        f'[ "$(printf %s "$PGPASSWORD" | sha256sum | cut -c1-64)" = {digest} ] '
        "&& cat /var/secrets/pachlocal-test/key.json > /pfs/out/key",
        transform={
            "secrets": [
                {"name": "creds", "key": "password", "envVar": "PGPASSWORD"},
                {"name": "creds", "mountPath": "/var/secrets/pachlocal-test"},
            ]
        },
    )
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert jobs(pl, "sec")[0]["state"] == "success"
    assert pl.files("sec@master") == {"/key": b'{"k": 1}'}
    # the values live in secrets/ only: not in scratch, logs, metadata or objects
    for path in pl.home.rglob("*"):
        if path.is_file() and pl.home / "secrets" not in path.parents:
            assert b"s3cr3t-value" not in path.read_bytes(), path
    assert not (pl.home / "work" / "secrets").exists() or not any(
        p.is_file() for p in (pl.home / "work" / "secrets").rglob("*")
    )
    missing = copy_spec(
        "nosec",
        "in",
        "/*",
        "true",
        transform={"secrets": [{"name": "absent", "key": "k", "envVar": "X"}]},
    )
    res = pl("create", "pipeline", "-f", pl.spec(tmp_path, missing), ok=False)
    assert res.rc == 1 and "secret absent not found" in res.err


def test_commit_sets_and_provenance(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    pl("create", "pipeline", "-f", pl.spec(tmp_path, copy_spec("first", "in", "/*", UPPER)))
    second = copy_spec("second", "first", "/*", "cp /pfs/first/* /pfs/out/")
    pl("create", "pipeline", "-f", pl.spec(tmp_path, second))
    pl("put", "file", "in@master:/b", "-f", str(write("b", "y")))
    user = pl("inspect", "commit", "in@master", "--raw").json()
    set_id = user["commit"]["id"]
    members = pl("list", "commit", set_id, "--raw").json()
    assert sorted((m["commit"]["repo"]["name"], m["origin"]["kind"]) for m in members) == [
        ("first", "AUTO"),
        ("in", "USER"),
        ("second", "AUTO"),
    ]
    second_commit = pl("inspect", "commit", "second@master", "--raw").json()
    assert second_commit["commit"]["id"] == set_id
    assert [(p["repo"]["name"], p["id"]) for p in second_commit["direct_provenance"]] == [
        ("first", set_id)
    ]
    prov = second_commit["provenance"]
    assert (
        prov["pipeline"] == "second"
        and prov["image"] == "ubuntu:20.04"
        and prov["spec_version"] == 1
    )
    assert pl("wait", "commit", set_id).rc == 0


def test_parallel_datums_each_see_their_own_pfs(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    pl("create", "repo", "in")
    for i in range(6):
        pl("put", "file", f"in@master:/f{i}", "-f", str(write(f"f{i}", str(i))))
    # each datum sees exactly one input file, whatever runs beside it
    script = "ls /pfs/in > /pfs/out/$(ls /pfs/in)"
    spec = copy_spec("par", "in", "/*", script, parallelismSpec={"constant": 2})
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert pl.files("par@master") == {f"/f{i}": f"f{i}\n".encode() for i in range(6)}


def test_inputs_are_read_only(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "original")))
    spec = copy_spec(
        "vandal", "in", "/*", "echo changed > /pfs/in/a && cp /pfs/in/a /pfs/out/a", datumTries=1
    )
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert jobs(pl, "vandal")[0]["state"] == "failure"
    assert pl.files("in@master") == {"/a": b"original"}
    assert pl("fsck").rc == 0


def test_symlinked_outputs_are_followed(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "linked")))
    spec = copy_spec("link", "in", "/*", "ln -s /pfs/in/a /pfs/out/a")
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert pl.files("link@master") == {"/a": b"linked"}


def test_trigger_on_commit_count(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    spec = copy_spec("batch", "in", "/", "ls /pfs/in | wc -l > /pfs/out/count")
    spec["input"]["pfs"]["trigger"] = {"commits": 3}
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    branches = {b["branch"] for b in pl("list", "branch", "in", "--raw").json()}
    assert branches == {"master", "batch-trigger-1"}
    counts = []
    for i in range(7):
        pl("put", "file", f"in@master:/f{i}", "-f", str(write(f"f{i}", "x")))
        counts.append(pl.files("batch@master").get("/count"))
    # the branch moves every third commit, the first time too (pachd's empty head)
    assert counts == [None, None, b"3\n", b"3\n", b"3\n", b"6\n", b"6\n"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["list", "commit", "nosuchrepo"], "repo nosuchrepo not found"),
        (["inspect", "commit", "in@nosuchbranch"], "in@nosuchbranch: no branch or commit"),
        (["get", "file", "in@master:/missing"], "file /missing not found"),
        (["glob", "file", "in@master:[bad"], "glob"),
        (["list", "datum", "nojobref"], "expected pipeline@job"),
        (["create", "pipeline", "-f", "/nonexistent.json"], "cannot read /nonexistent.json"),
    ],
)
def test_cli_errors_are_one_line(
    pl: Pachlocal, write: Write, args: list[str], message: str
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    res = pl(*args, ok=False)
    assert res.rc == 1
    assert message in res.err
    assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1


def test_a_trigger_firing_mid_set_feeds_the_fresh_output_downstream(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    """features -> model (triggered) and features + model -> predict, in one commit set."""
    pl("create", "repo", "features")
    model = copy_spec("model", "features", "/", "cat /pfs/features/* > /pfs/out/model")
    model["input"]["pfs"]["trigger"] = {"commits": 2}
    pl("create", "pipeline", "-f", pl.spec(tmp_path, model))
    predict = {
        "pipeline": {"name": "predict"},
        "transform": {"cmd": ["sh", "-c", "cat /pfs/model/model /pfs/features/f > /pfs/out/p"]},
        "input": {
            "cross": [
                {"pfs": {"repo": "features", "glob": "/"}},
                {"pfs": {"repo": "model", "glob": "/"}},
            ]
        },
    }
    pl("create", "pipeline", "-f", pl.spec(tmp_path, predict))
    pl("put", "file", "features@master:/f", "-f", str(write("f1", "v1\n")))  # 1 new: deferred
    assert pl.files("predict@master") == {}  # no model yet: no datum
    pl("put", "file", "features@master:/f", "-f", str(write("f2", "v2\n")))
    # the second commit fires the trigger: model and predict run in the same set
    set_id = pl("inspect", "commit", "features@master", "--raw").json()["commit"]["id"]
    jobs = {j["pipeline"]: j for j in pl("list", "job", set_id, "--raw").json()}
    assert {name: j["state"] for name, j in jobs.items()} == {
        "model": "success",
        "predict": "success",
    }
    assert pl.files("predict@master") == {"/p": b"v2\nv2\n"}
    pl("put", "file", "features@master:/f", "-f", str(write("f3", "v3\n")))  # deferred again
    assert pl.files("predict@master") == {"/p": b"v2\nv3\n"}


def test_path_remapping_fallback_runs_the_same_pipeline(
    pl: Pachlocal, tmp_path: Path, write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without mount namespaces, /pfs and secret mount paths are rewritten to scratch dirs."""
    monkeypatch.setenv("PACHLOCAL_SANDBOX", "remap")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tok"},
        "stringData": {"t": "abc"},
    }
    pl("create", "secret", "-f", str(write("tok.json", json.dumps(secret))))
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "hello")))
    script = UPPER + "; cat /var/secrets/tok/t > /pfs/out/t"
    spec = copy_spec(
        "upper",
        "in",
        "/*",
        script,
        transform={"secrets": [{"name": "tok", "mountPath": "/var/secrets/tok"}]},
    )
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    assert pl.files("upper@master") == {"/a": b"HELLO", "/t": b"abc"}
    assert not Path("/var/secrets/tok").exists() or not any(Path("/var/secrets/tok").iterdir())
    # inputs are copies in this mode: a write to an input cannot reach the object store
    vandal = copy_spec("vandal", "in", "/*", "echo x > /pfs/in/a && cp /pfs/in/a /pfs/out/a")
    pl("create", "pipeline", "-f", pl.spec(tmp_path, vandal))
    assert pl.files("in@master") == {"/a": b"hello"}
    assert pl("fsck").rc == 0
