"""Load, validate and normalise Pachyderm 2.x pipeline specs: all of pachlocal's
reading of specs lives in this package.

Values are read as protojson reads them and checked against the pachyderm-sdk
betterproto classes; server-side rules and defaults follow pachd v2.11. The
normalised spec is a JSON-able dict keyed by protojson (camelCase) names.

Rooms:

- :mod:`.documents`: spec files, JSON values or YAML documents, each spec
  labelled with its file and document (:func:`load_spec_documents`,
  :func:`load_pipeline_specs`).
- :mod:`.fields`: the protobuf-shaped typing of keys and values (messages,
  scalars, enums, Durations, Timestamps; :func:`duration_seconds`).
- :mod:`.pipeline`: pachd's rules on a whole spec and its defaults
  (:func:`parse_pipeline_spec`), host checks (:func:`check_mount_targets`) and
  :func:`spec_fingerprint`.
- :mod:`.inputs`: the input tree, its rules, defaults and order, and
  :func:`input_leaves`, the one walk of its leaves.
- :mod:`.limits`: size and shape limits and Kubernetes' naming rules.
- :mod:`.unsupported`: what pachlocal refuses to run (:func:`refuse_unsupported`).
- :mod:`.errors`: :class:`SpecError`, which every check raises.
"""

from .documents import load_pipeline_specs, load_spec_documents
from .errors import SpecError
from .fields import duration_seconds
from .inputs import INPUT_KINDS, RESERVED_INPUT_NAMES, input_leaves, iter_input_names
from .pipeline import (
    DEFAULT_DATUM_TRIES,
    DEFAULT_IMAGE,
    MAX_PIPELINE_NAME,
    REQUEST_FIELDS,
    check_mount_targets,
    parse_pipeline_spec,
    spec_fingerprint,
)
from .unsupported import UNSUPPORTED, refuse_unsupported

__all__ = [
    "DEFAULT_DATUM_TRIES",
    "DEFAULT_IMAGE",
    "INPUT_KINDS",
    "MAX_PIPELINE_NAME",
    "REQUEST_FIELDS",
    "RESERVED_INPUT_NAMES",
    "UNSUPPORTED",
    "SpecError",
    "check_mount_targets",
    "duration_seconds",
    "input_leaves",
    "iter_input_names",
    "load_pipeline_specs",
    "load_spec_documents",
    "parse_pipeline_spec",
    "refuse_unsupported",
    "spec_fingerprint",
]
