"""Pachyderm's spout examples (examples/spouts/spout101, examples/spouts/go-rabbitmq-spout).
A spout is a long-running pipeline without an input that pushes data into its output
repo; pachlocal refuses it at ``create pipeline`` with an error naming the ``spout``
field, and creates nothing, instead of running it as a plain job."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.conftest import Pachlocal

from .support import create_pipeline

SPOUT101: dict[str, Any] = {
    "pipeline": {"name": "spout"},
    "spout": {},
    "description": "A spout pipeline that emulates the reception of data from an external source",
    "transform": {
        "cmd": ["python", "consumer/main.py"],
        "image": "pachyderm/example-spout101:2.0.1",
    },
}
RABBITMQ: dict[str, Any] = {
    "pipeline": {"name": "rabbitmq-spout"},
    "spout": {},
    "description": "A spout that reads from rabbitmq and writes files to a repo",
    "transform": {
        "cmd": ["/bin/app", "-topic", "test-topic", "-overwrite", "true"],
        "image": "pachyderm/example-rabbitmq-spout:1.12.2",
        "env": {
            "RABBITMQ_HOST": "rabbitmq.default.svc.cluster.local:5672",
            "COMMIT_BRANCH": "staging",
        },
        "secrets": [
            {"name": "rabbitmq-password", "key": "rabbitmq-password", "envVar": "RABBITMQ_PASSWORD"}
        ],
    },
}


def nothing_created(pl: Pachlocal) -> bool:
    repos: list[Any] = pl("list", "repo", "--raw").json()
    pipelines: list[Any] = pl("list", "pipeline", "--raw").json()
    return repos == [] and pipelines == []


@pytest.mark.parametrize("spec", [SPOUT101, RABBITMQ], ids=["spout101", "go-rabbitmq-spout"])
def test_spout_pipelines_are_refused_naming_the_field(pl: Pachlocal, spec: dict[str, Any]) -> None:
    """spout101/pipelines/spout.pipeline.json and go-rabbitmq-spout/pipelines/spout.pipeline.json:
    refused with one line naming the pipeline and the ``spout`` field."""
    path = pl.spec(pl.home.parent, spec)
    res = pl("create", "pipeline", "-f", path, ok=False)
    assert res.rc == 1
    assert res.err.strip() == (
        f"pachlocal: pipeline {spec['pipeline']['name']}: spout: pachlocal does not support "
        "spouts (long-running pipelines without an input)"
    )
    assert nothing_created(pl)


def test_the_spout101_processor_has_no_input_repo(pl: Pachlocal) -> None:
    """spout101's second pipeline reads the spout's output repo, which never comes to be:
    its creation fails as pachd's does for a missing input repo."""
    processor = {
        "pipeline": {"name": "processor"},
        "description": "A pipeline that sorts 1KB vs 2KB files",
        "input": {"pfs": {"repo": "spout", "branch": "master", "glob": "/*"}},
        "transform": {
            "cmd": ["python", "processor/main.py"],
            "image": "pachyderm/example-spout101:2.0.1",
        },
    }
    with pytest.raises(AssertionError, match="spout: pachlocal does not support spouts"):
        create_pipeline(pl, SPOUT101)
    res = pl("create", "pipeline", "-f", pl.spec(pl.home.parent, processor), ok=False)
    assert res.rc == 1
    assert "pipeline processor: input repo spout not found" in res.err
    assert nothing_created(pl)
