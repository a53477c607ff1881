"""Limits a pipeline spec stays within, and the Kubernetes rules its names follow.

pachd hands the spec to Kubernetes, which refuses a pod whose environment
names, secret names or mount paths break its rules, and the job then waits
forever; pachlocal checks the same rules when the pipeline is created. The
limits on a spec document's size and shape bound what reading one costs: a YAML
alias bomb ("billion laughs") expands exponentially, and deep nesting runs
PyYAML's and json's recursion out.

Each check returns the problem, a message or a ``(key path, message)`` pair
(``None`` when there is none), and :mod:`pachlocal.spec` raises it as a
``SpecError``. Only :func:`mount_target_problem` looks at the host.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

MAX_SPEC_BYTES = 1 << 20  # 1 MiB of spec text
MAX_DEPTH = 64  # nesting levels; the document itself is level 1
MAX_VALUES = 100_000  # values read, every expansion of a YAML alias counted again
MAX_DATUM_TRIES = 100
MAX_PARALLELISM = 1000
MAX_TIMEOUT_S = 30 * 24 * 3600  # 30 days
MAX_SECRET_NAME = 253
DEFAULT_DATUM_TRIES = 3  # pachd's, when datumTries is absent (or 0: proto3 cannot tell)
RESERVED_MOUNTS = ("/pfs", "/proc", "/sys", "/dev")

# Kubernetes' classic rule for env var names (IsEnvVarName) and for secret data keys
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")  # IsDNS1123Subdomain
ENV_NAME_RULE = "use letters, digits, '_', '-' and '.', and do not start with a digit"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_Children = Iterator[tuple[Any, str, str | None]]  # (value, its path, problem with its key)
Problem = tuple[str, str]  # (key path, what is wrong)


class ShapeLimits:
    """Checks loaded documents against :data:`MAX_DEPTH` and :data:`MAX_VALUES`, and
    finds NUL bytes in their strings and keys. The value budget is shared by all
    documents one instance checks, so a file of many small bombs is caught too."""

    def __init__(self, budget: int = MAX_VALUES) -> None:
        self.left = budget

    def problem(self, value: Any, path: str = "") -> Problem | None:
        """The first ``(key path, problem)`` in document order, or None.

        The walk keeps one iterator per open level (never more than
        :data:`MAX_DEPTH`) and stops when the budget runs out, so it costs at most
        the budget even on a YAML document whose aliases expand exponentially or
        refer to themselves.
        """
        found = self._visit(value, path, 1)
        stack = [(_children(value, path), 1)] if found is None else []
        while stack and found is None:
            children, depth = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            inner, cpath, key_problem = child
            found = (path_or_root(cpath), key_problem) if key_problem else None
            found = found or self._visit(inner, cpath, depth + 1)
            if found is None and isinstance(inner, Mapping | list):
                stack.append((_children(inner, cpath), depth + 1))
        return found

    def _visit(self, value: Any, path: str, depth: int) -> Problem | None:
        self.left -= 1
        if self.left < 0:
            return path_or_root(path), f"expands to more than {MAX_VALUES} values (YAML aliases?)"
        if depth > MAX_DEPTH:
            return path_or_root(path), f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, str) and "\x00" in value:
            return path_or_root(path), "contains a NUL byte"
        return None


def _children(value: Any, path: str) -> _Children:
    if isinstance(value, Mapping):
        for key, child in value.items():
            bad = isinstance(key, str) and "\x00" in key
            # a key with a NUL is reported at its mapping's path
            cpath = path if bad else f"{path}.{key}" if path else str(key)
            yield child, cpath, f"key {key!r} contains a NUL byte" if bad else None
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield child, f"{path}[{i}]", None


def path_or_root(path: str) -> str:
    """A key path for messages: the document itself is ``<root>``."""
    return path or "<root>"


def env_name_problem(name: str) -> str | None:
    """Why ``name`` is not a Kubernetes environment variable name, or None."""
    if _ENV_NAME.fullmatch(name):
        return None
    return f"{name!r} is not a valid environment variable name: {ENV_NAME_RULE}"


def secret_name_problem(name: str) -> str | None:
    """Why ``name`` is not a Kubernetes secret name (a DNS-1123 subdomain), or None."""
    if len(name) <= MAX_SECRET_NAME and _DNS_SUBDOMAIN.fullmatch(name):
        return None
    return (
        f"{name!r} is not a valid secret name: use lowercase letters, digits, '-' and '.', "
        f"start and end each part with a letter or digit, at most {MAX_SECRET_NAME} characters"
    )


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes secret data key (a file name), or None."""
    if len(key) <= MAX_SECRET_NAME and _SECRET_KEY.fullmatch(key) and key not in (".", ".."):
        return None
    return (
        f"{key!r} is not a valid secret key: use letters, digits, '-', '_' and '.', not '.' or '..'"
    )


