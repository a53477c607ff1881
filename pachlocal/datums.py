"""Datum formation, datum IDs and datum hashes, as Pachyderm 2.x computes them.

Re-implemented from pachyderm v2.11 ``src/server/worker/datum`` (create.go,
worker.go, iterator.go) and ``src/server/worker/common/common.go``:

* PFS: one datum per glob match (see :mod:`pachlocal.globs`). Cron: a PFS input
  over the tick repo, branch ``master``, glob ``/*``.
* Every combinator's result is a datum set that Pachyderm stores under
  ``meta/<datum ID>/meta``: it is therefore **ordered by datum ID** and
  **de-duplicated by ID** (the first one written wins; e.g. overlapping
  alternatives of a union with the same input name). :func:`form_datums`
  returns that order, which is also ``list datum``'s.
* cross: the cartesian product, first child outermost; a datum's inputs are its
  children's inputs in child order.
* union: all children's datums.
* join / group: every *input* of every child datum is keyed on its own
  ``joinOn`` / ``groupBy`` (``glob.Replace(path, template)``). Per key, the
  inputs of each child are listed in the child's datum order. join: the cross
  product of those lists; if some child lacks the key, only the inputs whose
  ``outerJoin`` is set are kept (nothing, if none is). group: one datum holding
  all those inputs, child after child.
* Children are taken in the order given. Pachyderm sorts them once, when the
  pipeline is created, with :func:`sort_input` on the spec *as written* (an
  unnamed PFS input and every cron input sort as ``""``); apply it before
  defaulting names.

Datum ID: BLAKE2b-256 over, per input, the input name, repo name, branch and
PFS path, each followed by its length as a big-endian int64 (no project). The
PFS path of a directory match carries a trailing ``/`` (``/a/``; the root is
``/``); ``DatumInput.path`` does not (``/a``, like the ``<name>`` variable).
Datum hash: BLAKE2b-256 over the hex ID, each input's content hash and the
salt. Pachyderm's file hash is computed from its chunk store; ours is the
caller's content hash (hex, as raw bytes). A directory's hash is PFS's: BLAKE2b
over its children's hashes (files and subdirectories, in path order). Same
inputs give the same ID; a content or salt change changes the hash.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pachlocal.globs import Glob, GlobError, compile_glob, match_ranges

__all__ = [
    "Datum",
    "DatumError",
    "DatumInput",
    "FileInfo",
    "InputCommit",
    "datum_hash",
    "datum_id",
    "form_datums",
    "sort_input",
]

_COMBINATORS = ("cross", "join", "group", "union")
_KINDS = frozenset(("pfs", "cron", *_COMBINATORS))


class DatumError(ValueError):
    """An input spec that cannot be turned into datums."""


@dataclass(frozen=True)
class FileInfo:
    """One file of a commit: absolute path, content hash (hex) and size."""

    path: str
    hash: str
    size: int


@dataclass(frozen=True)
class InputCommit:
    """The commit an input reads; ``files`` sorted by path."""

    repo: str
    branch: str
    commit: str
    files: Sequence[FileInfo]


@dataclass(frozen=True)
class DatumInput:
    """One input of a datum: a glob match in one commit.

    ``path`` is the matched path without a trailing ``/`` (the root is ``/``);
    ``is_dir`` tells a directory match, whose PFS path (in the datum ID) ends
    with ``/``. ``files`` are the files it holds. ``join_on`` / ``group_by`` are this input's keys (for
    ``PACH_DATUM_<name>_JOIN_ON`` / ``_GROUP_BY``).
    """

    name: str
    repo: str
    branch: str
    commit: str
    glob: str
    path: str
    files: tuple[FileInfo, ...]
    is_dir: bool = False
    join_on: str = ""
    group_by: str = ""
    outer_join: bool = False
    lazy: bool = False
    empty_files: bool = False

    id_bytes: bytes = field(init=False, repr=False, compare=False)
    """This input's part of the datum ID (computed once: datums are formed by the thousand)."""

    def __post_init__(self) -> None:
        out = bytearray()
        for value in (self.name, self.repo, self.branch, self.pfs_path):
            raw = value.encode()
            out += raw
            out += len(raw).to_bytes(8, "big")
        object.__setattr__(self, "id_bytes", bytes(out))

    @property
    def pfs_path(self) -> str:
        """The path as PFS lists it: ``/a/`` for a directory, ``/`` for the root."""
        return self.path + "/" if self.is_dir and self.path != "/" else self.path

    @property
    def content_hash(self) -> bytes:
        """The file's hash, or PFS's directory hash over the subtree (cached)."""
        cached: bytes | None = self.__dict__.get("_content_hash")
        if cached is None:
            if not self.is_dir:
                cached = bytes.fromhex(self.files[0].hash) if self.files else b""
            else:
                cached = _tree_hash(self.files, 0, len(self.pfs_path))[0]
            # one input is shared by many cross/join datums: hash its subtree once
            self.__dict__["_content_hash"] = cached
        return cached


