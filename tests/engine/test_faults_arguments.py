"""Fault injection: bad arguments and bad input files.

Unknown repos, branches and commits, malformed references, pipeline specs and secrets
each fail in one ``pachlocal: ...`` line, print nothing on stdout and leave the whole
state (metadata and files) as it was. A glob pachd accepts at creation but cannot
parse fails the job readably, and an update recovers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pachlocal.cli import main

from .conftest import Pachlocal, job_rows
from .faults_support import Write, assert_consistent, leftovers, one_line_error, pipeline_spec

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds"},
    "data": {"token": "c2VjcmV0"},
}
GOOD_SPEC = pipeline_spec("copy", "cp $in /pfs/out/")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state with repo ``in`` (one file), pipeline ``copy`` and secret ``creds``."""
    tmp = tmp_path_factory.mktemp("template")
    (tmp / "a").write_text("x")
    (tmp / "copy.json").write_text(json.dumps(GOOD_SPEC))
    (tmp / "creds.json").write_text(json.dumps(SECRET))
    old = os.environ.get("PACHLOCAL_HOME")
    os.environ["PACHLOCAL_HOME"] = str(tmp / "state")
    try:
        for args in (
            ["create", "repo", "in"],
            ["put", "file", "in@master:/a", "-f", str(tmp / "a")],
            ["-q", "create", "pipeline", "-f", str(tmp / "copy.json")],
            ["create", "secret", "-f", str(tmp / "creds.json")],
        ):
            assert main(args) == 0, args
    finally:
        if old is None:
            del os.environ["PACHLOCAL_HOME"]
        else:
            os.environ["PACHLOCAL_HOME"] = old
    return tmp / "state"


def snapshot(p: Pachlocal) -> dict[str, Any]:
    """Everything a failed command must leave as it was."""
    repos = p("list", "repo", "--raw").json()
    return {
        "repos": repos,
        "branches": {r["name"]: p("list", "branch", r["name"], "--raw").json() for r in repos},
        "commits": p("list", "commit", "--raw").json(),
        "pipelines": p("list", "pipeline", "--raw").json(),
        "jobs": p("list", "job", "--raw").json(),
        "secrets": p("list", "secret", "--raw").json(),
        "files": {
            str(f.relative_to(p.home)): f.read_bytes()
            for d in ("objects", "secrets", "logs")
            for f in sorted((p.home / d).rglob("*"))
            if f.is_file()
        },
    }


def spec_with(**changes: Any) -> str:
    spec = json.loads(json.dumps(GOOD_SPEC))
    spec["pipeline"]["name"] = "fresh"
    for path, value in changes.items():
        node = spec
        *parents, last = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            del node[last]
        else:
            node[last] = value
    return json.dumps(spec)


def secret_with(**changes: Any) -> str:
    doc = {**SECRET, "metadata": {"name": "fresh"}, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not None})