def mount_path_problem(path: str) -> str | None:
    """Why a secret cannot be mounted at ``path``, or None."""
    if not path.startswith("/"):
        return f"{path!r} must be an absolute path"
    if posixpath.normpath(path) != path or "//" in path:
        return f"{path!r} must be a clean path: no '.' or '..' parts, no '//', no trailing '/'"
    if _CONTROL.search(path) or path != path.strip():
        return f"{path!r} must not hold control characters or end in whitespace"
    if path == "/":
        return "'/' cannot be a mount path"
    for reserved in RESERVED_MOUNTS:
        if path == reserved or path.startswith(reserved + "/"):
            return f"{path!r} cannot be {reserved} or under it"
    return None


def nested_mounts(paths: Sequence[str]) -> tuple[int, int] | None:
    """Indices ``(outer, inner)`` of two mount paths where ``inner`` equals ``outer`` or
    lies below it, or None. Sorted by their parts, a path is followed by the paths
    below it, so comparing neighbours is enough (no quadratic scan)."""
    order = sorted(range(len(paths)), key=lambda i: paths[i].split("/"))
    for a, b in itertools.pairwise(order):
        if paths[b] == paths[a] or paths[b].startswith(paths[a] + "/"):
            return a, b
    return None


_SECRET_CHECKS: dict[str, Callable[[str], str | None]] = {
    "name": secret_name_problem,
    "key": secret_key_problem,
    "envVar": env_name_problem,
    "mountPath": mount_path_problem,
}


def transform_problem(transform: Mapping[str, Any]) -> Problem | None:
    """Kubernetes' rules on the env names and secrets the worker pod is built from.

    Args:
        transform: a normalised ``transform`` (camelCase keys).
    """
    for name in transform.get("env", {}):
        if problem := env_name_problem(name):
            return "transform.env", problem
    mounts: list[tuple[int, str]] = []
    for i, secret in enumerate(transform.get("secrets", [])):
        for key, check in _SECRET_CHECKS.items():
            if key in secret and (problem := check(secret[key])):
                return f"transform.secrets[{i}].{key}", problem
        if "mountPath" in secret:
            mounts.append((i, secret["mountPath"]))
    if clash := nested_mounts([mount for _, mount in mounts]):
        (i, outer), (j, inner) = mounts[clash[0]], mounts[clash[1]]  # inner is at or below outer
        if outer == inner:
            i, j = sorted((i, j))
        detail = "is also" if outer == inner else f"is inside {outer!r},"
        where = f"transform.secrets[{j}].mountPath"
        return where, f"{inner!r} {detail} the mountPath of transform.secrets[{i}]"
    return None


def bounds_problem(spec: Mapping[str, Any]) -> Problem | None:
    """Bounds that keep a job from retrying, fanning out or waiting without end.

    Args:
        spec: a normalised spec, before defaults (durations as ``"600s"``).
    """
    tries = spec.get("datumTries", DEFAULT_DATUM_TRIES)
    if not 1 <= tries <= MAX_DATUM_TRIES:
        rule = f"must be between 1 and {MAX_DATUM_TRIES} (default {DEFAULT_DATUM_TRIES})"
        return "datumTries", f"{rule}, got {tries}"
    workers = spec.get("parallelismSpec", {}).get("constant", 1)
    if workers > MAX_PARALLELISM:
        return "parallelismSpec.constant", f"must be at most {MAX_PARALLELISM}, got {workers}"
    for key in ("datumTimeout", "jobTimeout"):  # negative durations never parse
        if key in spec and float(spec[key].removesuffix("s")) > MAX_TIMEOUT_S:
            days = MAX_TIMEOUT_S // 86400
            return key, f"must be at most {days} days ({MAX_TIMEOUT_S}s), got {spec[key]!r}"
    return None


def mount_target_problem(secrets: Sequence[Mapping[str, Any]], root: Path) -> Problem | None:
    """A secret ``mountPath`` that exists under ``root``, or has an ancestor that does,
    as something other than a directory (symlinks followed), or None."""
    for i, secret in enumerate(secrets):
        mount, target = secret.get("mountPath", ""), root
        for part in PurePosixPath(mount).parts[1:]:
            target /= part
            if not os.path.lexists(target):
                break
            if not target.is_dir():
                shown = "/" + target.relative_to(root).as_posix()
                where = f"transform.secrets[{i}].mountPath"
                return where, f"{mount!r}: {shown} exists and is not a directory"
    return None
