"""Load, validate and normalise Pachyderm 2.x pipeline specs.

Field names and types come from the pachyderm-sdk betterproto classes: the walk
below follows ``dataclasses.fields`` of ``pps.CreatePipelineRequest`` itself,
because betterproto's ``from_dict`` drops unknown keys and keeps wrong types.
Values are read as protojson reads them (camelCase or snake_case keys, ``null``
= absent, integers also as strings, Durations ``"600s"``, Timestamps RFC 3339,
enums by name or number). Server-side rules and defaults follow pachd v2.11
(``validatePipelineRequest``, ``validatePipeline``, ``validateInput``,
``setPipelineDefaults``).

The normalised spec is a JSON-able dict keyed by protojson names. Proto3 zero
values (``""``, ``0``, ``false``, ``[]``, ``{}``) are dropped, as pachd cannot
tell them from absent fields; messages are kept even when empty.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import posixpath
import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import betterproto
import yaml
from pachyderm_sdk.api import pps

from pachlocal import speclimits as limits
from pachlocal.globs import GlobError, UnsupportedGlob, compile_glob

DEFAULT_IMAGE = "ubuntu:20.04"
DEFAULT_DATUM_TRIES = limits.DEFAULT_DATUM_TRIES
MAX_PIPELINE_NAME = 51
RESERVED_INPUT_NAMES = ("out", ".env")
INPUT_KINDS = ("pfs", "cron", "cross", "union", "join", "group")
_GROUPS = ("cross", "join", "group", "union")
# CreatePipelineRequest flags about the request, not the pipeline (the JSON schema omits them)
REQUEST_FIELDS = ("update", "dryRun", "reprocess", "specCommit")

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
_BRANCH = re.compile(r"[a-zA-Z0-9_-]+")
_DURATION = re.compile(r"(-?)(\d*)(?:\.(\d{0,9}))?s")
_MAX_DURATION_S = 315_576_000_000  # the range google.protobuf.Duration allows
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)"
)
_HUMAN_SIZE = re.compile(r"\d+(\.\d+)* ?[kKmMgGtTpP]?[iI]?[bB]?")  # go-units, used by pfs triggers
_NAME_RULE = "use letters, digits, _ and -, and start with a letter or digit"
_SERVICE_TYPES = ("ClusterIP", "LoadBalancer", "NodePort")
_NAME_OVERRIDES = {(pps.Egress, "url"): "URL"}  # the proto field is `URL`, not snake_case


class SpecError(ValueError):
    """An invalid pipeline spec; the message names the offending key path."""

    def __init__(self, path: str, detail: str, source: str = "") -> None:
        self.path, self.detail, self.source = path, detail, source
        where = ": ".join(p for p in (source, path) if p)
        super().__init__(f"{where}: {detail}" if where else detail)

    def with_source(self, source: str) -> SpecError:
        """Return the same error labelled with a file/document ``source``."""
        return SpecError(self.path, self.detail, source)


# --- loading ---------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML read like pachctl's yaml.v3: YAML 1.2 booleans and ints, unique keys; nesting
    is counted while composing, before PyYAML's recursion runs out (or takes its time)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.trail: list[str] = []  # key path of the node being composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # index: the key node of a mapping value, the position in a sequence, else None
        step = f"[{index}]" if type(index) is int else ""
        if isinstance(index, yaml.ScalarNode):
            step = f".{index.value}" if any(self.trail) else str(index.value)
        self.trail.append(step)
        try:  # a key sits at its value's level
            key = parent is not None and index is None
            if len(self.trail) > limits.MAX_DEPTH and not key:
                path = limits.path_or_root("".join(self.trail))
                raise SpecError(path, f"nested deeper than {limits.MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.trail.pop()

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: construct_mapping refuses it
                continue
            if duplicate:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        return super().construct_mapping(node, deep)


# Edit a copy of the resolver table so yaml.SafeLoader stays untouched. YAML 1.1
# reads `no`/`on` as booleans, `1:30` as 90 and dates as datetimes; yaml.v3 does not.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":int", ":timestamp"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^-?(?:0|[1-9][0-9]*)$"), list("-0123456789")
)


def _json_stream(text: str, source: str) -> list[Any]:
    """Decode one or more concatenated JSON values, rejecting duplicate keys."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(items)
        if len(value) < len(items):
            keys = [k for k, _ in items]
            dups = sorted(k for k, n in collections.Counter(keys).items() if n > 1)
            raise SpecError("", f"duplicate key {dups[0]!r}", source)
        return value

    decoder, values, pos = json.JSONDecoder(object_pairs_hook=pairs), [], 0
    while (pos := len(text) - len(text[pos:].lstrip())) < len(text):
        value, pos = decoder.raw_decode(text, pos)
        values.append(value)
    return values


