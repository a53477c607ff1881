"""The input tree of a spec: pachd's rules on it (``validateInput``), its defaults
(``setPipelineDefaults``) and its order (``SortInput``), and :func:`input_leaves`,
the one walk of a tree's pfs and cron leaves that every reader of specs uses.
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pachlocal.globs import GlobError, UnsupportedGlob, compile_glob

from .errors import SpecError, require

RESERVED_INPUT_NAMES = ("out", ".env")
INPUT_KINDS = ("pfs", "cron", "cross", "union", "join", "group")
GROUPS = ("cross", "join", "group", "union")  # the combinators, in pachd's visiting order

_BRANCH = re.compile(r"[a-zA-Z0-9_-]+")
_HUMAN_SIZE = re.compile(r"\d+(\.\d+)* ?[kKmMgGtTpP]?[iI]?[bB]?")  # go-units, used by pfs triggers


def input_leaves(
    node: Mapping[str, Any] | None, path: str = "input", *, sort: bool = False
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, kind, leaf) for each pfs or cron input of an input tree: the one walk of a
    tree's leaves for every reader of specs (``input.cross[1].pfs``, ``pfs``, the leaf's
    own fields).

    Args:
        node: an ``input`` object, raw or normalised; empty or None for no input.
        path: the key path of ``node``.
        sort: visit each combinator's children in pachd's order (SortInput: by their
            names as written, a stable sort) instead of spec order; paths keep the
            indices of the spec.
    """
    if not node:
        return
    for kind in ("pfs", "cron"):
        if kind in node:
            yield f"{path}.{kind}", kind, node[kind]
            return
    for key in GROUPS:
        children = node.get(key) or []
        order: Sequence[int] = range(len(children))
        if sort:
            order = sorted(order, key=lambda i: _sort_key(children[i]))
        for i in order:
            yield from input_leaves(children[i], f"{path}.{key}[{i}]", sort=sort)


def iter_input_names(inp: Mapping[str, Any] | None) -> list[str]:
    """Names of the pfs and cron inputs of an input tree, in file order.

    Args:
        inp: an ``input`` object (raw or normalised); ``None`` for no input.

    Returns:
        pfs ``name`` (falling back to ``repo``) and cron ``name`` of every leaf.
    """
    return [
        str(leaf.get("name") or leaf.get("repo", ""))
        if kind == "pfs"
        else str(leaf.get("name", ""))
        for _, kind, leaf in input_leaves(inp)
    ]


def normalise_input(inp: dict[str, Any], pipeline: str) -> dict[str, Any]:
    """Check an input tree, give it pachd's defaults and put it in pachd's order.

    Args:
        inp: the typed ``input`` of a spec (see :func:`.fields.message`); changed in place.
        pipeline: the pipeline's name, which default cron repos and trigger branches carry.

    Returns:
        ``inp``, its combinators' children sorted as pachd sorts them.

    Raises:
        SpecError: naming the key path of the first problem found.
    """
    check_input(inp, "input")
    as_written = copy.deepcopy(inp)
    _set_input_defaults(inp, pipeline)
    _check_names(inp, "input", {})
    return _sort_children(inp, as_written)


def check_input(inp: dict[str, Any], path: str) -> None:
    """Structural rules of one input node and its children (pachd's validateInput)."""
    kinds = [k for k in INPUT_KINDS if k in inp]
    got = ", ".join(kinds) or "none"
    require(
        len(kinds) == 1, path, f"exactly one of {', '.join(INPUT_KINDS)} must be set, got {got}"
    )
    kind = kinds[0]
    if kind == "pfs":
        _check_pfs(inp["pfs"], f"{path}.pfs")
    elif kind == "cron":  # the schedule's syntax is checked where schedules are parsed
        for key in ("name", "spec"):
            require(bool(inp["cron"].get(key)), f"{path}.cron.{key}", "required")
    else:
        for i, child in enumerate(inp[kind]):
            check_input(child, f"{path}.{kind}[{i}]")
        s3 = any(leaf.get("s3") for _, leaf_kind, leaf in input_leaves(inp) if leaf_kind == "pfs")
        require(kind == "cross" or not s3, f"{path}.{kind}", f"S3 inputs not supported in {kind}")


def _check_pfs(pfs: dict[str, Any], path: str) -> None:
    s3, glob = pfs.get("s3", False), pfs.get("glob", "")
    require(bool(pfs.get("repo")), f"{path}.repo", "required")
    out_ok = pfs["repo"] != "out" or "name" in pfs
    require(out_ok, f"{path}.name", "required for a repo named 'out' (/pfs/out is the output)")
    require(bool(s3 or glob), f"{path}.glob", "required")
    require(not s3 or glob == "/", f"{path}.glob", "must be '/' when s3 is true")
    try:
        compile_glob(glob or "/")
    except UnsupportedGlob as exc:  # pachd would run it: refuse it rather than fail every job
        raise SpecError(f"{path}.glob", str(exc)) from None
    except GlobError:
        pass  # pachd accepts a bad glob; its jobs fail naming it, and an update recovers
    for key in ("lazy", "emptyFiles"):
        require(not (s3 and pfs.get(key)), f"{path}.{key}", "cannot be combined with s3")
    require("commit" not in pfs, f"{path}.commit", "must be empty: use a branch pointing at it")
    if (trigger := pfs.get("trigger")) is not None:  # pfs's validateTrigger, minus cron specs
        tpath, branch = f"{path}.trigger", trigger.get("branch", "master")
        given = "branch" in trigger or "branch" not in pfs
        require(given, f"{tpath}.branch", "required when the input's branch is set")
        require(bool(_BRANCH.fullmatch(branch)), f"{tpath}.branch", f"invalid: {branch!r}")
        require(trigger.get("commits", 0) >= 0, f"{tpath}.commits", "must not be negative")
        size = trigger.get("size", "0")
        require(bool(_HUMAN_SIZE.fullmatch(size)), f"{tpath}.size", f"invalid: {size!r}")


def _sort_key(inp: Mapping[str, Any]) -> str:
    """pps.InputName before defaults: the pfs name as written, cron counting as '';
    a combinator goes by the least name among its leaves."""
    names = (
        str(leaf.get("name", "")) if kind == "pfs" else "" for _, kind, leaf in input_leaves(inp)
    )
    return min(names, default="")


def _sort_children(inp: dict[str, Any], as_written: Mapping[str, Any]) -> dict[str, Any]:
    """pachd's SortInput: children ordered by their names *as written* (``as_written`` is
    the input before defaults), so stored specs, and datums, see them in pachd's order."""
    for kind in GROUPS:
        if inp.get(kind):
            raw = as_written[kind]
            order = sorted(range(len(raw)), key=lambda i: _sort_key(raw[i]))  # stable
            inp[kind] = [_sort_children(inp[kind][i], raw[i]) for i in order]
    return inp


def _set_input_defaults(inp: dict[str, Any], pipeline: str) -> None:
    # pachd numbers trigger branches per repo in its visiting order after sorting
    # the inputs by their names as written, so fix that order before any defaults.
    triggers: dict[str, int] = {}
    for _, kind, leaf in list(input_leaves(inp, sort=True)):
        if kind == "pfs":
            pfs = leaf
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
        else:
            leaf.setdefault("repo", f"{pipeline}_{leaf['name']}")
            leaf.setdefault("overwrite", False)


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