# (arguments, files to write first, fragments the error line must contain); FILE is the
# written file's path, DATA a local data file
CASES: dict[str, tuple[list[str], str | bytes | None, list[str]]] = {
    # unknown repo
    "put-unknown-repo": (
        ["put", "file", "nope@master:/x", "-f", "DATA"],
        None,
        ["repo nope not found"],
    ),
    "get-unknown-repo": (["get", "file", "nope@master:/a"], None, ["repo nope not found"]),
    "list-file-unknown-repo": (["list", "file", "nope@master"], None, ["repo nope not found"]),
    "list-branch-unknown-repo": (["list", "branch", "nope"], None, ["repo nope not found"]),
    "delete-unknown-repo": (["delete", "repo", "nope"], None, ["repo nope not found"]),
    "start-commit-unknown-repo": (
        ["start", "commit", "nope@master"],
        None,
        ["repo nope not found"],
    ),
    "delete-file-unknown-repo": (
        ["delete", "file", "nope@master:/a"],
        None,
        ["repo nope not found"],
    ),
    "spec-input-unknown-repo": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(input={"pfs": {"repo": "nope", "glob": "/*"}}),
        ["pipeline fresh: input repo nope not found"],
    ),
    # unknown branch
    "get-unknown-branch": (["get", "file", "in@dev:/a"], None, ["in@dev: no branch or commit"]),
    "list-file-unknown-branch": (["list", "file", "in@dev"], None, ["in@dev: no branch or commit"]),
    "glob-unknown-branch": (["glob", "file", "in@dev:/*"], None, ["in@dev: no branch or commit"]),
    "delete-file-unknown-branch": (
        ["delete", "file", "in@dev:/a"],
        None,
        ["in@dev: no branch or commit"],
    ),
    "finish-unknown-branch": (["finish", "commit", "in@dev"], None, ["commit in@dev not found"]),
    "diff-unknown-branch": (["diff", "file", "in@dev:/a"], None, ["in@dev: no branch or commit"]),
    # bad commit references
    "ref-nonexistent": (
        ["inspect", "commit", "in@nonexistent"],
        None,
        ["in@nonexistent: no branch or commit with that name"],
    ),
    "ref-unknown-id": (
        ["inspect", "commit", "in@" + "0" * 32],
        None,
        [f"commit in@{'0' * 32} not found"],
    ),
    "ref-empty-branch": (["inspect", "commit", "in@"], None, ["bad commit reference 'in@'"]),
    "ref-empty-repo": (["inspect", "commit", "@x"], None, ["bad commit reference '@x'"]),
    "ref-at-only": (["list", "commit", "@"], None, ["bad commit reference '@'"]),
    "ref-empty": (["inspect", "commit", ""], None, ["bad commit reference ''"]),
    "ref-bad-ancestry": (["inspect", "commit", "in@master~x"], None, ["bad commit reference"]),
    "ref-past-root": (["inspect", "commit", "in@master^^"], None, ["has no parent"]),
    "ref-garbage": (["inspect", "commit", "in@@#!~"], None, ["bad commit reference 'in@@#!~'"]),
    "file-ref-empty-branch": (["get", "file", "in@:/a"], None, ["bad file reference 'in@:/a'"]),
    "file-ref-empty-repo": (["list", "file", "@x:/"], None, ["bad file reference '@x:/'"]),
    "glob-ref-empty-branch": (["glob", "file", "in@:/*"], None, ["bad commit reference 'in@'"]),
    "wait-garbage": (["wait", "commit", "garbage"], None, ["commit set garbage not found"]),
    # pipeline specs
    "spec-not-json": (
        ["create", "pipeline", "-f", "FILE"],
        '{"pipeline": {"name": "fresh"},',
        ["FILE: invalid JSON"],
    ),
    "spec-not-yaml": (["create", "pipeline", "-f", "FILE"], "pipeline: [", ["FILE: invalid YAML"]),
    "spec-binary": (
        ["create", "pipeline", "-f", "FILE"],
        b"\xff\xfe\x00",
        ["cannot read FILE: not UTF-8 text"],
    ),
    "spec-empty": (["create", "pipeline", "-f", "FILE"], "", ["FILE: no pipeline spec"]),
    "spec-scalar": (["create", "pipeline", "-f", "FILE"], "42", ["expected a pipeline spec"]),
    "spec-unknown-key": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(datumTriez=3),
        ["datumTriez: unknown field"],
    ),
    "spec-unknown-nested-key": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(input__pfs__globb="/*"),
        ["input.pfs.globb: unknown field"],
    ),
    "spec-wrong-type": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(datumTries="three"),
        ["datumTries: expected an integer"],
    ),
    "spec-wrong-nested-type": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(transform__cmd="cp a b"),
        ["transform.cmd: expected a list"],
    ),
    "spec-missing-cmd": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(transform__cmd=None),
        ["transform.cmd: required"],
    ),
    "spec-missing-name": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(pipeline__name=None),
        ["pipeline.name: required"],
    ),
    "spec-missing-glob": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(input__pfs__glob=None),
        ["input.pfs.glob: required"],
    ),
    "spec-unknown-secret": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(transform__secrets=[{"name": "absent", "key": "k", "envVar": "K"}]),
        ["secret absent not found"],
    ),
    "spec-secret-key-missing": (
        ["create", "pipeline", "-f", "FILE"],
        spec_with(transform__secrets=[{"name": "creds", "key": "nokey", "envVar": "K"}]),
        ["secret creds has no key 'nokey'"],
    ),
    "spec-existing-pipeline": (
        ["create", "pipeline", "-f", "FILE"],
        json.dumps(GOOD_SPEC),
        ["pipeline copy already exists"],
    ),
    "spec-missing-file": (
        ["create", "pipeline", "-f", "/nonexistent/x.json"],
        None,
        ["cannot read"],
    ),
    # secrets
    "secret-not-json": (["create", "secret", "-f", "FILE"], "{bad", ["FILE: not valid JSON"]),
    "secret-binary": (
        ["create", "secret", "-f", "FILE"],
        b"\xff\xfe",
        ["cannot read FILE: not UTF-8 text"],
    ),
    "secret-not-object": (["create", "secret", "-f", "FILE"], "[]", ["must be a JSON object"]),
    "secret-no-data": (
        ["create", "secret", "-f", "FILE"],
        secret_with(data=None),
        ["secret fresh has no data or stringData"],
    ),
    "secret-not-base64": (
        ["create", "secret", "-f", "FILE"],
        secret_with(data={"token": "not base64!"}),
        ["data.token: value is not valid base64"],
    ),
    "secret-data-not-map": (
        ["create", "secret", "-f", "FILE"],
        secret_with(data=["token"]),
        ["data: expected an object"],
    ),
    "secret-wrong-kind": (
        ["create", "secret", "-f", "FILE"],
        secret_with(kind="ConfigMap"),
        ["kind: expected 'Secret', got 'ConfigMap'"],
    ),
    "secret-bad-name": (
        ["create", "secret", "-f", "FILE"],
        secret_with(metadata={"name": "Not_DNS"}),
        ["metadata.name"],
    ),
    "secret-unknown-field": (
        ["create", "secret", "-f", "FILE"],
        secret_with(dataa={}),
        ["dataa: unknown field"],
    ),
    "secret-exists": (
        ["create", "secret", "-f", "FILE"],
        json.dumps({**SECRET, "data": {"token": "b3RoZXI="}}),
        ["secret creds already exists"],
    ),
    "secret-missing-file": (
        ["create", "secret", "-f", "/nonexistent/s.json"],
        None,
        ["cannot read"],
    ),
    "delete-unknown-secret": (["delete", "secret", "nope"], None, ["secret nope not found"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_fail_in_one_line_and_change_nothing(
    pl: Pachlocal, template: Path, tmp_path: Path, case: str
) -> None:
    args, content, fragments = CASES[case]
    shutil.copytree(template, pl.home)
    path = tmp_path / "input.json"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "data").write_text("data")
    args = [
        str(path) if a == "FILE" else str(tmp_path / "data") if a == "DATA" else a for a in args
    ]
    before = snapshot(pl)
    res = pl(*args, ok=False)
    one_line_error(res, *(f.replace("FILE", str(path)) for f in fragments))
    assert res.out == ""
    assert snapshot(pl) == before
    assert leftovers(pl.home) == []


def test_bad_glob_in_a_spec_fails_the_job_readably_and_an_update_recovers(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    """pachd accepts any glob string at creation; the job then fails naming it."""
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    bad = pipeline_spec("globbed", "cp $in /pfs/out/", glob="/[a")
    res = pl("create", "pipeline", "-f", pl.spec(tmp_path, bad))
    (job,) = job_rows(pl, "globbed")
    reason = "cannot form datums: input 'in': invalid glob '/[a': unexpected end of input"
    assert (job["state"], job["reason"], job["total"]) == ("failure", reason, 0)
    assert "Traceback" not in res.err and reason in res.err
    assert pl("inspect", "commit", "globbed@master", "--raw").json()["error"] == reason
    assert pl.files("globbed@master") == {}
    pl(
        "update",
        "pipeline",
        "-f",
        pl.spec(tmp_path, pipeline_spec("globbed", bad["transform"]["cmd"][2])),
    )
    assert pl.files("globbed@master") == {"/a": b"x"}
    assert_consistent(pl)
