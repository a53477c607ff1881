"""The ``ingest`` entry point and spec: one-line failures, the spec's contract, a run through the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lensfeed.gcs import (
    GcsExportStore,
)
from lensfeed.ingest import (
    ingest_tick,
)
from lensrun.emulator import EmulatorServer, upload_exports
from lensrun.generate import ExportObject
from tests.lens.ingest_objects import (
    BUCKET,
    _closed_port,
    edge_landing,
    gs,
    manifests,
    tick,
    tree,
)

REPO = Path(__file__).resolve().parents[2]


def _run_entry_point(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tick").mkdir(exist_ok=True)
    (tmp_path / "tick" / "2024-05-01T01:00:00Z").touch()
    args = ["--tick-dir", str(tmp_path / "tick"), "--out", str(tmp_path / "out")]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GCS_", "STORAGE_"))}
    return subprocess.run(
        [sys.executable, "pipelines/ingest.py", *args, "--schedule", "@hourly", "--attempts", "2"],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_entry_point_fails_with_one_line(tmp_path: Path) -> None:
    port = _closed_port()
    missing = _run_entry_point(tmp_path, {})
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == (
        "ingest: GCS_BUCKET is not set: the export bucket must come from a pipeline secret\n"
    )
    host = f"http://127.0.0.1:{port}"
    down = _run_entry_point(tmp_path, {"GCS_BUCKET": BUCKET, "STORAGE_EMULATOR_HOST": host})
    assert down.returncode == 1
    assert down.stderr == (
        f"ingest: gs://{BUCKET}: listing 'lens/' failed after 2 attempts "
        "(last error: ConnectionError); is the bucket reachable?\n"
    )
    assert str(port) not in down.stderr + down.stdout


def test_spec_is_valid_and_matches_the_contract() -> None:
    from pachlocal.spec import load_spec_documents, parse_pipeline_spec

    path = REPO / "specs/ingest.pipeline.json"
    (doc,) = load_spec_documents(path.read_text(), source=str(path))
    spec = parse_pipeline_spec(doc)
    cron = spec["input"]["cron"]
    cmd = spec["transform"]["cmd"]
    assert spec["pipeline"]["name"] == "ingest"
    assert (cron["name"], cron["repo"], cron["overwrite"]) == ("tick", "ingest_tick", False)
    assert cmd[:6] == [
        "python3",
        "pipelines/ingest.py",
        "--tick-dir",
        "/pfs/tick",
        "--out",
        "/pfs/out",
    ]
    assert cmd[cmd.index("--schedule") + 1] == cron["spec"]  # the windows follow the ticks
    secrets = {
        (s.get("key"), s.get("envVar"), s.get("mountPath")) for s in spec["transform"]["secrets"]
    }
    assert secrets == {
        ("bucket", "GCS_BUCKET", None),
        ("prefix", "GCS_PREFIX", None),
        ("emulator_host", "STORAGE_EMULATOR_HOST", None),
        (None, None, "/var/secrets/gcs"),
    }


@pytest.mark.integration
@pytest.mark.slow
def test_spec_runs_through_the_engine(
    emulator: EmulatorServer,
    bucket: Any,
    store: GcsExportStore,
    exports: list[ExportObject],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pachlocal.cli import main

    monkeypatch.setenv("PACHLOCAL_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("PACHLOCAL_CODE_ROOT", str(REPO))
    landed = edge_landing(exports)
    upload_exports(bucket, exports, lambda o: landed[o.name], markers=False)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "lens-gcs"},
        "stringData": {
            "bucket": BUCKET,
            "prefix": "lens",
            "emulator_host": emulator.host,
            "service-account.json": '{"type": "placeholder"}',
        },
    }
    (tmp_path / "secret.json").write_text(json.dumps(secret))
    assert main(["create", "secret", "-f", str(tmp_path / "secret.json")]) == 0
    assert main(["create", "pipeline", "-f", str(REPO / "specs/ingest.pipeline.json")]) == 0
    assert main(["tick", "--until", "2024-05-01T03:00:00Z"]) == 0
    capsys.readouterr()
    assert main(["glob", "file", "ingest@master:/**", "--raw"]) == 0
    listing = json.loads(capsys.readouterr().out)
    got = {}
    for entry in (e for e in listing if e["type"] == "file"):
        target = tmp_path / "get.out"
        assert main(["get", "file", f"ingest@master:{entry['path']}", "-o", str(target)]) == 0
        got[entry["path"].lstrip("/")] = target.read_bytes()

    # the engine's output is exactly what the functions write for ticks 1..3
    direct = tmp_path / "direct"
    for h in (1, 2, 3):
        ingest_tick(store, "lens", tick(h - 1), tick(h), direct)
    assert got == tree(direct)
    names = Counter(e["object"] for entries in manifests(direct).values() for e in entries)
    assert names == Counter(gs(n) for n, t in landed.items() if t <= tick(3))
    assert sorted(manifests(direct)) == [f"2024-05-01T0{h}:00:00Z" for h in (1, 2, 3)]
