"""``pachlocal deploy``'s plan: what it would send to pachd, in which order, without one.

The project's specs in dependency order, input repos no pipeline produces, cycles and
malformed secrets refused by name, and secret steps that show names and keys, never
values. Sending the plan to a pachd is in ``test_deploy_apply.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pachlocal.deploy import DeployError, Step, plan
from pachlocal.secrets import SecretError

from .deploy_support import ORDER, ROOT, assert_no_values, write_spec


def test_plan_orders_the_project_specs_by_dependency() -> None:
    steps = plan(ROOT)
    assert [(s.kind, s.name) for s in steps] == [("pipeline", n) for n in ORDER]
    for step in steps:
        assert step.source is not None
        assert step.payload == step.source.read_bytes()  # the spec as written


def test_plan_creates_only_input_repos_no_pipeline_produces(tmp_path: Path) -> None:
    # "zz" reads "mid" reads "aa": file order differs from dependency order
    write_spec(
        tmp_path,
        "aa",
        {
            "cross": [
                {"cron": {"name": "tick", "spec": "@daily"}},
                {"pfs": {"repo": "raw", "glob": "/*"}},
            ]
        },
    )
    write_spec(tmp_path, "zz", {"pfs": {"repo": "mid", "glob": "/"}})
    write_spec(
        tmp_path,
        "mid",
        {
            "join": [
                {"pfs": {"repo": "aa", "glob": "/(*)", "joinOn": "$1"}},
                {"pfs": {"repo": "other", "project": "p2", "glob": "/(*)", "joinOn": "$1"}},
            ]
        },
    )
    write_spec(tmp_path, "ticks", {"pfs": {"repo": "aa_tick", "glob": "/"}})
    steps = plan(tmp_path)
    assert [(s.kind, s.name) for s in steps] == [
        ("repo", "raw"),  # default/raw
        ("repo", "p2/other"),
        ("pipeline", "aa"),
        ("pipeline", "mid"),
        ("pipeline", "ticks"),  # reads aa's cron repo: pachd creates it with aa
        ("pipeline", "zz"),
    ]
    assert steps[3].detail == "reads aa, p2/other"


def test_plan_rejects_a_cycle(tmp_path: Path) -> None:
    write_spec(tmp_path, "a", {"pfs": {"repo": "b", "glob": "/"}})
    write_spec(tmp_path, "b", {"pfs": {"repo": "a", "glob": "/"}})
    with pytest.raises(DeployError, match="cycle: a, b"):
        plan(tmp_path)


def test_plan_secret_steps_show_names_and_keys_only(secrets_dir: Path) -> None:
    steps = plan(ROOT, secrets_dir)
    secret_steps = [s for s in steps if s.kind == "secret"]
    assert [(s.name, s.detail) for s in secret_steps] == [
        ("lens-gcs", "keys: bucket, emulator_host, prefix, service-account.json"),
        ("lens-postgres", "keys: dsn"),
    ]
    assert [s.kind for s in steps] == ["secret", "secret"] + ["pipeline"] * len(ORDER)
    text = "\n".join(s.describe() + repr(s) for s in steps)
    assert_no_values(text)


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"kind": "Secret", "metadata": {"name": "x"}, "data": {"k": "!!"}}, r"data\.k: .*base64"),
        ({"kind": "Secret", "metadata": {}, "stringData": {"k": "v"}}, r"metadata\.name"),
        ({"kind": "Secret", "metadata": {"name": "x"}, "stringData": {"k": 1}}, r"stringData\.k"),
        (
            {"kind": "Secret", "metadata": {"name": "x"}, "stringData": {"k": "${PGSQL_URL}"}},
            r"stringData\.k: an unfilled placeholder",
        ),
    ],
)
def test_plan_rejects_a_malformed_secret_naming_file_and_field(
    tmp_path: Path, doc: dict[str, Any], match: str
) -> None:
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(SecretError, match=rf"bad\.json: {match}"):
        plan(ROOT, tmp_path)


def test_step_repr_hides_the_payload() -> None:
    step = Step("secret", "s", None, "keys: k", b"top-secret")
    assert "top-secret" not in repr(step)