def _tree_hash(files: Sequence[FileInfo], start: int, root_len: int) -> tuple[bytes, int]:
    """Hash the directory whose prefix is ``files[start].path[:root_len]``.

    Returns the digest and the index after its last file; a subdirectory is
    hashed recursively and contributes one child hash, like PFS's computeFileInfo.
    """
    prefix = files[start].path[:root_len]
    h = hashlib.blake2b(digest_size=32)
    i = start
    while i < len(files) and files[i].path.startswith(prefix):
        path = files[i].path
        slash = path.find("/", root_len)
        if slash < 0:
            h.update(bytes.fromhex(files[i].hash))
            i += 1
        else:
            child, i = _tree_hash(files, i, slash + 1)
            h.update(child)
    return h.digest(), i


@dataclass(frozen=True)
class Datum:
    """A datum: one input per input name (a group datum may hold many)."""

    inputs: tuple[DatumInput, ...]
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", datum_id(self.inputs))


def datum_id(inputs: Iterable[DatumInput]) -> str:
    """Pachyderm's ``common.DatumID``."""
    return hashlib.blake2b(b"".join(i.id_bytes for i in inputs), digest_size=32).hexdigest()


def datum_hash(datum: Datum, salt: str) -> str:
    """Pachyderm's ``common.HashDatum``: decides whether a datum can be skipped."""
    h = hashlib.blake2b(datum.id.encode(), digest_size=32)
    for i in datum.inputs:
        h.update(i.content_hash)
    h.update(salt.encode())
    return h.hexdigest()


