"""Specs against Pachyderm's official JSON schema (``../shared``) and the engine's validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pachlocal.spec import SpecError, load_spec_documents, parse_pipeline_spec

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "pachyderm" / "CreatePipelineRequest.schema.json"
SPECS = sorted((ROOT / "specs").glob("*.pipeline.json"))

# Request flags protojson accepts but the schema (a pipeline *spec*) does not list, and
# fields the 2.12 SDK added after the 2.11 schema was generated.
NOT_IN_SCHEMA = {"update", "dryRun", "reprocess", "specCommit"}
PFS_NOT_IN_SCHEMA = {"propagationSpec", "reference"}

EXAMPLES: list[dict[str, Any]] = [
    {
        "pipeline": {"name": "edges"},
        "description": "A pipeline that performs image edge detection.",
        "transform": {"cmd": ["python3", "/edges.py"], "image": "pachyderm/opencv:1.0"},
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
    },
    {
        "pipeline": {"name": "joined"},
        "transform": {"cmd": ["sh"], "stdin": ["cp -r /pfs/a /pfs/out"], "acceptReturnCode": [3]},
        "input": {
            "join": [
                {"pfs": {"repo": "a", "glob": "/(*).txt", "joinOn": "$1", "outerJoin": True}},
                {"pfs": {"repo": "b", "glob": "/(*).csv", "joinOn": "$1"}},
            ]
        },
        "datumTimeout": "600s",
        "parallelismSpec": {"constant": 2},
    },
    {
        "pipeline": {"name": "ticks"},
        "transform": {
            "cmd": ["python3", "tick.py"],
            "secrets": [{"name": "pg", "key": "dsn", "envVar": "PGSQL_URL"}],
            "env": {"A": "1"},
        },
        "input": {
            "cross": [
                {"cron": {"name": "tick", "spec": "@every 1h", "start": "2024-05-01T00:00:00Z"}},
                {"pfs": {"repo": "f", "glob": "/", "trigger": {"commits": 24}}},
            ]
        },
    },
]


@pytest.fixture(scope="module")
def validator() -> Any:
    if not SCHEMA.exists():
        pytest.skip(f"Pachyderm's official schema is not at {SCHEMA} (../shared is absent)")
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft4Validator(json.loads(SCHEMA.read_text()))


def schema_view(spec: dict[str, Any]) -> dict[str, Any]:
    """A normalised spec minus the fields the 2.11 schema does not know."""
    out = {k: v for k, v in spec.items() if k not in NOT_IN_SCHEMA}

    def strip(node: dict[str, Any]) -> None:
        if "pfs" in node:
            for key in PFS_NOT_IN_SCHEMA:
                node["pfs"].pop(key, None)
        for kind in ("cross", "union", "join", "group"):
            for child in node.get(kind) or []:
                strip(child)

    if "input" in out:
        strip(out["input"])
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e["pipeline"]["name"])
def test_examples_and_their_normalised_form_pass_the_schema(
    validator: Any, example: dict[str, Any]
) -> None:
    assert list(validator.iter_errors(example)) == []
    assert list(validator.iter_errors(schema_view(parse_pipeline_spec(example)))) == []


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_project_specs_pass_schema_and_engine(validator: Any, path: Path) -> None:
    (doc,) = load_spec_documents(path.read_text(), source=str(path))
    assert [e.message for e in validator.iter_errors(doc)] == []
    spec = parse_pipeline_spec(doc)
    name = path.name.removesuffix(".pipeline.json")
    assert spec["pipeline"]["name"] == name, "specs/<name>.pipeline.json declares <name>"
    assert spec.get("description"), "every spec carries a one-line description"
    assert spec["transform"]["cmd"][:2] == ["python3", f"pipelines/{name}.py"]
    assert (ROOT / "pipelines" / f"{name}.py").exists()


def test_wrong_type_is_rejected_by_both(validator: Any) -> None:
    bad = {**EXAMPLES[0], "datumTries": "three"}
    assert list(validator.iter_errors(bad)), "the official schema rejects it"
    with pytest.raises(SpecError, match="datumTries"):
        parse_pipeline_spec(bad)


def test_unknown_key_is_rejected_by_both(validator: Any) -> None:
    bad = {**EXAMPLES[0], "transform": {**EXAMPLES[0]["transform"], "comand": ["x"]}}
    assert [e.message for e in validator.iter_errors(bad)] == [
        "Additional properties are not allowed ('comand' was unexpected)"
    ]
    with pytest.raises(SpecError, match=r"transform\.comand: unknown field"):
        parse_pipeline_spec(bad)
