"""``pachlocal list|debug datum`` and ``pachlocal logs``."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..store import StoreError
from .common import RAW, A, command, emit, parse_job_ref


@command("list", "datum", write=False, args=[A("job"), RAW])
def list_datum(a: argparse.Namespace, e: Engine) -> int:
    datums = e.datums(*parse_job_ref(a.job))
    for d in datums:
        d["inputs"] = json.loads(d["inputs"])
    rows = [
        [
            d["datum"],
            ", ".join(f"{i['name']}:{i['path']}" for i in d["inputs"]),
            d["state"],
            d["attempts"],
            f"{d['seconds']:.3f}s",
            d["reason"],
        ]
        for d in datums
    ]
    emit(a.raw, datums, ["ID", "FILES", "STATUS", "ATTEMPTS", "TIME", "REASON"], rows)
    return 0


_DEBUG_ARGS = [
    A("job", help="pipeline@job"),
    A("datum"),
    A("--dir", help="where to re-create /pfs (default: a new directory under /tmp)"),
]


def _restore_inputs(e: Engine, inputs: list[dict[str, Any]], pfs: Path) -> dict[str, str]:
    """Write a datum's input files under ``pfs`` (emptied first, with an empty ``out``) and
    return the environment variables the worker sets for them."""
    if pfs.exists():
        shutil.rmtree(pfs)
    (pfs / "out").mkdir(parents=True)
    env: dict[str, str] = {}
    for i in inputs:
        (pfs / i["name"]).mkdir(exist_ok=True)
        for path, digest, _size in i["files"]:
            dest = pfs / i["name"] / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(e.store.objects.read(digest))
        env[i["name"]] = f"/pfs/{i['name']}{i['path'] if i['path'] != '/' else ''}"
        env[f"{i['name']}_COMMIT"] = i["commit"]
        if i["join_on"]:
            env[f"PACH_DATUM_{i['name']}_JOIN_ON"] = i["join_on"]
        if i["group_by"]:
            env[f"PACH_DATUM_{i['name']}_GROUP_BY"] = i["group_by"]
    return env


@command("debug", "datum", write=False, args=_DEBUG_ARGS)
def debug_datum(a: argparse.Namespace, e: Engine) -> int:
    """Re-create a datum's ``/pfs`` and print how to rerun its command by hand."""
    pipeline, job_id = parse_job_ref(a.job)
    job = e.job(pipeline, job_id)
    rows = [d for d in e.datums(pipeline, job_id) if d["datum"].startswith(a.datum)]
    if len(rows) != 1:
        raise StoreError(
            f"datum {a.datum} {'is ambiguous' if rows else 'not found'} in job {a.job}"
        )
    d = rows[0]
    base = Path(a.dir) if a.dir else Path(f"/tmp/pachlocal-debug-{d['datum'][:12]}")
    pfs = base / "pfs"
    env = _restore_inputs(e, json.loads(d["inputs"]), pfs)
    spec = e.pipeline_version(pipeline, job["spec_version"])["spec"]
    t = spec["transform"]
    env.update(
        {
            "PACH_DATUM_ID": d["datum"],
            "PACH_JOB_ID": job_id,
            "PACH_OUTPUT_COMMIT_ID": job_id,
            "PPS_PIPELINE_NAME": pipeline,
            **(t.get("env") or {}),
        }
    )
    secret_vars = [s["envVar"] for s in t.get("secrets") or [] if s.get("envVar")]
    cmd = " ".join(shlex.quote(c) for c in t["cmd"])
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    code_root = (
        e.pipeline(pipeline)["code_root"]
        if any(p["name"] == pipeline for p in e.pipelines())
        else "."
    )
    print(f"Datum {d['datum']} of {pipeline}@{job_id} ({d['state']}) re-created in {pfs}")
    print(f"Command: {json.dumps(t['cmd'])}")
    if t.get("stdin"):
        print(f"Stdin: {json.dumps(t['stdin'])}")
    if secret_vars:
        print(f"Secret variables (set them yourself): {', '.join(secret_vars)}")
    print("Rerun it in a private mount namespace (as root):")
    print(
        f"  cd {shlex.quote(code_root)} && env {envs} unshare -m --propagation private "
        f"sh -c 'mount --bind {shlex.quote(str(pfs))} /pfs && exec \"$@\"' sh {cmd}"
    )
    return 0


_LOGS_ARGS = [
    A("-p", "--pipeline", required=True),
    A("--job"),
    A("--datum"),
    RAW,
]


@command("logs", "", write=False, args=_LOGS_ARGS)
def logs(a: argparse.Namespace, e: Engine) -> int:
    e.pipeline(a.pipeline)
    recs = e.logs(a.pipeline, a.job, a.datum)
    if a.raw:
        print(json.dumps(recs, indent=2))
    else:
        for r in recs:
            for line in r["message"].rstrip("\n").splitlines():
                print(line)
    return 0
