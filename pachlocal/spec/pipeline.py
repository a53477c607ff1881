"""pachd's server-side rules on a whole pipeline spec and the defaults it fills in
(``validatePipelineRequest``, ``validatePipeline``, ``setPipelineDefaults`` of pachd
v2.11), pachlocal's own stricter checks, and a spec's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pachyderm_sdk.api import pps

from . import limits
from .errors import SpecError, require
from .fields import message
from .inputs import normalise_input

DEFAULT_IMAGE = "ubuntu:20.04"
DEFAULT_DATUM_TRIES = limits.DEFAULT_DATUM_TRIES
MAX_PIPELINE_NAME = 51
# CreatePipelineRequest flags about the request, not the pipeline (the JSON schema omits them)
REQUEST_FIELDS = ("update", "dryRun", "reprocess", "specCommit")

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
_NAME_RULE = "use letters, digits, _ and -, and start with a letter or digit"
_SERVICE_TYPES = ("ClusterIP", "LoadBalancer", "NodePort")


def parse_pipeline_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one spec strictly and return it normalised, with pachd's defaults.

    Beyond pachd's rules, pachlocal requires a non-empty ``transform.cmd`` (it
    does not read image entrypoints) and every secret to set ``envVar`` (with
    ``key``) or ``mountPath``, and refuses at once what Kubernetes or the job
    queue would choke on later (:mod:`pachlocal.spec.limits`): NUL bytes, env,
    secret and key names Kubernetes refuses, unusable or nested mount paths,
    ``datumTries`` outside 1..100, more than 1000 workers, timeouts over 30
    days, documents nested deeper than 64 levels or over 100,000 values, and
    globs only pachd's matcher can run. Defaults: ``transform.image`` ubuntu:20.04,
    ``outputBranch`` master, ``datumTries`` 3, ``reprocessSpec`` until_success,
    ``parallelismSpec.constant`` 1, service type NodePort; pfs ``branch`` master
    (``<pipeline>-trigger-<n>`` with a trigger, whose branch defaults to master),
    ``name`` = repo, ``repoType`` user, glob cleaned as pachd does; cron ``repo``
    ``<pipeline>_<name>`` and ``overwrite`` false (``start`` stays unset: it
    means the creation time). Combinator children are sorted by their names as
    written (pachd's SortInput), before names are defaulted.

    Args:
        doc: one raw spec object (camelCase and/or snake_case keys).

    Returns:
        A JSON-able dict keyed by protojson (camelCase) names.

    Raises:
        SpecError: naming the key path of the first problem found.
    """
    if problem := limits.ShapeLimits().problem(doc):
        raise SpecError(*problem)
    spec = message(pps.CreatePipelineRequest, doc, "")
    pipeline = spec.get("pipeline", {})
    name, project = pipeline.get("name", ""), pipeline.get("project", {}).get("name", "default")
    # pachd also keeps the Kubernetes name "<project>-<name>-v99" within 63 characters
    longest = min(MAX_PIPELINE_NAME, 58 - len(project))
    require(bool(name), "pipeline.name", "required")
    require(bool(_NAME.fullmatch(name)), "pipeline.name", f"{name!r}: {_NAME_RULE}")
    require(len(name) <= longest, "pipeline.name", f"{name!r} is longer than {longest} characters")
    require("tfJob" not in spec, "tfJob", "embedding TFJobs in pipelines is not supported")
    require("transform" in spec, "transform", "required")
    transform = spec["transform"]
    require(bool(transform.get("cmd")), "transform.cmd", "required (image entrypoints are not run)")
    for i, secret in enumerate(transform.get("secrets", [])):
        path = f"transform.secrets[{i}]"
        require(bool(secret.get("name")), f"{path}.name", "required")
        require("key" in secret or "envVar" not in secret, f"{path}.key", "required with envVar")
        require(bool({"envVar", "mountPath"} & secret.keys()), path, "needs envVar or mountPath")
    reprocess = spec.get("reprocessSpec", "until_success")
    ok = reprocess in ("until_success", "every_job")
    require(ok, "reprocessSpec", f"must be until_success or every_job, not {reprocess!r}")
    if problem := limits.transform_problem(transform) or limits.bounds_problem(spec):
        raise SpecError(*problem)
    _check_workers(spec)
    if "input" in spec:
        spec["input"] = normalise_input(spec["input"], name)
    transform.setdefault("image", DEFAULT_IMAGE)
    spec.setdefault("outputBranch", "master")
    spec.setdefault("datumTries", DEFAULT_DATUM_TRIES)
    spec.setdefault("reprocessSpec", "until_success")
    spec.setdefault("parallelismSpec", {}).setdefault("constant", 1)
    return spec


def _check_workers(spec: dict[str, Any]) -> None:
    """pachd's rules on services, spouts, tolerations and pod specs."""
    service, spout = spec.get("service"), spec.get("spout")
    parallelism = spec.get("parallelismSpec", {"constant": 1}).get("constant")
    require(
        service is None or parallelism == 1, "parallelismSpec.constant", "must be 1 for a service"
    )
    require(
        not spec.get("s3Out") or (service or spout) is None, "s3Out", "not for spouts or services"
    )
    require(spout is None or not spec.get("autoscaling"), "autoscaling", "not for spouts")
    no_input = spout is None or "service" in spout or "input" not in spec
    require(no_input, "input", "not allowed in a spout without a service")
    for path, svc in (("service", service), ("spout.service", (spout or {}).get("service"))):
        if svc is not None:
            ok = svc.setdefault("type", "NodePort") in _SERVICE_TYPES
            require(ok, f"{path}.type", f"must be one of {', '.join(_SERVICE_TYPES)}")
    for i, toleration in enumerate(spec.get("tolerations", [])):
        require("operator" in toleration, f"tolerations[{i}].operator", "required: EQUAL or EXISTS")
    for key in ("podSpec", "podPatch"):
        try:
            json.loads(spec.get(key, "null"))
        except ValueError:
            raise SpecError(key, "must be a JSON document") from None


def check_mount_targets(spec: Mapping[str, Any], root: Path = Path("/")) -> None:
    """Refuse secret ``mountPath``s this host cannot create, at create time rather than
    in every datum: the path, or a directory above it, exists as something other than
    a directory (``/etc/hostname/x``). Symlinks are followed.

    Args:
        spec: a spec returned by :func:`parse_pipeline_spec`.
        root: where ``/`` is (tests pass a temporary directory).

    Raises:
        SpecError: naming ``transform.secrets[i].mountPath``.
    """
    secrets = spec.get("transform", {}).get("secrets") or []
    if problem := limits.mount_target_problem(secrets, root):
        raise SpecError(*problem)


def spec_fingerprint(spec: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of a normalised spec's canonical JSON (its version).

    The request flags in ``REQUEST_FIELDS`` (``update``, ``reprocess``...) are
    left out: adding ``update: true`` to a file does not change the pipeline.

    Args:
        spec: a spec returned by :func:`parse_pipeline_spec`.

    Returns:
        64 hex characters; equal specs give equal fingerprints.
    """
    pipeline = {k: v for k, v in spec.items() if k not in REQUEST_FIELDS}
    text = json.dumps(pipeline, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