def sort_input(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Pachyderm's ``pps.SortInput`` on a spec as written: children of every
    combinator stably sorted by input name (a combinator's name is its first
    child's; an unnamed PFS input and a cron input count as ``""``)."""
    out = dict(spec)
    for kind in _COMBINATORS:
        if spec.get(kind) is not None:
            out[kind] = sorted((sort_input(c) for c in spec[kind]), key=_raw_input_name)
    return out


def _raw_input_name(spec: Mapping[str, Any]) -> str:
    if spec.get("pfs") is not None:
        return str(spec["pfs"].get("name") or "")
    for kind in _COMBINATORS:
        if spec.get(kind):
            return _raw_input_name(spec[kind][0])
    return ""


def form_datums(input_spec: Mapping[str, Any], commits: Mapping[str, InputCommit]) -> list[Datum]:
    """Form a job's datums, ordered by datum ID.

    Args:
        input_spec: a normalised ``input`` (camelCase, names defaulted).
        commits: the commit each input reads, keyed by input name. For union
            alternatives sharing a name, a commit of the input's repo and branch
            found under another key is used.
    Returns:
        The datums, unique by ID, sorted by ID.
    """
    return _form(input_spec, commits)


def _kind(spec: Mapping[str, Any]) -> str:
    present = [k for k, v in spec.items() if v is not None]
    if len(present) != 1 or present[0] not in _KINDS:
        raise DatumError(f"an input needs exactly one of {sorted(_KINDS)}, got {present}")
    return present[0]


def _form(spec: Mapping[str, Any], commits: Mapping[str, InputCommit]) -> list[Datum]:
    kind = _kind(spec)
    if kind == "pfs":
        return _pfs_datums(spec["pfs"], commits)
    if kind == "cron":
        cron = spec["cron"]
        name = cron.get("name") or ""
        pfs = {"name": name, "repo": cron.get("repo") or "", "branch": "master", "glob": "/*"}
        return _pfs_datums(pfs, commits)
    children = [_form(child, commits) for child in spec[kind]]
    if not children:
        return []
    if kind == "union":
        return _by_id(itertools.chain.from_iterable(children))
    if kind == "cross":
        return _by_id(
            Datum(tuple(itertools.chain.from_iterable(d.inputs for d in combo)))
            for combo in itertools.product(*children)
        )
    return _by_key(children, group=kind == "group")


def _by_id(datums: Iterable[Datum]) -> list[Datum]:
    unique: dict[str, Datum] = {}
    for d in datums:
        unique.setdefault(d.id, d)
    return [unique[k] for k in sorted(unique)]


def _by_key(children: list[list[Datum]], *, group: bool) -> list[Datum]:
    # key -> child index -> that child's inputs with the key, in its datum order
    keyed: dict[str, dict[int, list[DatumInput]]] = {}
    for index, datums in enumerate(children):
        for d in datums:
            for i in d.inputs:
                keyed.setdefault(i.group_by if group else i.join_on, {}).setdefault(
                    index, []
                ).append(i)
    out: list[Datum] = []
    for per_child in keyed.values():
        lists = [per_child[c] for c in sorted(per_child)]
        if group:
            out.append(Datum(tuple(itertools.chain.from_iterable(lists))))
            continue
        complete = len(lists) == len(children)
        for combo in itertools.product(*lists):
            inputs = combo if complete else tuple(i for i in combo if i.outer_join)
            if inputs:
                out.append(Datum(inputs))
    return _by_id(out)


def _commit_for(
    name: str, repo: str, branch: str, commits: Mapping[str, InputCommit]
) -> InputCommit:
    commit = commits.get(name)
    if commit is not None and commit.repo == repo and commit.branch == branch:
        return commit
    for other in commits.values():
        if other.repo == repo and other.branch == branch:
            return other
    if commit is not None:
        return commit
    raise DatumError(f"input {name!r}: no commit given for {repo}@{branch}")


def _pfs_datums(pfs: Mapping[str, Any], commits: Mapping[str, InputCommit]) -> list[Datum]:
    repo = pfs.get("repo") or ""
    name = pfs.get("name") or repo
    pattern = pfs.get("glob")
    if not repo or not isinstance(pattern, str) or not pattern:
        raise DatumError(f"input {name!r}: a PFS input needs a repo and a glob")
    try:
        glob: Glob = compile_glob(pattern)
    except GlobError as exc:
        raise GlobError(f"input {name!r}: {exc}") from exc
    branch = pfs.get("branch") or "master"
    commit = _commit_for(name, repo, branch, commits)
    files = list(commit.files)
    if any(a.path >= b.path for a, b in itertools.pairwise(files)):
        files.sort(key=lambda f: f.path)
    join_on, group_by = pfs.get("joinOn") or "", pfs.get("groupBy") or ""
    outer_join, lazy, empty = (bool(pfs.get(k)) for k in ("outerJoin", "lazy", "emptyFiles"))
    datums = [
        Datum(
            (
                DatumInput(
                    name=name,
                    repo=commit.repo,
                    branch=branch,
                    commit=commit.commit,
                    glob=glob.pattern,
                    path=path.rstrip("/") or "/",
                    files=tuple(files[lo:hi]),
                    is_dir=path.endswith("/"),
                    join_on=glob.replace(path, join_on),
                    group_by=glob.replace(path, group_by),
                    outer_join=outer_join,
                    lazy=lazy,
                    empty_files=empty,
                ),
            )
        )
        for path, lo, hi in match_ranges(glob, [f.path for f in files])
    ]
    return sorted(datums, key=lambda d: d.id)
