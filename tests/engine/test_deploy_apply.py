"""``pachlocal deploy`` against an in-process fake pachd speaking the real gRPC API.

The fake registers the SDK's own message classes as (de)serializers, so every
assertion is on what a real pachd would receive on the wire. Also: finding pachd's
address (``connect``). The plan itself is in ``test_deploy_plan.py``.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import betterproto.lib.google.protobuf as pb
import grpc  # type: ignore[import-untyped]
import pytest
from pachyderm_sdk.api import pfs, pps, version

from pachlocal.cli import main
from pachlocal.deploy import DeployError, apply, connect, plan

from .deploy_support import ORDER, PG_DSN, ROOT, SA_JSON, assert_no_values, write_spec


@dataclass
class FakePachd:
    """Records (method, request) pairs; keeps just enough state to answer like pachd."""

    port: int = 0
    calls: list[tuple[str, Any]] = field(default_factory=list)
    repos: set[str] = field(default_factory=set)
    secrets: dict[str, bytes] = field(default_factory=dict)
    pipelines: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]

    def requests(self, method: str) -> list[Any]:
        return [r for m, r in self.calls if m == method]

    def _record(self, method: str, request: Any) -> None:
        with self.lock:
            self.calls.append((method, request))

    def get_version(self, request: pb.Empty, ctx: Any) -> version.Version:
        self._record("GetVersion", request)
        return version.Version(major=2, minor=11, micro=4)

    def inspect_repo(self, request: pfs.InspectRepoRequest, ctx: Any) -> pfs.RepoInfo:
        self._record("InspectRepo", request)
        key = f"{request.repo.project.name}/{request.repo.name}"
        if key not in self.repos:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"repo {key} not found")
        return pfs.RepoInfo(repo=request.repo)

    def create_repo(self, request: pfs.CreateRepoRequest, ctx: Any) -> pb.Empty:
        self._record("CreateRepo", request)
        self.repos.add(f"{request.repo.project.name}/{request.repo.name}")
        return pb.Empty()

    def create_secret(self, request: pps.CreateSecretRequest, ctx: Any) -> pb.Empty:
        self._record("CreateSecret", request)
        name = json.loads(request.file)["metadata"]["name"]
        if name in self.secrets:  # pachd passes the Kubernetes error on as Unknown
            ctx.abort(grpc.StatusCode.UNKNOWN, f'secrets "{name}" already exists')
        self.secrets[name] = request.file
        return pb.Empty()

    def delete_secret(self, request: pps.DeleteSecretRequest, ctx: Any) -> pb.Empty:
        self._record("DeleteSecret", request)
        if self.secrets.pop(request.secret.name, None) is None:
            ctx.abort(grpc.StatusCode.UNKNOWN, f'secrets "{request.secret.name}" not found')
        return pb.Empty()

    def create_pipeline_v2(
        self, request: pps.CreatePipelineV2Request, ctx: Any
    ) -> pps.CreatePipelineV2Response:
        self._record("CreatePipelineV2", request)
        name = json.loads(request.create_pipeline_request_json)["pipeline"]["name"]
        if name in self.pipelines and not request.update:
            ctx.abort(grpc.StatusCode.ALREADY_EXISTS, f"pipeline {name} already exists")
        self.pipelines[name] = request.create_pipeline_request_json
        return pps.CreatePipelineV2Response(effective_create_pipeline_request_json="{}")


def _handler(fn: Callable[..., Any], request_cls: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request_cls.FromString, response_serializer=bytes
    )


@pytest.fixture
def pachd() -> Iterator[FakePachd]:
    fake = FakePachd()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handlers = {
        "versionpb_v2.API": {"GetVersion": _handler(fake.get_version, pb.Empty)},
        "pfs_v2.API": {
            "InspectRepo": _handler(fake.inspect_repo, pfs.InspectRepoRequest),
            "CreateRepo": _handler(fake.create_repo, pfs.CreateRepoRequest),
        },
        "pps_v2.API": {
            "CreateSecret": _handler(fake.create_secret, pps.CreateSecretRequest),
            "DeleteSecret": _handler(fake.delete_secret, pps.DeleteSecretRequest),
            "CreatePipelineV2": _handler(fake.create_pipeline_v2, pps.CreatePipelineV2Request),
        },
    }
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(s, m) for s, m in handlers.items()]
    )
    fake.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fake
    server.stop(grace=None)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's specs as the working directory, with pachlocal state."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "specs", root / "specs")
    monkeypatch.chdir(root)
    monkeypatch.setenv("PACHLOCAL_HOME", str(tmp_path / "state"))
    for var in ("PACHD_ADDRESS", "PACH_PYTHON_AUTH_TOKEN", "PACH_PYTHON_OIDC_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PACH_CONFIG", str(tmp_path / "no-config.json"))
    # `deploy` is a read-only command: main() opens existing pachlocal state first
    assert main(["create", "repo", "scratch"]) == 0
    return root


def _decoded(manifest: bytes) -> dict[str, bytes]:
    doc = json.loads(manifest)
    values = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
    values.update({k: v.encode() for k, v in (doc.get("stringData") or {}).items()})
    return values


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["deploy", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# --- apply, through the CLI, against the fake pachd ------------------------------------


def test_deploy_sends_what_pachctl_would(
    project: Path, secrets_dir: Path, pachd: FakePachd, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _run(
        capsys, "--pachd", f"grpc://127.0.0.1:{pachd.port}", "--secrets", str(secrets_dir)
    )
    assert (rc, err) == (0, "")
    assert pachd.methods == ["GetVersion", "CreateSecret", "CreateSecret"] + [
        "CreatePipelineV2"
    ] * len(ORDER)
    gcs, pg = pachd.requests("CreateSecret")
    # the filled files' bytes, as written (pachctl create secret -f)
    assert gcs.file == (secrets_dir / "lens-gcs.json").read_bytes()
    assert pg.file == (secrets_dir / "lens-postgres.json").read_bytes()
    assert _decoded(gcs.file) == {
        "bucket": b"lens-bucket-x",
        "prefix": b"lens",
        "emulator_host": b"",
        "service-account.json": SA_JSON.encode(),
    }
    assert _decoded(pg.file) == {"dsn": PG_DSN.encode()}
    sent = pachd.requests("CreatePipelineV2")
    for request, name in zip(sent, ORDER, strict=True):
        spec_text = (project / "specs" / f"{name}.pipeline.json").read_text()
        assert request.create_pipeline_request_json == spec_text
        assert (request.update, request.reprocess, request.dry_run) == (False, False, False)
    assert out.splitlines() == [
        f"pachd 2.11.4 at 127.0.0.1:{pachd.port}: {2 + len(ORDER)} step(s)",
        "secret lens-gcs: created",
        "secret lens-postgres: created",
        *[f"pipeline {n}: created" for n in ORDER],
    ]
    assert_no_values(out + err)


def test_update_replaces_secrets_and_updates_pipelines(
    project: Path, secrets_dir: Path, pachd: FakePachd, capsys: pytest.CaptureFixture[str]
) -> None:
    pachd.secrets = {"lens-gcs": b"{}", "lens-postgres": b"{}"}
    pachd.pipelines = {n: "{}" for n in ORDER}
    rc, out, err = _run(
        capsys,
        "--pachd",
        f"127.0.0.1:{pachd.port}",
        "--secrets",
        str(secrets_dir),
        "--update",
        "--reprocess",
    )
    assert (rc, err) == (0, "")
    assert pachd.methods == ["GetVersion"] + ["DeleteSecret", "CreateSecret"] * 2 + [
        "CreatePipelineV2"
    ] * len(ORDER)
    assert [r.secret.name for r in pachd.requests("DeleteSecret")] == ["lens-gcs", "lens-postgres"]
    assert _decoded(pachd.secrets["lens-postgres"]) == {"dsn": PG_DSN.encode()}
    for request in pachd.requests("CreatePipelineV2"):
        assert (request.update, request.reprocess, request.dry_run) == (True, True, False)
    assert "secret lens-gcs: replaced" in out and "pipeline feed: updated" in out
    assert_no_values(out + err)


def test_existing_pipeline_without_update_stops_with_a_hint(
    project: Path, pachd: FakePachd, capsys: pytest.CaptureFixture[str]
) -> None:
    pachd.pipelines = {"eigentrust": "{}"}
    rc, _, err = _run(capsys, "--pachd", f"127.0.0.1:{pachd.port}")
    assert rc == 1
    assert err == (
        "pachlocal: pipeline eigentrust: pachd ALREADY_EXISTS: pipeline eigentrust already "
        "exists (rerun with --update)\n"
    )
    assert pachd.methods == ["GetVersion"] + ["CreatePipelineV2"] * 3  # ingest, compact, eigentrust


def test_existing_repos_and_secrets_are_kept(
    secrets_dir: Path, pachd: FakePachd, tmp_path: Path
) -> None:
    root = tmp_path / "dag"
    write_spec(
        root,
        "a",
        {"union": [{"pfs": {"repo": "raw", "glob": "/"}}, {"pfs": {"repo": "fresh", "glob": "/"}}]},
    )
    pachd.repos = {"default/raw"}
    pachd.secrets = {"lens-gcs": b"old"}
    out = io.StringIO()
    client = connect(None, env={"PACHD_ADDRESS": f"127.0.0.1:{pachd.port}"})
    apply(client, plan(root, secrets_dir), out=out)
    assert pachd.methods == [
        "GetVersion",
        "InspectRepo",
        "CreateRepo",
        "InspectRepo",
        "CreateSecret",
        "CreateSecret",
        "CreatePipelineV2",
    ]
    inspected = [r.repo for r in pachd.requests("InspectRepo")]
    assert [(r.project.name, r.name, r.type) for r in inspected] == [
        ("default", "fresh", "user"),
        ("default", "raw", "user"),
    ]
    (created,) = pachd.requests("CreateRepo")
    assert (created.repo.project.name, created.repo.name, created.update) == (
        "default",
        "fresh",
        False,
    )
    assert pachd.secrets["lens-gcs"] == b"old"
    assert out.getvalue().splitlines()[1:] == [
        "repo fresh: created",
        "repo raw: exists",
        "secret lens-gcs: exists, kept (--update replaces it)",
        "secret lens-postgres: created",
        "pipeline a: created",
    ]


def test_dry_run_prints_the_plan_and_sends_nothing(
    project: Path, secrets_dir: Path, pachd: FakePachd, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _run(
        capsys,
        "--pachd",
        f"127.0.0.1:{pachd.port}",
        "--secrets",
        str(secrets_dir),
        "--dry-run",
        "--update",
    )
    assert (rc, err) == (0, "")
    assert pachd.calls == []
    lines = out.splitlines()
    assert lines[0] == f"dry run: {2 + len(ORDER)} step(s), nothing sent to pachd"
    assert lines[1] == (
        f"update secret lens-gcs from {secrets_dir / 'lens-gcs.json'} "
        "(keys: bucket, emulator_host, prefix, service-account.json)"
    )
    assert lines[3] == "update pipeline ingest from specs/ingest.pipeline.json"
    assert lines[-1] == "update pipeline feed from specs/feed.pipeline.json (reads predict)"
    assert_no_values(out)


def test_dry_run_needs_no_address(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, "--dry-run")
    assert (rc, err) == (0, "")
    assert len(out.splitlines()) == 1 + len(ORDER)


def test_malformed_secret_is_rejected_before_anything_is_sent(
    project: Path, secrets_dir: Path, pachd: FakePachd, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads((secrets_dir / "lens-postgres.json").read_text())
    doc["data"] = {"dsn": "not base64 " + PG_DSN}
    (secrets_dir / "lens-postgres.json").write_text(json.dumps(doc))
    rc, out, err = _run(capsys, "--pachd", f"127.0.0.1:{pachd.port}", "--secrets", str(secrets_dir))
    assert rc == 1
    assert err == (
        f"pachlocal: {secrets_dir / 'lens-postgres.json'}: data.dsn: value is not valid base64\n"
    )
    assert pachd.calls == []
    assert_no_values(out + err)


def test_unreachable_pachd_is_one_clear_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, err = _run(capsys, "--pachd", f"127.0.0.1:{port}")
    assert rc == 1
    assert err.startswith(f"pachlocal: cannot reach pachd at 127.0.0.1:{port}: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_reprocess_needs_update(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "--dry-run", "--reprocess")
    assert (rc, err) == (
        1,
        "pachlocal: --reprocess needs --update (it reprocesses updated pipelines)\n",
    )


# --- connect -------------------------------------------------------------------------------


def test_connect_without_any_address_names_what_is_missing(tmp_path: Path) -> None:
    env = {"PACH_CONFIG": str(tmp_path / "config.json")}
    with pytest.raises(DeployError) as info:
        connect(None, env=env)
    message = str(info.value)
    assert "--pachd" in message and "PACHD_ADDRESS" in message and "config.json" in message
    (tmp_path / "config.json").write_text(
        json.dumps({"v2": {"active_context": "c", "contexts": {"c": {}}}})
    )
    with pytest.raises(DeployError, match=r"context 'c' of .* has no pachd_address"):
        connect(None, env=env)


def test_connect_address_sources(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    context = {"pachd_address": "grpc://pachd.example:30650", "session_token": "tok"}
    config.write_text(json.dumps({"v2": {"active_context": "c", "contexts": {"c": context}}}))
    env = {"PACH_CONFIG": str(config)}
    client = connect(None, env=env)
    assert (client.address, client.auth_token) == ("pachd.example:30650", "tok")
    assert connect(None, env={**env, "PACHD_ADDRESS": "h1:1234"}).address == "h1:1234"
    assert connect("grpc://h2:80", env={**env, "PACHD_ADDRESS": "h1:1234"}).address == "h2:80"
    with pytest.raises(DeployError, match="invalid pachd address 'ftp://x:1'"):
        connect("ftp://x:1", env={})