def _yaml_error(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (with a source excerpt) as one line."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem}{where}"
    return " ".join(str(exc).split())


def _decode_documents(text: str, source: str) -> list[Any]:
    """The JSON values or YAML documents of a spec file, as loaded."""
    docs, json_error = None, None
    if text.lstrip()[:1] in ("{", "["):
        # JSON values, maybe `---`-separated: a raw newline cannot occur inside a JSON string
        chunks = re.split(r"(?m)^---[ \t]*$", text)
        try:
            docs = [doc for chunk in chunks for doc in _json_stream(chunk, source)]
        except json.JSONDecodeError as exc:  # may still be flow-style YAML
            json_error = str(exc)
        except RecursionError:  # YAML reads JSON too, and tells where the nesting is too deep
            json_error = f"nested deeper than {limits.MAX_DEPTH} levels"
    if docs is None:
        try:
            docs = list(yaml.load_all(text, Loader=_Loader))
        except yaml.YAMLError as exc:
            what = (
                f"invalid JSON: {json_error}" if json_error else f"invalid YAML: {_yaml_error(exc)}"
            )
            raise SpecError("", what, source) from exc
    return docs


def _load_labelled(text: str, source: str) -> list[tuple[str, dict[str, Any]]]:
    size = len(text) if len(text) > limits.MAX_SPEC_BYTES else len(text.encode(errors="replace"))
    if size > limits.MAX_SPEC_BYTES:
        raise SpecError("", f"larger than {limits.MAX_SPEC_BYTES >> 20} MiB ({size} bytes)", source)
    try:
        docs = _decode_documents(text.lstrip("\ufeff"), source)
    except SpecError as exc:
        raise exc.with_source(exc.source or source) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise SpecError("", f"cannot read the spec: {exc}", source) from None
    out: list[tuple[str, dict[str, Any]]] = []
    shape = limits.ShapeLimits()  # one budget for the whole file
    for d, doc in enumerate(docs, 1):
        if doc is None:
            continue  # empty YAML document
        many = isinstance(doc, list)
        for i, item in enumerate(doc if many else [doc], 1):
            label = f"{source}, document {d}" + (f" item {i}" if many else "")
            if problem := shape.problem(item):
                raise SpecError(*problem, source=label)
            if not isinstance(item, dict):
                raise SpecError("", f"expected a pipeline spec object, got {_show(item)}", label)
            out.append((label, item))
    return out


def load_spec_documents(text: str, source: str = "<spec>") -> list[dict[str, Any]]:
    """Split a spec file into raw spec objects, as ``pachctl create pipeline -f`` does.

    Args:
        text: JSON or YAML: one spec, a list of specs, ``---`` YAML documents or
            concatenated JSON objects. Empty documents are skipped.
        source: file name used in error messages.

    Returns:
        The raw (unvalidated) spec objects in file order.
    """
    return [doc for _, doc in _load_labelled(text, source)]


def load_pipeline_specs(text: str, source: str = "<spec>") -> list[dict[str, Any]]:
    """Load and validate every spec of a file; errors name the file and document.

    Args:
        text: the file's contents (see :func:`load_spec_documents`).
        source: file name used in error messages.

    Returns:
        The normalised specs (see :func:`parse_pipeline_spec`).
    """
    specs = []
    for label, doc in _load_labelled(text, source):
        try:
            specs.append(parse_pipeline_spec(doc))
        except SpecError as exc:
            raise exc.with_source(label) from None
    return specs


# --- type-driven walk over the SDK messages --------------------------------


@dataclasses.dataclass(frozen=True)
class _Field:
    json: str  # protojson name, used in the output
    proto: str
    proto_type: str  # betterproto's name of the proto scalar type, "message", "map", ...
    hint: Any  # the resolved annotation: str, List[X], Dict[str, str], a Message class...
    group: str | None  # oneof group
    wraps: str | None  # scalar type of a google.protobuf.*Value wrapper


@functools.cache
def _fields(cls: type) -> dict[str, _Field]:
    """Accepted keys (protojson name and proto name) of one message class."""
    hints = typing.get_type_hints(cls)  # resolves ForwardRefs like '_pfs__.Trigger'
    table: dict[str, _Field] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata["betterproto"]
        proto = _NAME_OVERRIDES.get((cls, f.name), f.name)
        head, *rest = proto.split("_")
        camel = head + "".join(p[:1].upper() + p[1:] for p in rest)
        field = _Field(camel, proto, meta.proto_type, hints[f.name], meta.group, meta.wraps)
        table[field.json] = table[field.proto] = field
    return table


def _show(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return "an object" if isinstance(value, Mapping) else "a list"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(cls: type, value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected an object, got {_show(value)}")
    fields, out = _fields(cls), {}
    given: dict[str, str] = {}  # protojson name -> key as written
    oneofs: dict[str, str] = {}
    for key, raw in value.items():
        if not isinstance(key, str):
            raise SpecError(path, f"keys must be strings, got {_show(key)}")
        kpath = f"{path}.{key}" if path else key
        if key == "$schema":  # editors add it; pachctl strips it
            continue
        field = fields.get(key)
        if field is None:
            near = [k for k in fields if k.replace("_", "").lower() == key.replace("_", "").lower()]
            raise SpecError(
                kpath, "unknown field" + (f" (did you mean {near[0]!r}?)" if near else "")
            )
        if field.json in given:
            raise SpecError(kpath, f"given twice (also as {given[field.json]!r})")
        given[field.json] = key
        if raw is None:  # protojson: null means unset
            continue
        if field.group and field.group in oneofs:
            raise SpecError(kpath, f"cannot be combined with {oneofs[field.group]!r}")
        oneofs[field.group or ""] = key
        converted = _field_value(field, raw, kpath)
        if not _is_zero(field, converted):
            out[field.json] = converted
    return out


def _is_zero(field: _Field, value: Any) -> bool:
    if isinstance(value, list) or field.proto_type == "map":
        return not value
    if field.wraps or field.proto_type == "message":
        return False  # presence of a message or wrapper is meaningful
    if isinstance(field.hint, type) and issubclass(field.hint, betterproto.Enum):
        return bool(value == field.hint(0).name)
    return value in ("", 0)  # also matches False and 0.0


def _field_value(field: _Field, raw: Any, path: str) -> Any:
    if field.proto_type == "map":
        if not isinstance(raw, Mapping):
            raise SpecError(path, f"expected an object, got {_show(raw)}")
        if bad := [k for k in raw if not isinstance(k, str)]:
            raise SpecError(path, f"keys must be strings, got {_show(bad[0])}")
        value_hint = typing.get_args(field.hint)[1]
        return {k: _single(value_hint, v, f"{path}.{k}") for k, v in raw.items()}
    if typing.get_origin(field.hint) is list:
        if not isinstance(raw, list):
            raise SpecError(path, f"expected a list, got {_show(raw)}")
        item_hint = typing.get_args(field.hint)[0]
        return [_single(item_hint, v, f"{path}[{i}]", field.proto_type) for i, v in enumerate(raw)]
    if field.wraps:  # google.protobuf.*Value wrappers are written as the bare value
        return _scalar(field.wraps, raw, path)
    return _single(field.hint, raw, path, field.proto_type)


def _single(hint: Any, raw: Any, path: str, proto_type: str = "") -> Any:
    if raw is None:
        raise SpecError(path, "null is not allowed here")
    if hint is dt.timedelta:
        return _duration(raw, path)
    if hint is dt.datetime:
        return _timestamp(raw, path)
    if isinstance(hint, type) and issubclass(hint, betterproto.Message):
        return _message(hint, raw, path)
    if isinstance(hint, type) and issubclass(hint, betterproto.Enum):
        if isinstance(raw, str) and raw in hint.__members__:
            return raw
        if type(raw) is int and raw in {m.value for m in hint}:
            return hint(raw).name
        raise SpecError(path, f"expected one of {', '.join(hint.__members__)}, got {_show(raw)}")
    # map values carry no proto type of their own; the annotation says which scalar
    kind = proto_type or {str: "string", bool: "bool", int: "int64", float: "double"}[hint]
    return _scalar(kind, raw, path)


def _scalar(kind: str, raw: Any, path: str) -> Any:
    if kind in ("string", "bool"):
        if not isinstance(raw, str if kind == "string" else bool):
            expected = "a string" if kind == "string" else "true or false"
            raise SpecError(path, f"expected {expected}, got {_show(raw)}")
        return raw
    if kind in ("float", "double"):
        try:  # protojson also takes numbers written as strings
            number = math.nan if isinstance(raw, bool) else float(raw)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise SpecError(path, f"expected a finite number, got {_show(raw)}")
        return number
    if not kind.endswith(("int32", "int64", "fixed32", "fixed64")):
        raise SpecError(path, f"fields of proto type {kind} are not supported")
    bits, unsigned = (32 if kind.endswith("32") else 64), kind.startswith(("uint", "fixed"))
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    # protojson takes integral JSON numbers, and (64-bit ones mostly) decimal strings
    is_number = type(raw) is int or (isinstance(raw, float) and raw.is_integer())
    text = str(int(raw)) if is_number else raw
    value = int(text) if isinstance(text, str) and re.fullmatch(r"-?\d+", text) else None
    if value is None or not low <= value <= high:
        raise SpecError(path, f"expected an integer ({kind}), got {_show(raw)}")
    return value


def _fraction(nanos: int) -> str:
    """Fractional seconds the way protojson prints them: 0, 3, 6 or 9 digits."""
    digits = f"{nanos:09d}"
    if nanos == 0:
        return ""
    return "." + (digits[:3] if nanos % 10**6 == 0 else digits[:6] if nanos % 1000 == 0 else digits)


def _duration(raw: Any, path: str) -> str:
    match = _DURATION.fullmatch(raw) if isinstance(raw, str) else None
    if match is None or not (match[2] or match[3]):
        raise SpecError(path, f'expected a duration like "600s" or "1.5s", got {_show(raw)}')
    seconds, nanos = int(match[2] or 0), int((match[3] or "").ljust(9, "0"))
    if match[1] or seconds > _MAX_DURATION_S:  # the schema admits no negative durations
        raise SpecError(path, f"duration out of range, got {_show(raw)}")
    return f"{seconds}{_fraction(nanos)}s"


def _timestamp(raw: Any, path: str) -> str:
    match = _TIMESTAMP.fullmatch(raw) if isinstance(raw, str) else None
    try:
        if match is None:
            raise ValueError(raw)
        zone = dt.UTC if match[8] == "Z" else dt.datetime.strptime(match[8], "%z").tzinfo
        y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
        stamp = dt.datetime(y, mo, d, h, mi, s, tzinfo=zone)
        utc = stamp.astimezone(dt.UTC).replace(tzinfo=None).isoformat()  # zero-padded year
    except (ValueError, OverflowError):
        raise SpecError(path, f"expected an RFC 3339 timestamp, got {_show(raw)}") from None
    return utc + _fraction(int((match[7] or "").ljust(9, "0"))) + "Z"


def duration_seconds(value: str) -> float:
    """Seconds in a protojson Duration string such as ``"600s"`` or ``"1.5s"``.

    Args:
        value: the duration text.

    Returns:
        The duration in seconds.
    """
    return float(_duration(value, "duration")[:-1])


# --- server-side rules and defaults ----------------------------------------


def parse_pipeline_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one spec strictly and return it normalised, with pachd's defaults.

    Beyond pachd's rules, pachlocal requires a non-empty ``transform.cmd`` (it
    does not read image entrypoints) and every secret to set ``envVar`` (with
    ``key``) or ``mountPath``, and refuses at once what Kubernetes or the job
    queue would choke on later (:mod:`pachlocal.speclimits`): NUL bytes, env,
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
    spec = _message(pps.CreatePipelineRequest, doc, "")
    pipeline = spec.get("pipeline", {})
    name, project = pipeline.get("name", ""), pipeline.get("project", {}).get("name", "default")
    # pachd also keeps the Kubernetes name "<project>-<name>-v99" within 63 characters
    longest = min(MAX_PIPELINE_NAME, 58 - len(project))
    _require(bool(name), "pipeline.name", "required")
    _require(bool(_NAME.fullmatch(name)), "pipeline.name", f"{name!r}: {_NAME_RULE}")
    _require(len(name) <= longest, "pipeline.name", f"{name!r} is longer than {longest} characters")
    _require("tfJob" not in spec, "tfJob", "embedding TFJobs in pipelines is not supported")
    _require("transform" in spec, "transform", "required")
    transform = spec["transform"]
    _require(
        bool(transform.get("cmd")), "transform.cmd", "required (image entrypoints are not run)"
    )
    for i, secret in enumerate(transform.get("secrets", [])):
        path = f"transform.secrets[{i}]"
        _require(bool(secret.get("name")), f"{path}.name", "required")
        _require("key" in secret or "envVar" not in secret, f"{path}.key", "required with envVar")
        _require(bool({"envVar", "mountPath"} & secret.keys()), path, "needs envVar or mountPath")
    reprocess = spec.get("reprocessSpec", "until_success")
    ok = reprocess in ("until_success", "every_job")
    _require(ok, "reprocessSpec", f"must be until_success or every_job, not {reprocess!r}")
    if problem := limits.transform_problem(transform) or limits.bounds_problem(spec):
        raise SpecError(*problem)
    _check_workers(spec)
    if "input" in spec:
        _check_input(spec["input"], "input")
        as_written = copy.deepcopy(spec["input"])
        _set_input_defaults(spec["input"], name)
        _check_names(spec["input"], "input", {})
        spec["input"] = _sort_children(spec["input"], as_written)
    transform.setdefault("image", DEFAULT_IMAGE)
    spec.setdefault("outputBranch", "master")
    spec.setdefault("datumTries", DEFAULT_DATUM_TRIES)
    spec.setdefault("reprocessSpec", "until_success")
    spec.setdefault("parallelismSpec", {}).setdefault("constant", 1)
    return spec


def _require(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise SpecError(path, message)


def _check_workers(spec: dict[str, Any]) -> None:
    """pachd's rules on services, spouts, tolerations and pod specs."""
    service, spout = spec.get("service"), spec.get("spout")
    parallelism = spec.get("parallelismSpec", {"constant": 1}).get("constant")
    _require(
        service is None or parallelism == 1, "parallelismSpec.constant", "must be 1 for a service"
    )
    _require(
        not spec.get("s3Out") or (service or spout) is None, "s3Out", "not for spouts or services"
    )
    _require(spout is None or not spec.get("autoscaling"), "autoscaling", "not for spouts")
    no_input = spout is None or "service" in spout or "input" not in spec
    _require(no_input, "input", "not allowed in a spout without a service")
    for path, svc in (("service", service), ("spout.service", (spout or {}).get("service"))):
        if svc is not None:
            ok = svc.setdefault("type", "NodePort") in _SERVICE_TYPES
            _require(ok, f"{path}.type", f"must be one of {', '.join(_SERVICE_TYPES)}")
    for i, toleration in enumerate(spec.get("tolerations", [])):
        _require(
            "operator" in toleration, f"tolerations[{i}].operator", "required: EQUAL or EXISTS"
        )
    for key in ("podSpec", "podPatch"):
        try:
            json.loads(spec.get(key, "null"))
        except ValueError:
            raise SpecError(key, "must be a JSON document") from None


def _check_input(inp: dict[str, Any], path: str) -> None:
    """Structural rules of one input node and its children (pachd's validateInput)."""
    kinds = [k for k in INPUT_KINDS if k in inp]
    got = ", ".join(kinds) or "none"
    _require(
        len(kinds) == 1, path, f"exactly one of {', '.join(INPUT_KINDS)} must be set, got {got}"
    )
    kind = kinds[0]
    if kind == "pfs":
        _check_pfs(inp["pfs"], f"{path}.pfs")
    elif kind == "cron":  # the schedule's syntax is checked where schedules are parsed
        for key in ("name", "spec"):
            _require(bool(inp["cron"].get(key)), f"{path}.cron.{key}", "required")
    else:
        for i, child in enumerate(inp[kind]):
            _check_input(child, f"{path}.{kind}[{i}]")
        s3 = any(n.get("pfs", {}).get("s3") for n in _walk(inp, sort=False))
        _require(kind == "cross" or not s3, f"{path}.{kind}", f"S3 inputs not supported in {kind}")


def _check_pfs(pfs: dict[str, Any], path: str) -> None:
    s3, glob = pfs.get("s3", False), pfs.get("glob", "")
    _require(bool(pfs.get("repo")), f"{path}.repo", "required")
    out_ok = pfs["repo"] != "out" or "name" in pfs
    _require(out_ok, f"{path}.name", "required for a repo named 'out' (/pfs/out is the output)")
    _require(bool(s3 or glob), f"{path}.glob", "required")
    _require(not s3 or glob == "/", f"{path}.glob", "must be '/' when s3 is true")
    try:
        compile_glob(glob or "/")
    except UnsupportedGlob as exc:  # pachd would run it: refuse it rather than fail every job
        raise SpecError(f"{path}.glob", str(exc)) from None
    except GlobError:
        pass  # pachd accepts a bad glob; its jobs fail naming it, and an update recovers
    for key in ("lazy", "emptyFiles"):
        _require(not (s3 and pfs.get(key)), f"{path}.{key}", "cannot be combined with s3")
    _require("commit" not in pfs, f"{path}.commit", "must be empty: use a branch pointing at it")
    if (trigger := pfs.get("trigger")) is not None:  # pfs's validateTrigger, minus cron specs
        tpath, branch = f"{path}.trigger", trigger.get("branch", "master")
        given = "branch" in trigger or "branch" not in pfs
        _require(given, f"{tpath}.branch", "required when the input's branch is set")
        _require(bool(_BRANCH.fullmatch(branch)), f"{tpath}.branch", f"invalid: {branch!r}")
        _require(trigger.get("commits", 0) >= 0, f"{tpath}.commits", "must not be negative")
        size = trigger.get("size", "0")
        _require(bool(_HUMAN_SIZE.fullmatch(size)), f"{tpath}.size", f"invalid: {size!r}")


def _sort_key(inp: dict[str, Any]) -> str:
    """pps.InputName before defaults: the pfs name as written; cron counts as ''."""
    if "pfs" in inp:
        return str(inp["pfs"].get("name", ""))
    return min((_sort_key(c) for k in _GROUPS for c in inp.get(k, [])), default="")


def _walk(inp: dict[str, Any], sort: bool) -> Iterator[dict[str, Any]]:
    """Input nodes, children first (pachd's VisitInput); ``sort`` as pachd's SortInput."""
    for kind in _GROUPS:
        children = inp.get(kind, [])
        for child in sorted(children, key=_sort_key) if sort else children:  # stable sort
            yield from _walk(child, sort)
    yield inp


def _sort_children(inp: dict[str, Any], as_written: Mapping[str, Any]) -> dict[str, Any]:
    """pachd's SortInput: children ordered by their names *as written* (``as_written`` is
    the input before defaults), so stored specs, and datums, see them in pachd's order."""
    for kind in _GROUPS:
        if inp.get(kind):
            raw = as_written[kind]
            order = sorted(range(len(raw)), key=lambda i: _sort_key(raw[i]))  # stable
            inp[kind] = [_sort_children(inp[kind][i], raw[i]) for i in order]
    return inp


def _set_input_defaults(inp: dict[str, Any], pipeline: str) -> None:
    # pachd numbers trigger branches per repo in its visiting order after sorting
    # the inputs by their names as written, so fix that order before any defaults.
    triggers: dict[str, int] = {}
    for node in list(_walk(inp, sort=True)):
        if "pfs" in node:
            pfs = node["pfs"]
            if "branch" not in pfs and "trigger" in pfs:
                triggers[pfs["repo"]] = triggers.get(pfs["repo"], 0) + 1
                pfs["branch"] = f"{pipeline}-trigger-{triggers[pfs['repo']]}"
                pfs["trigger"].setdefault("branch", "master")
            pfs.setdefault("branch", "master")
            pfs.setdefault("name", pfs["repo"])
            pfs.setdefault("repoType", "user")
            if "glob" in pfs:  # pfsfile.CleanPath
                clean = posixpath.normpath(pfs["glob"])
                pfs["glob"] = "/" if clean == "." else "/" + clean.strip("/")
        elif "cron" in node:
            node["cron"].setdefault("repo", f"{pipeline}_{node['cron']['name']}")
            node["cron"].setdefault("overwrite", False)


def _check_names(inp: dict[str, Any], path: str, seen: dict[str, str]) -> None:
    """Input names are unique, except between the alternatives of one union."""
    for kind in ("pfs", "cron"):
        if kind in inp:
            name, npath = inp[kind]["name"], f"{path}.{kind}.name"
            if name in RESERVED_INPUT_NAMES:
                raise SpecError(npath, f"input cannot be named {name!r} (reserved)")
            if name in seen:
                raise SpecError(npath, f"name {name!r} was used more than once (also {seen[name]})")
            seen[name] = npath
    for kind in ("cross", "join", "group"):
        for i, child in enumerate(inp.get(kind, [])):
            _check_names(child, f"{path}.{kind}[{i}]", seen)
    merged: dict[str, str] = {}
    for i, child in enumerate(inp.get("union", [])):
        alternative = dict(seen)  # an alternative clashes only with names outside the union
        _check_names(child, f"{path}.union[{i}]", alternative)
        merged.update(alternative)
    seen.update(merged)  # ...but inputs beside the union clash with all of its names


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


def input_leaves(
    node: Mapping[str, Any], path: str = "input"
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, kind, leaf) for each pfs or cron input of an input tree, in spec order: the
    one walk of a tree's leaves for every reader of specs (``input.cross[1].pfs``, ``pfs``,
    the leaf's own fields)."""
    for kind in ("pfs", "cron"):
        if kind in node:
            yield f"{path}.{kind}", kind, node[kind]
            return
    for key in ("cross", "union", "join", "group"):
        for i, child in enumerate(node.get(key) or []):
            yield from input_leaves(child, f"{path}.{key}[{i}]")


def iter_input_names(inp: Mapping[str, Any] | None) -> list[str]:
    """Names of the pfs and cron inputs of an input tree, in file order.

    Args:
        inp: an ``input`` object (raw or normalised); ``None`` for no input.

    Returns:
        pfs ``name`` (falling back to ``repo``) and cron ``name`` of every leaf.
    """
    if not inp:
        return []
    if "pfs" in inp:
        return [str(inp["pfs"].get("name") or inp["pfs"].get("repo", ""))]
    if "cron" in inp:
        return [str(inp["cron"].get("name", ""))]
    return [n for k in _GROUPS for c in inp.get(k) or [] for n in iter_input_names(c)]


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
