"""Consistency of the pipeline set: names, images, secrets and repos agree across files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pachlocal.spec import input_leaves, load_spec_documents, parse_pipeline_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((ROOT / "specs").glob("*.pipeline.json"))
VERSION = (ROOT / "VERSION").read_text().strip()


def specs() -> dict[str, dict[str, Any]]:
    out = {}
    for path in SPEC_FILES:
        (doc,) = load_spec_documents(path.read_text(), source=str(path))
        spec = parse_pipeline_spec(doc)
        out[spec["pipeline"]["name"]] = spec
    return out


def leaves(node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for _, kind, leaf in input_leaves(node):
        yield kind, leaf


pytestmark = pytest.mark.skipif(not SPEC_FILES, reason="no specs yet")


def test_every_image_tag_is_the_project_version() -> None:
    for name, spec in specs().items():
        image = spec["transform"]["image"]
        assert image.rsplit(":", 1)[1] == VERSION, f"{name}: {image} is not tagged {VERSION}"


def test_every_secret_has_a_template_with_its_key() -> None:
    templates = {
        json.loads(p.read_text())["metadata"]["name"]: json.loads(p.read_text())["stringData"]
        for p in (ROOT / "secrets").glob("*.json")
    }
    for name, spec in specs().items():
        for secret in spec["transform"].get("secrets") or []:
            assert secret["name"] in templates, f"{name}: no template for secret {secret['name']}"
            if "key" in secret:
                assert secret["key"] in templates[secret["name"]], f"{name}: {secret}"


def test_every_input_repo_is_produced_by_the_dag() -> None:
    all_specs = specs()
    for name, spec in all_specs.items():
        for kind, leaf in leaves(spec.get("input") or {}):
            if kind == "pfs":
                assert leaf["repo"] in all_specs, f"{name}: input repo {leaf['repo']} has no spec"


def test_the_dag_has_no_cycle() -> None:
    all_specs = specs()
    graph = {
        n: {leaf["repo"] for k, leaf in leaves(s.get("input") or {}) if k == "pfs"}
        for n, s in all_specs.items()
    }
    done: set[str] = set()
    while graph:
        ready = [n for n, deps in graph.items() if deps <= done]
        assert ready, f"cycle among {sorted(graph)}"
        for n in ready:
            done.add(n)
            del graph[n]


#: Read by the code, set by Pachyderm (or its stand-in) or by the machine, not by a user.
_NOT_SETTINGS = {"CI", "PATH", "XDG_RUNTIME_DIR", "PFS_HOST_ROOT"}
_ENV_READ = re.compile(
    r"""(?:optional_env|require_env|environ\.get|getenv|environ\[|env\.get)\(?\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def _settings_read() -> set[str]:
    found = set()
    for part in ("lensfeed", "lensrun", "pipelines", "pachlocal"):
        for path in (ROOT / part).rglob("*.py"):
            found |= set(_ENV_READ.findall(path.read_text()))
    return {n for n in found if not n.startswith(("PACH_", "PPS_"))} - _NOT_SETTINGS


def _settings_documented() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Configuration") :].split("\n## ", 1)[0]
    rows = [line.split("|")[2] for line in table.splitlines() if line.startswith("| ")]
    return {n for row in rows for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


def test_every_setting_the_code_reads_is_in_the_readme_and_back() -> None:
    """Before, the README documented ``FEED_STRATEGY``, which nothing read, and the code
    read ``EIGENTRUST_TOLERANCE`` and ``INGEST_TIME_SOURCE``, which it did not document.
    Secrets' env names (``PGSQL_URL`` ...) are in the table too; ``PACHLOCAL_KILL_AT``
    is the crash tests' hook, documented in docs/pachlocal.md."""
    read, documented = _settings_read(), _settings_documented()
    assert read - documented == {"PACHLOCAL_KILL_AT"}
    assert "PACHLOCAL_KILL_AT" in (ROOT / "docs" / "pachlocal.md").read_text()
    assert documented - read == set()
