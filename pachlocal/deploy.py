"""``pachlocal deploy``: create the project's repos, secrets and pipelines on a real pachd.

The plan (:func:`plan`) is computed from the files alone: every input repo that
no spec produces (cron tick repos are pachd's own), then every secret from the
filled Secret files of ``--secrets DIR``, then every pipeline of ``specs/`` in
dependency order (a pipeline after the pipelines whose repos it reads).
:func:`apply` sends it with ``pachyderm-sdk``, the way pachctl would:

* repo: ``InspectRepo``, and ``CreateRepo`` only when it is ``NOT_FOUND``;
* secret: ``CreateSecret`` with the filled file's bytes as written in
  ``CreateSecretRequest.file`` (what ``pachctl create secret -f`` sends; the
  SDK's ``create_secret(name=, data=)`` helper would rebuild the manifest and
  drop its ``type``). With ``update`` the old secret is deleted first
  (``DeleteSecret``; a missing one is fine), as Kubernetes has no secret update
  in pachd's API. Without it an existing secret is kept;
* pipeline: ``CreatePipelineV2`` with the spec file's JSON text as written and
  the ``update``/``reprocess`` flags (``dry_run`` is always false: see below).

``dry_run`` prints the plan and sends nothing, not even a connection attempt;
pachd's own server-side dry run is not used, as it would still need the repos
and secrets of earlier steps to exist. Secret values are never printed: steps
and errors name secrets, files and keys only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import grpc  # type: ignore[import-untyped]
from pachyderm_sdk import Client
from pachyderm_sdk.api import pfs, pps
from pachyderm_sdk.api.pps import ApiStub as _GeneratedPpsStub

from .secrets import SecretError, parse_secret
from .spec import SpecError, input_leaves, load_spec_documents, parse_pipeline_spec

ADDRESS_ENV = "PACHD_ADDRESS"
CONFIG_ENV = "PACH_CONFIG"
DEFAULT_CONFIG = Path("~/.pachyderm/config.json")
# a create_secret.sh placeholder left in a file: the template, not a filled copy
_PLACEHOLDER = re.compile(r"^@?\$\{[A-Za-z_][A-Za-z0-9_]*(:-)?\}$")

Kind = Literal["repo", "secret", "pipeline"]


class DeployError(ValueError):
    """A deploy problem, printed as one line (never with a secret value)."""


@dataclass(frozen=True)
class Step:
    """One request to send: create a repo, a secret or a pipeline.

    ``payload`` is what is sent (the secret file's bytes, the spec's JSON text);
    it is kept out of ``repr`` and never printed.
    """

    kind: Kind
    name: str  # repo "project/name", secret name, pipeline "project/name"
    source: Path | None = None
    detail: str = ""  # e.g. the secret's keys, the repos a pipeline reads
    payload: bytes = field(default=b"", repr=False)

    def describe(self, update: bool = False) -> str:
        verb = "update" if update and self.kind != "repo" else "create"
        src = f" from {self.source}" if self.source else ""
        extra = f" ({self.detail})" if self.detail else ""
        return f"{verb} {self.kind} {self.name}{src}{extra}"


# --- connecting --------------------------------------------------------------------------


def _config_address(path: Path) -> tuple[str, Any]:
    """pachd address and parsed context of the active pachctl context of ``path``."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise DeployError(
            f"no pachd address: pass --pachd ADDRESS, set {ADDRESS_ENV}, or configure pachctl "
            f"({path}: {exc.strerror or exc})"
        ) from None
    except ValueError:
        raise DeployError(f"{path}: not valid JSON") from None
    v2 = doc.get("v2") if isinstance(doc, dict) else None
    name = v2.get("active_context") if isinstance(v2, dict) else None
    contexts = v2.get("contexts") if isinstance(v2, dict) else None
    context = contexts.get(name) if isinstance(contexts, dict) and name else None
    if not isinstance(context, dict):
        raise DeployError(
            f"no pachd address: {path} has no active context (v2.active_context); pass "
            f"--pachd ADDRESS or set {ADDRESS_ENV}"
        )
    address = context.get("pachd_address")
    if not address:
        forwarded = (context.get("port_forwarders") or {}).get("pachd")
        if not forwarded:
            raise DeployError(
                f"no pachd address: context {name!r} of {path} has no pachd_address; pass "
                f"--pachd ADDRESS or set {ADDRESS_ENV}"
            )
        address = f"grpc://localhost:{forwarded}"
    return str(address), context


