"""Tests for pachlocal.spec: loading, strict validation and normalisation of specs."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pachlocal.spec import (
    SpecError,
    duration_seconds,
    iter_input_names,
    load_pipeline_specs,
    load_spec_documents,
    parse_pipeline_spec,
    spec_fingerprint,
)


def minimal(**extra: Any) -> dict[str, Any]:
    """A small valid spec; keyword arguments replace top-level fields."""
    spec: dict[str, Any] = {
        "pipeline": {"name": "edges"},
        "transform": {"cmd": ["python3", "/edges.py"]},
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
    }
    spec.update(extra)
    return spec


def error_of(doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_pipeline_spec(doc)
    return str(info.value)


CAMEL = {
    "pipeline": {"name": "p", "project": {"name": "default"}},
    "transform": {
        "image": "python:3.11",
        "cmd": ["python3", "x.py"],
        "errCmd": ["true"],
        "env": {"A": "1"},
        "secrets": [{"name": "s", "key": "k", "envVar": "E"}],
        "acceptReturnCode": [2],
        "workingDir": "/w",
    },
    "parallelismSpec": {"constant": 2},
    "datumTries": 5,
    "datumTimeout": "60s",
    "jobTimeout": "3600s",
    "outputBranch": "out-branch",
    "reprocessSpec": "every_job",
    "resourceRequests": {"cpu": 0.5, "memory": "1Gi"},
    "schedulingSpec": {"nodeSelector": {"k": "v"}},
    "input": {
        "cross": [
            {"pfs": {"repo": "a", "glob": "/*", "joinOn": "$1", "emptyFiles": True}},
            {"cron": {"name": "tick", "spec": "@hourly", "start": "2024-05-01T02:00:00Z"}},
        ]
    },
}
SNAKE = {
    "pipeline": {"name": "p", "project": {"name": "default"}},
    "transform": {
        "image": "python:3.11",
        "cmd": ["python3", "x.py"],
        "err_cmd": ["true"],
        "env": {"A": "1"},
        "secrets": [{"name": "s", "key": "k", "env_var": "E"}],
        "accept_return_code": [2],
        "working_dir": "/w",
    },
    "parallelism_spec": {"constant": "2"},  # uint64 may arrive as a string
    "datum_tries": 5,
    "datum_timeout": "60.000s",
    "job_timeout": "3600s",
    "output_branch": "out-branch",
    "reprocess_spec": "every_job",
    "resource_requests": {"cpu": "0.5", "memory": "1Gi"},
    "scheduling_spec": {"node_selector": {"k": "v"}},
    "input": {
        "cross": [
            {"pfs": {"repo": "a", "glob": "/*", "join_on": "$1", "empty_files": True}},
            {"cron": {"name": "tick", "spec": "@hourly", "start": "2024-05-01T04:00:00+02:00"}},
        ]
    },
}


def test_camel_and_snake_case_give_the_same_spec() -> None:
    camel, snake = parse_pipeline_spec(CAMEL), parse_pipeline_spec(SNAKE)
    assert camel == snake
    assert spec_fingerprint(camel) == spec_fingerprint(snake)
    assert camel["transform"]["errCmd"] == ["true"]
    assert camel["parallelismSpec"] == {"constant": 2}
    assert camel["input"]["cross"][1]["cron"]["start"] == "2024-05-01T02:00:00Z"


def test_parse_does_not_mutate_its_argument() -> None:
    doc = copy.deepcopy(CAMEL)
    parse_pipeline_spec(doc)
    assert doc == CAMEL


def test_loads_json_list_yaml_documents_and_concatenated_json() -> None:
    one, two = minimal(), minimal(pipeline={"name": "second"})
    as_list = json.dumps([one, two])
    concatenated = json.dumps(one) + "\n" + json.dumps(two, indent=2)
    yaml_docs = (
        "---\npipeline: {name: edges}\ntransform:\n  cmd: [python3, /edges.py]\n"
        "input: {pfs: {repo: images, glob: '/*'}}\n---\n---\n" + json.dumps(two) + "\n"
    )
    # JSON documents between `---` lines, with a tab YAML would refuse
    json_docs = json.dumps(one) + "\t\n---\n" + json.dumps(two) + "\n---\n"
    for text in (as_list, concatenated, yaml_docs, json_docs):
        assert load_spec_documents(text) == [one, two]
    assert load_spec_documents("") == []


def test_yaml_scalars_are_read_as_pachctl_reads_them() -> None:
    docs = load_spec_documents("pipeline: {name: no}\ntransform: {cmd: [on, '1', 1:30]}\n")
    assert docs == [{"pipeline": {"name": "no"}, "transform": {"cmd": ["on", "1", "1:30"]}}]
    start = load_spec_documents("start: 2024-05-01T00:00:00Z\n")[0]["start"]
    assert start == "2024-05-01T00:00:00Z"
    text = "pipeline: {name: p}\ntransform: {cmd: [a]}\ninput: {pfs: {repo: r, glob: /, lazy: yes}}"
    with pytest.raises(SpecError, match=r"input\.pfs\.lazy: expected true or false"):
        load_pipeline_specs(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"pipeline": {"name": "a"}, "pipeline": {}}', "duplicate key 'pipeline'"),
        ("pipeline: {}\npipeline: {}\n", "duplicate key 'pipeline'"),
        ("[1]", "f.yaml, document 1 item 1: expected a pipeline spec object, got 1"),
        ("--- {}\n--- just text\n", "f.yaml, document 2: expected a pipeline spec object"),
        ("a: [", "f.yaml: invalid YAML"),
        ('{"a": ', "f.yaml: invalid JSON"),
    ],
)
def test_load_errors_name_the_source(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[")):
        load_spec_documents(text, "f.yaml")


def test_load_pipeline_specs_names_file_and_document() -> None:
    good, bad = minimal(), minimal(datumTries="x")
    text = json.dumps(good) + json.dumps(bad)
    with pytest.raises(SpecError) as info:
        load_pipeline_specs(text, "specs/p.json")
    assert (
        str(info.value)
        == 'specs/p.json, document 2: datumTries: expected an integer (int64), got "x"'
    )
    assert info.value.path == "datumTries"
    assert [s["pipeline"]["name"] for s in load_pipeline_specs(json.dumps([good, good]))] == [
        "edges",
        "edges",
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("transform", "image"), "ubuntu:20.04"),
        (("outputBranch",), "master"),
        (("datumTries",), 3),
        (("reprocessSpec",), "until_success"),
        (("parallelismSpec", "constant"), 1),
        (("input", "pfs", "name"), "images"),
        (("input", "pfs", "branch"), "master"),
        (("input", "pfs", "repoType"), "user"),
    ],
)
def test_defaults(path: tuple[str, ...], expected: Any) -> None:
    value: Any = parse_pipeline_spec(minimal())
    for key in path:
        value = value[key]
    assert value == expected


def test_zero_values_take_defaults_like_pachd() -> None:
    spec = parse_pipeline_spec(minimal(datumTries=0, outputBranch="", parallelismSpec={}))
    assert (spec["datumTries"], spec["outputBranch"], spec["parallelismSpec"]) == (
        3,
        "master",
        {"constant": 1},
    )
    lazy = parse_pipeline_spec(minimal(input={"pfs": {"repo": "r", "glob": "/", "lazy": False}}))
    assert "lazy" not in lazy["input"]["pfs"]


def test_cron_defaults_and_glob_cleaning() -> None:
    spec = parse_pipeline_spec(
        minimal(
            input={
                "cross": [
                    {"cron": {"name": "tick", "spec": "*/5 * * * *"}},
                    {"pfs": {"repo": "r", "glob": "*/"}},
                ]
            }
        )
    )
    cron, pfs = spec["input"]["cross"][0]["cron"], spec["input"]["cross"][1]["pfs"]
    assert cron == {"name": "tick", "spec": "*/5 * * * *", "repo": "edges_tick", "overwrite": False}
    assert pfs["glob"] == "/*"


def test_trigger_branches_are_numbered_like_pachd() -> None:
    trigger = {"size": "1MB"}
    spec = parse_pipeline_spec(
        minimal(
            input={
                "cross": [
                    {"pfs": {"repo": "r", "name": "z", "glob": "/", "trigger": trigger}},
                    {"pfs": {"repo": "r", "name": "a", "glob": "/", "trigger": trigger}},
                ]
            }
        )
    )
    a, z = (c["pfs"] for c in spec["input"]["cross"])  # stored sorted by name, as pachd does
    assert (a["name"], z["name"]) == ("a", "z")
    assert (a["branch"], z["branch"]) == ("edges-trigger-1", "edges-trigger-2")
    assert a["trigger"] == {"size": "1MB", "branch": "master"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (minimal(bogusKey=1), "bogusKey: unknown field"),
        (minimal(transform={"cmd": ["a"], "bogusKey": 1}), "transform.bogusKey: unknown field"),
        (
            minimal(input={"pfs": {"repo": "r", "glob": "/", "bogus": 1}}),
            "input.pfs.bogus: unknown field",
        ),
        (
            minimal(
                input={
                    "cross": [
                        {"pfs": {"repo": "a", "glob": "/"}},
                        {"pfs": {"repo": "b", "glob": "/", "bogus": True}},
                    ]
                }
            ),
            "input.cross[1].pfs.bogus: unknown field",
        ),
        (minimal(transform={"Cmd": ["a"]}), "transform.Cmd: unknown field (did you mean 'cmd'?)"),
        (minimal(egress={"url": "s3://b"}), "egress.url: unknown field (did you mean 'URL'?)"),
    ],
)
def test_unknown_keys_are_rejected_with_their_path(doc: dict[str, Any], message: str) -> None:
    assert error_of(doc) == message


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            minimal(transform={"cmd": "python3 x.py"}),
            'transform.cmd: expected a list, got "python3 x.py"',
        ),
        (minimal(datumTries="x"), 'datumTries: expected an integer (int64), got "x"'),
        (minimal(datumTries=1.5), "datumTries: expected an integer (int64), got 1.5"),
        (minimal(datumTries=True), "datumTries: expected an integer (int64), got true"),
        (
            minimal(input={"pfs": {"repo": "r", "glob": 3}}),
            "input.pfs.glob: expected a string, got 3",
        ),
        (
            minimal(transform={"cmd": ["a"], "env": {"N": 3}}),
            "transform.env.N: expected a string, got 3",
        ),
        (minimal(transform={"cmd": ["a", None]}), "transform.cmd[1]: null is not allowed here"),
        (minimal(transform={"cmd": ["a", 1]}), "transform.cmd[1]: expected a string, got 1"),
        (
            minimal(parallelismSpec={"constant": -1}),
            "parallelismSpec.constant: expected an integer (uint64), got -1",
        ),
        (minimal(s3Out="yes"), 's3Out: expected true or false, got "yes"'),
        (minimal(transform=["cmd"]), "transform: expected an object, got a list"),
        (
            minimal(resourceRequests={"cpu": "lots"}),
            'resourceRequests.cpu: expected a finite number, got "lots"',
        ),
        (
            minimal(tolerations=[{"operator": "SOMETIMES"}]),
            'tolerations[0].operator: expected one of EMPTY, EXISTS, EQUAL, got "SOMETIMES"',
        ),
        (
            minimal(service={"internalPort": 2**31}),
            "service.internalPort: expected an integer (int32)",
        ),
    ],
)
def test_wrong_types_are_rejected_naming_the_key(doc: dict[str, Any], message: str) -> None:
    assert error_of(doc).startswith(message)


def test_protojson_value_forms() -> None:
    spec = parse_pipeline_spec(
        minimal(
            tolerations=[{"operator": 2, "effect": "NO_SCHEDULE", "tolerationSeconds": "0"}],
            datumTimeout=".5s",
            jobTimeout="90.000000001s",
            description=None,
            egress={"URL": "s3://bucket/dir"},
        )
    )
    assert spec["tolerations"] == [
        {"operator": "EQUAL", "effect": "NO_SCHEDULE", "tolerationSeconds": 0}
    ]
    assert (spec["datumTimeout"], spec["jobTimeout"]) == ("0.500s", "90.000000001s")
    assert "description" not in spec
    assert duration_seconds(spec["datumTimeout"]) == 0.5
    assert parse_pipeline_spec({**minimal(), "$schema": "x"}) == parse_pipeline_spec(minimal())


@pytest.mark.parametrize("value", ["600", "10m", "-5s", "1.2.3s", "s", 600, "1.0000000001s"])
def test_malformed_durations_are_rejected(value: Any) -> None:
    assert error_of(minimal(datumTimeout=value)).startswith("datumTimeout: ")


@pytest.mark.parametrize("value", ["2024-05-01", "2024-13-01T00:00:00Z", "2024-05-01 00:00:00Z"])
def test_malformed_timestamps_are_rejected(value: str) -> None:
    doc = minimal(input={"cron": {"name": "t", "spec": "@daily", "start": value}})
    assert error_of(doc).startswith("input.cron.start: expected an RFC 3339 timestamp")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"transform": {"cmd": ["a"]}}, "pipeline.name: required"),
        (minimal(pipeline={"name": "_x"}), "pipeline.name: '_x': use letters"),
        (minimal(pipeline={"name": "a.b"}), "pipeline.name: 'a.b': use letters"),
        (minimal(pipeline={"name": "a" * 52}), "pipeline.name: " + repr("a" * 52) + " is longer"),
        ({"pipeline": {"name": "p"}}, "transform: required"),
        (minimal(transform={"image": "x:1"}), "transform.cmd: required"),
        (minimal(transform={"cmd": []}), "transform.cmd: required"),
        (
            minimal(reprocessSpec="always"),
            "reprocessSpec: must be until_success or every_job, not 'always'",
        ),
        (
            minimal(input={}),
            "input: exactly one of pfs, cron, cross, union, join, group must be set",
        ),
        (
            minimal(
                input={"pfs": {"repo": "r", "glob": "/"}, "cron": {"name": "c", "spec": "@daily"}}
            ),
            "input: exactly one of",
        ),
        (minimal(input={"cross": []}), "input: exactly one of"),
        (minimal(input={"pfs": {"glob": "/"}}), "input.pfs.repo: required"),
        (minimal(input={"pfs": {"repo": "r"}}), "input.pfs.glob: required"),
        (
            minimal(input={"pfs": {"repo": "r", "glob": "/", "commit": "abc"}}),
            "input.pfs.commit: must be empty",
        ),
        (minimal(input={"cron": {"spec": "@daily"}}), "input.cron.name: required"),
        (minimal(input={"cron": {"name": "t"}}), "input.cron.spec: required"),
        (
            minimal(input={"union": [{"pfs": {"repo": "r", "glob": "/", "s3": True}}]}),
            "input.union: S3 inputs not supported in union",
        ),
        (
            minimal(input={"pfs": {"repo": "r", "glob": "/", "trigger": {"commits": -1}}}),
            "input.pfs.trigger.commits: must not be negative",
        ),
        (
            minimal(egress={"objectStorage": {}, "sqlDatabase": {}}),
            "egress.sqlDatabase: cannot be combined",
        ),
        (minimal(datumTries=3, datum_tries=3), "datum_tries: given twice (also as 'datumTries')"),
    ],
)
def test_structural_rules(doc: dict[str, Any], message: str) -> None:
    assert error_of(doc).startswith(message)


def test_pipeline_name_length_limit() -> None:
    assert parse_pipeline_spec(minimal(pipeline={"name": "a" * 51}))


def pfs(repo: str, name: str | None = None) -> dict[str, Any]:
    leaf: dict[str, Any] = {"repo": repo, "glob": "/*"}
    if name is not None:
        leaf["name"] = name
    return {"pfs": leaf}


@pytest.mark.parametrize(
    ("inp", "message"),
    [
        (
            {"cross": [pfs("a"), pfs("a")]},
            "input.cross[1].pfs.name: name 'a' was used more than once",
        ),
        ({"join": [pfs("a"), pfs("b", "a")]}, "input.join[1].pfs.name: name 'a' was used"),
        (
            {"cross": [pfs("a"), {"cron": {"name": "a", "spec": "@daily"}}]},
            "input.cross[1].cron.name: name 'a' was used",
        ),
        (
            {"cross": [{"union": [pfs("a"), pfs("b", "a")]}, pfs("a")]},
            "input.cross[1].pfs.name: name 'a' was used",
        ),
        (
            {"cross": [pfs("a"), {"union": [pfs("x", "a"), pfs("b")]}]},
            "input.cross[1].union[0].pfs.name: name 'a' was used",
        ),
        (pfs("r", "out"), "input.pfs.name: input cannot be named 'out' (reserved)"),
        (pfs("r", ".env"), "input.pfs.name: input cannot be named '.env' (reserved)"),
        (pfs("out"), "input.pfs.name: required for a repo named 'out'"),
        (
            {"cron": {"name": "out", "spec": "@daily"}},
            "input.cron.name: input cannot be named 'out'",
        ),
    ],
)
def test_input_names(inp: dict[str, Any], message: str) -> None:
    assert error_of(minimal(input=inp)).startswith(message)


def test_union_alternatives_may_share_names() -> None:
    inp = {"union": [pfs("a", "same"), pfs("b", "same")]}  # pfs("c") is unnamed: it sorts as ""
    spec = parse_pipeline_spec(minimal(input={"cross": [inp, pfs("c")]}))
    # stored as pachd stores it: children sorted by their names as written (unnamed: "")
    assert iter_input_names(spec["input"]) == ["c", "same", "same"]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (
            {"name": "s", "envVar": "TOKEN"},
            "transform.secrets[0].key: required with envVar",
        ),
        ({"name": "s"}, "transform.secrets[0]: needs envVar or mountPath"),
        ({"key": "k", "envVar": "E"}, "transform.secrets[0].name: required"),
    ],
)
def test_secret_rules(secret: dict[str, Any], message: str) -> None:
    assert error_of(minimal(transform={"cmd": ["a"], "secrets": [secret]})) == message


def test_secret_forms_accepted() -> None:
    secrets = [{"name": "s", "key": "k", "envVar": "E"}, {"name": "t", "mountPath": "/secrets/t"}]
    spec = parse_pipeline_spec(minimal(transform={"cmd": ["a"], "secrets": secrets}))
    assert spec["transform"]["secrets"] == secrets


def test_fingerprint_is_canonical() -> None:
    spec = parse_pipeline_spec(minimal())
    reordered = parse_pipeline_spec(dict(reversed(list(minimal().items()))))
    assert spec_fingerprint(spec) == spec_fingerprint(reordered)
    assert len(spec_fingerprint(spec)) == 64
    assert spec_fingerprint(spec) != spec_fingerprint(parse_pipeline_spec(minimal(datumTries=4)))
    # request flags do not change the pipeline's version
    assert spec_fingerprint(spec) == spec_fingerprint(parse_pipeline_spec(minimal(update=True)))


def test_iter_input_names_on_raw_input() -> None:
    raw = {"join": [pfs("a"), {"group": [pfs("b", "bee")]}, {"cron": {"name": "c"}}]}
    assert iter_input_names(raw) == ["a", "bee", "c"]
    assert iter_input_names(None) == []
