"""Fixtures for engine tests: a fresh state directory and an in-process ``pachlocal``,
a pipeline's job rows, and the filled secrets the deploy tests send."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pachlocal.cli import main

from .deploy_support import PG_DSN, SA_JSON


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Pachlocal:
    """Runs the CLI in-process against one state directory."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def __call__(self, *args: str, ok: bool = True) -> Result:
        self.capsys.readouterr()
        rc = main(list(args))
        cap = self.capsys.readouterr()
        res = Result(rc, cap.out, cap.err)
        if ok:
            assert rc == 0, f"pachlocal {' '.join(args)} failed ({rc}): {cap.err}"
        return res

    def spec(self, tmp: Path, spec: dict[str, Any], name: str | None = None) -> str:
        path = tmp / f"{name or spec['pipeline']['name']}.pipeline.json"
        path.write_text(json.dumps(spec))
        return str(path)

    def files(self, ref: str) -> dict[str, bytes]:
        """Every file of a commit, path -> content."""
        out: dict[str, bytes] = {}
        listing = self("glob", "file", f"{ref}:/**", "--raw").json()
        for entry in listing:
            if entry["type"] == "file":
                out[entry["path"]] = self.get(f"{ref}:{entry['path']}")
        return out

    def get(self, target: str) -> bytes:
        out = self.home.parent / "get.out"
        self("get", "file", target, "-o", str(out))
        data = out.read_bytes()
        out.unlink()
        return data


def job_rows(p: Pachlocal, pipeline: str) -> list[dict[str, Any]]:
    """A pipeline's jobs as ``list job --raw`` gives them, newest first."""
    return p("list", "job", "-p", pipeline, "--raw").json()  # type: ignore[no-any-return]


@pytest.fixture
def pl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Pachlocal]:
    home = tmp_path / "state"
    monkeypatch.setenv("PACHLOCAL_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    yield Pachlocal(home, capsys)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    def _write(rel: str, content: str | bytes) -> Path:
        p = tmp_path / "data" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        return p

    return _write


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """Filled copies of secrets/*.json, as create_secret.sh writes them."""
    d = tmp_path / "filled"
    d.mkdir()
    gcs = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "lens-gcs"},
        "type": "Opaque",
        "stringData": {"bucket": "lens-bucket-x", "prefix": "lens", "emulator_host": ""},
        "data": {"service-account.json": base64.b64encode(SA_JSON.encode()).decode()},
    }
    pg = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "lens-postgres"},
        "stringData": {"dsn": PG_DSN},
    }
    (d / "lens-gcs.json").write_text(json.dumps(gcs, indent=2))
    (d / "lens-postgres.json").write_text(json.dumps(pg))
    return d