def connect(address: str | None = None, env: Mapping[str, str] | None = None) -> Client:
    """A client for pachd; no request is sent yet.

    Args:
        address: ``grpc://host:port``, ``grpcs://host:port`` or ``host:port``;
            else ``PACHD_ADDRESS``; else the active context of the pachctl config
            (``PACH_CONFIG`` or ``~/.pachyderm/config.json``), whose session
            token and CA certificates are used too.
        env: the environment (default ``os.environ``).

    Raises:
        DeployError: no address anywhere, or an unusable one.
    """
    env = os.environ if env is None else env
    address = address or env.get(ADDRESS_ENV) or None
    token, certs = None, None
    if not address:
        config = Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()
        address, context = _config_address(config)
        token = context.get("session_token") or None
        if context.get("server_cas"):
            import base64

            certs = base64.b64decode(context["server_cas"])
    try:
        return Client.from_pachd_address(address, auth_token=token, root_certs=certs)
    except (ValueError, TypeError) as exc:
        raise DeployError(f"invalid pachd address {address!r}: {exc}") from None


# --- planning ----------------------------------------------------------------------------


def _pfs_inputs(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [leaf for _, kind, leaf in input_leaves(node) if kind == "pfs"]


def _cron_repos(node: Mapping[str, Any]) -> list[str]:
    return [str(leaf["repo"]) for _, kind, leaf in input_leaves(node) if kind == "cron"]


@dataclass
class _Pipeline:
    name: str  # project/name
    source: Path
    text: str
    reads: list[str]  # project/repo of every pfs input
    crons: list[str]  # project/repo of its cron tick repos (pachd creates them)


def _load_pipelines(root: Path) -> list[_Pipeline]:
    files = sorted((root / "specs").glob("*.pipeline.json"))
    if not files:
        raise DeployError(f"no pipeline specs in {root / 'specs'}")
    out: list[_Pipeline] = []
    for path in files:
        text = path.read_text()
        docs = load_spec_documents(text, source=str(path))
        for doc in docs:
            try:
                spec = parse_pipeline_spec(doc)
            except SpecError as exc:
                raise exc.with_source(str(path)) from None
            project = spec["pipeline"].get("project", {}).get("name", "default")
            crons = [f"{project}/{r}" for r in _cron_repos(spec.get("input") or {})]
            reads: list[str] = []
            for inp in _pfs_inputs(spec.get("input") or {}):
                repo = f"{inp.get('project') or project}/{inp['repo']}"
                if repo not in reads:
                    reads.append(repo)
            # one document: its text as written, like pachctl; several: each as JSON
            sent = text if len(docs) == 1 else json.dumps(doc)
            name = f"{project}/{spec['pipeline']['name']}"
            out.append(_Pipeline(name, path, sent, reads, crons))
    return out


def _secret_steps(secrets_dir: Path) -> list[Step]:
    if not secrets_dir.is_dir():
        raise DeployError(f"--secrets {secrets_dir}: not a directory")
    steps: list[Step] = []
    seen: dict[str, Path] = {}
    for path in sorted(secrets_dir.glob("*.json")):
        raw = path.read_bytes()
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:  # the message quotes no value: position only
            raise SecretError(f"{path}: invalid JSON at line {exc.lineno}") from None
        except ValueError:
            raise SecretError(f"{path}: not UTF-8 JSON") from None
        name, values = parse_secret(doc, str(path))
        for key, value in (doc.get("stringData") or {}).items():
            if _PLACEHOLDER.match(value):
                raise SecretError(
                    f"{path}: stringData.{key}: an unfilled placeholder (fill the template "
                    "with create_secret.sh's variables first)"
                )
        if name in seen:
            raise SecretError(f"{path}: secret {name} is also defined in {seen[name]}")
        seen[name] = path
        steps.append(Step("secret", name, path, "keys: " + ", ".join(sorted(values)), raw))
    if not steps:
        raise DeployError(f"--secrets {secrets_dir}: no *.json secret files")
    return steps


def plan(root: Path, secrets_dir: Path | None = None) -> list[Step]:
    """The ordered steps that deploy the project at ``root``.

    Args:
        root: the project root (its ``specs/*.pipeline.json``).
        secrets_dir: filled Secret JSON files (``<name>.json``), or ``None`` to
            leave secrets alone (created beforehand with ``create_secret.sh``).

    Returns:
        Repo steps (input repos no pipeline produces, sorted), then secret
        steps (by file name), then pipeline steps in dependency order.

    Raises:
        SpecError, SecretError: an invalid spec or secret file (named, with the field).
        DeployError: a dependency cycle, a duplicate pipeline, no specs.
    """
    pipelines = _load_pipelines(root)
    owner: dict[str, _Pipeline] = {}  # repo -> the pipeline whose creation creates it
    for p in pipelines:
        for repo in [p.name, *p.crons]:
            if repo in owner:
                raise DeployError(f"{p.source}: repo {repo} is also made by {owner[repo].source}")
            owner[repo] = p
    inputs = sorted({r for p in pipelines for r in p.reads} - owner.keys())
    steps = [Step("repo", _short(r), detail="input repo") for r in inputs]
    if secrets_dir is not None:
        steps += _secret_steps(secrets_dir)
    done: set[str] = set()
    pending = list(pipelines)
    while pending:
        ready = [
            p
            for p in pending
            if all(owner[r].name in done or owner[r] is p for r in p.reads if r in owner)
        ]
        if not ready:
            names = ", ".join(_short(p.name) for p in pending)
            raise DeployError(f"pipelines read each other in a cycle: {names}")
        for p in ready:
            reads = ", ".join(_short(r) for r in p.reads)
            steps.append(
                Step(
                    "pipeline",
                    _short(p.name),
                    p.source,
                    f"reads {reads}" if reads else "",
                    p.text.encode(),
                )
            )
            done.add(p.name)
            pending.remove(p)
    return steps


def _short(name: str) -> str:
    """``default/x`` -> ``x``; other projects stay qualified (``Repo.from_uri`` reads both)."""
    return name.removeprefix("default/")


# --- applying ----------------------------------------------------------------------------


def _code(exc: Any) -> Any:
    try:
        return exc.code()
    except Exception:  # an RpcError that is not a Call
        return None


def _rpc_error(what: str, exc: Any, address: str) -> DeployError:
    if isinstance(exc, ConnectionError):  # the SDK's interceptor: UNAVAILABLE, cause kept
        exc = exc.__cause__ if isinstance(exc.__cause__, grpc.RpcError) else exc
        if isinstance(exc, ConnectionError):
            return DeployError(f"cannot reach pachd at {address}: {exc}".strip())
    code = _code(exc)
    try:
        details = str(exc.details() or "").splitlines()[0]
    except Exception:
        details = ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return DeployError(f"cannot reach pachd at {address}: {details or code.name}")
    label = code.name if code is not None else "error"
    return DeployError(f"{what}: pachd {label}: {details}")


def _exists(exc: Any) -> bool:
    return bool(_code(exc) == grpc.StatusCode.ALREADY_EXISTS or "already exists" in _details(exc))


def _missing(exc: Any) -> bool:
    return bool(_code(exc) == grpc.StatusCode.NOT_FOUND or "not found" in _details(exc))


def _details(exc: Any) -> str:
    try:
        return str(exc.details() or "")
    except Exception:
        return ""


def apply(
    client: Client | None,
    steps: Sequence[Step],
    *,
    update: bool = False,
    reprocess: bool = False,
    dry_run: bool = False,
    out: TextIO,
) -> None:
    """Send ``steps`` to pachd in order, one line to ``out`` per step.

    Args:
        client: from :func:`connect`; unused (may be ``None``) with ``dry_run``.
        steps: from :func:`plan`.
        update: replace existing secrets and update existing pipelines.
        reprocess: with ``update``, reprocess every datum of updated pipelines.
        dry_run: print the plan and send nothing.
        out: where progress lines go.

    Raises:
        DeployError: the first failed request (earlier steps stay applied), or
            pachd unreachable; ``--reprocess`` without ``--update``.
    """
    if reprocess and not update:
        raise DeployError("--reprocess needs --update (it reprocesses updated pipelines)")
    if dry_run:
        out.write(f"dry run: {len(steps)} step(s), nothing sent to pachd\n")
        for step in steps:
            out.write(step.describe(update) + "\n")
        return
    if client is None:
        raise DeployError("no pachd client")
    address = str(client.address)
    try:
        version = client.get_version()
    except (grpc.RpcError, ConnectionError) as exc:
        raise _rpc_error("version", exc, address) from None
    out.write(
        f"pachd {version.major}.{version.minor}.{version.micro} at {address}: "
        f"{len(steps)} step(s)\n"
    )
    for step in steps:
        what = f"{step.kind} {step.name}"
        try:
            result = _apply_one(client, step, update=update, reprocess=reprocess)
        except (grpc.RpcError, ConnectionError) as exc:
            error = _rpc_error(what, exc, address)
            if step.kind == "pipeline" and _exists(exc) and not update:
                error = DeployError(f"{error} (rerun with --update)")
            raise error from None
        out.write(f"{what}: {result}\n")


def _apply_one(client: Client, step: Step, *, update: bool, reprocess: bool) -> str:
    if step.kind == "repo":
        repo = pfs.Repo.from_uri(step.name)
        try:
            client.pfs.inspect_repo(repo=repo)
            return "exists"
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.NOT_FOUND:
                raise
        try:
            client.pfs.create_repo(repo=repo)
        except grpc.RpcError as exc:
            if not _exists(exc):
                raise
            return "exists"
        return "created"
    if step.kind == "secret":
        if update:
            try:
                client.pps.delete_secret(secret=pps.Secret(name=step.name))
            except grpc.RpcError as exc:
                if not _missing(exc):
                    raise
        try:
            # the generated method: CreateSecretRequest{file: <the Secret manifest>}
            _GeneratedPpsStub.create_secret(client.pps, file=step.payload)
        except grpc.RpcError as exc:
            if update or not _exists(exc):
                raise
            return "exists, kept (--update replaces it)"
        return "replaced" if update else "created"
    client.pps.create_pipeline_v2(
        create_pipeline_request_json=step.payload.decode(),
        dry_run=False,
        update=update,
        reprocess=reprocess,
    )
    return "updated" if update else "created"


def deploy(
    root: Path,
    *,
    address: str | None = None,
    secrets_dir: Path | None = None,
    update: bool = False,
    reprocess: bool = False,
    dry_run: bool = False,
    out: TextIO,
) -> list[Step]:
    """Plan, connect (unless ``dry_run``) and apply; returns the steps."""
    try:
        steps = plan(root, secrets_dir)
    except OSError as exc:
        raise DeployError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None
    client = None if dry_run else connect(address)
    apply(client, steps, update=update, reprocess=reprocess, dry_run=dry_run, out=out)
    return steps
