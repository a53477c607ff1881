"""``pachlocal create|update|delete|stop|start|list|inspect pipeline``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..code import find_code_root
from ..engine import Engine
from ..spec import load_spec_documents
from .common import RAW, A, UsageError, ago, command, emit

_SPEC_ARGS = [
    A("-f", "--file", required=True, help="spec file (JSON or YAML)"),
    A("--reprocess", action="store_true"),
]


def _create_pipelines(a: argparse.Namespace, e: Engine, update: bool) -> int:
    path = Path(a.file)
    try:
        text = sys.stdin.read() if a.file == "-" else path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {a.file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {a.file}: not UTF-8 text") from None
    docs = load_spec_documents(text, source=a.file)
    if not docs:
        raise UsageError(f"{a.file}: no pipeline spec in the file")
    start = path.resolve().parent if a.file != "-" else Path.cwd()
    for doc in docs:
        code_root = find_code_root(doc, start, default=Path.cwd())
        e.create_pipeline(doc, code_root=code_root, update=update, reprocess=a.reprocess)
    e.run_pending()
    return 0


@command("create", "pipeline", write=True, args=_SPEC_ARGS)
def create_pipeline(a: argparse.Namespace, e: Engine) -> int:
    return _create_pipelines(a, e, update=False)


@command("update", "pipeline", write=True, args=_SPEC_ARGS)
def update_pipeline(a: argparse.Namespace, e: Engine) -> int:
    return _create_pipelines(a, e, update=True)


@command(
    "delete", "pipeline", write=True, args=[A("pipeline"), A("--keep-repo", action="store_true")]
)
def delete_pipeline(a: argparse.Namespace, e: Engine) -> int:
    e.delete_pipeline(a.pipeline, keep_repo=a.keep_repo)
    return 0


@command("stop", "pipeline", write=True, args=[A("pipeline")])
def stop_pipeline(a: argparse.Namespace, e: Engine) -> int:
    e.stop_pipeline(a.pipeline)
    return 0


@command("start", "pipeline", write=True, args=[A("pipeline")])
def start_pipeline(a: argparse.Namespace, e: Engine) -> int:
    e.start_pipeline(a.pipeline)
    e.run_pending()
    return 0


def _inputs_text(spec: Mapping[str, Any]) -> str:
    node = spec.get("input") or {}
    if "pfs" in node:
        return f"{node['pfs']['repo']}:{node['pfs']['glob']}"
    if "cron" in node:
        return f"cron({node['cron']['spec']})"
    for key in ("cross", "union", "join", "group"):
        if key in node:
            sep = " x " if key == "cross" else f" {key} "
            return "(" + sep.join(_inputs_text({"input": c}) for c in node[key]) + ")"
    return "none"


@command("list", "pipeline", write=False, args=[RAW])
def list_pipeline(a: argparse.Namespace, e: Engine) -> int:
    pipes = e.pipelines()
    rows = []
    for p in pipes:
        last = e.jobs(pipeline=p["name"])[:1]
        rows.append(
            [
                p["name"],
                p["version"],
                _inputs_text(p["spec"]),
                ago(p["created"]),
                "paused" if p["stopped"] else "running",
                last[0]["state"] if last else "-",
                p["spec"].get("description", ""),
            ]
        )
    emit(
        a.raw,
        pipes,
        ["NAME", "VERSION", "INPUT", "CREATED", "STATE", "LAST JOB", "DESCRIPTION"],
        rows,
    )
    return 0


@command("inspect", "pipeline", write=False, args=[A("pipeline"), RAW])
def inspect_pipeline(a: argparse.Namespace, e: Engine) -> int:
    p = e.pipeline(a.pipeline)
    if a.raw:
        print(json.dumps(p, indent=2, sort_keys=True))
    else:
        print(
            f"Name: {p['name']}\nVersion: {p['version']}\nSpec fingerprint: {p['fingerprint']}\n"
            f"Code root: {p['code_root']}\nInput: {_inputs_text(p['spec'])}\n"
            f"Spec:\n{json.dumps(p['spec'], indent=2, sort_keys=True)}"
        )
    return 0
