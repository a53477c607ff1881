"""What a valid Pachyderm spec may ask for and pachlocal does not do: refused at create
time, naming the field, rather than run as a plain job (docs/pachlocal.md lists them).

The checks read a normalised spec (see :func:`.pipeline.parse_pipeline_spec`); the
message is ``pipeline <name>: <key path>: pachlocal does not support ...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import SpecError
from .inputs import input_leaves

#: Spec fields that change what a pipeline does and that pachlocal does not do: refused,
#: naming the field, rather than run as a plain job (docs/pachlocal.md lists them).
UNSUPPORTED = {
    "egress": "egress (pushing the output commit to an object store or database)",
    "spout": "spouts (long-running pipelines without an input)",
    "service": "services (long-running pods behind a Kubernetes service)",
    "s3Out": "the S3 gateway output (s3Out)",
    "determined": "Determined integration",
    "transform.datumBatching": "datum batching (one process for many datums)",
}


def refuse_unsupported(spec: Mapping[str, Any]) -> None:
    """Refuse a spec that asks for something pachlocal would silently not do.

    Args:
        spec: a spec returned by :func:`.pipeline.parse_pipeline_spec`.

    Raises:
        SpecError: labelled ``pipeline <name>``, naming the field.
    """
    name = spec["pipeline"]["name"]
    source = f"pipeline {name}"
    for key, what in UNSUPPORTED.items():
        node: Any = spec
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None and node is not False:
            raise SpecError(key, f"pachlocal does not support {what}", source)
    projects = [("pipeline.project", (spec["pipeline"].get("project") or {}).get("name"))]
    for path, _, leaf in input_leaves(spec.get("input") or {}):
        projects.append((f"{path}.project", leaf.get("project")))
        if leaf.get("s3"):
            raise SpecError(f"{path}.s3", "pachlocal does not support S3 gateway inputs", source)
    for path, project in projects:
        if project not in (None, "", "default"):
            detail = f"project {project!r}: pachlocal has the 'default' project only"
            raise SpecError(path, detail, source)
