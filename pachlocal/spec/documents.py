"""Reading spec files: JSON values or YAML documents, as ``pachctl create pipeline -f``
reads them, each spec labelled with its file and document for error messages.

YAML is read as pachctl's yaml.v3 reads it (YAML 1.2 booleans and integers, no
dates, unique keys), JSON with duplicate keys refused; the size and shape limits
of :mod:`.limits` are checked before anything is validated.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any

import yaml

from . import limits
from .errors import SpecError, show
from .pipeline import parse_pipeline_spec


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
                raise SpecError("", f"expected a pipeline spec object, got {show(item)}", label)
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
