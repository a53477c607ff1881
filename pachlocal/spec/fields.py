"""Protobuf-shaped typing of a spec: each key checked against the pachyderm-sdk
betterproto classes and each value read as protojson reads it.

The walk follows ``dataclasses.fields`` of ``pps.CreatePipelineRequest`` itself,
because betterproto's ``from_dict`` drops unknown keys and keeps wrong types.
Keys are camelCase or snake_case, ``null`` means absent, integers may be
written as strings, Durations as ``"600s"``, Timestamps in RFC 3339, enums by
name or number. The result is keyed by protojson names; proto3 zero values
(``""``, ``0``, ``false``, ``[]``, ``{}``) are dropped, as pachd cannot tell
them from absent fields, while messages are kept even when empty.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import re
import typing
from collections.abc import Mapping
from typing import Any

import betterproto
from pachyderm_sdk.api import pps

from .errors import SpecError, show

_DURATION = re.compile(r"(-?)(\d*)(?:\.(\d{0,9}))?s")
_MAX_DURATION_S = 315_576_000_000  # the range google.protobuf.Duration allows
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)"
)
_NAME_OVERRIDES = {(pps.Egress, "url"): "URL"}  # the proto field is `URL`, not snake_case


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


def message(cls: type, value: Any, path: str) -> dict[str, Any]:
    """``value`` read as a message of class ``cls``, keyed by protojson names.

    Raises:
        SpecError: naming the key path (below ``path``) of the first problem.
    """
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected an object, got {show(value)}")
    fields, out = _fields(cls), {}
    given: dict[str, str] = {}  # protojson name -> key as written
    oneofs: dict[str, str] = {}
    for key, raw in value.items():
        if not isinstance(key, str):
            raise SpecError(path, f"keys must be strings, got {show(key)}")
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
            raise SpecError(path, f"expected an object, got {show(raw)}")
        if bad := [k for k in raw if not isinstance(k, str)]:
            raise SpecError(path, f"keys must be strings, got {show(bad[0])}")
        value_hint = typing.get_args(field.hint)[1]
        return {k: _single(value_hint, v, f"{path}.{k}") for k, v in raw.items()}
    if typing.get_origin(field.hint) is list:
        if not isinstance(raw, list):
            raise SpecError(path, f"expected a list, got {show(raw)}")
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
        return message(hint, raw, path)
    if isinstance(hint, type) and issubclass(hint, betterproto.Enum):
        if isinstance(raw, str) and raw in hint.__members__:
            return raw
        if type(raw) is int and raw in {m.value for m in hint}:
            return hint(raw).name
        raise SpecError(path, f"expected one of {', '.join(hint.__members__)}, got {show(raw)}")
    # map values carry no proto type of their own; the annotation says which scalar
    kind = proto_type or {str: "string", bool: "bool", int: "int64", float: "double"}[hint]
    return _scalar(kind, raw, path)


def _scalar(kind: str, raw: Any, path: str) -> Any:
    if kind in ("string", "bool"):
        if not isinstance(raw, str if kind == "string" else bool):
            expected = "a string" if kind == "string" else "true or false"
            raise SpecError(path, f"expected {expected}, got {show(raw)}")
        return raw
    if kind in ("float", "double"):
        try:  # protojson also takes numbers written as strings
            number = math.nan if isinstance(raw, bool) else float(raw)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise SpecError(path, f"expected a finite number, got {show(raw)}")
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
        raise SpecError(path, f"expected an integer ({kind}), got {show(raw)}")
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
        raise SpecError(path, f'expected a duration like "600s" or "1.5s", got {show(raw)}')
    seconds, nanos = int(match[2] or 0), int((match[3] or "").ljust(9, "0"))
    if match[1] or seconds > _MAX_DURATION_S:  # the schema admits no negative durations
        raise SpecError(path, f"duration out of range, got {show(raw)}")
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
        raise SpecError(path, f"expected an RFC 3339 timestamp, got {show(raw)}") from None
    return utc + _fraction(int((match[7] or "").ljust(9, "0"))) + "Z"


def duration_seconds(value: str) -> float:
    """Seconds in a protojson Duration string such as ``"600s"`` or ``"1.5s"``.

    Args:
        value: the duration text.

    Returns:
        The duration in seconds.
    """
    return float(_duration(value, "duration")[:-1])
