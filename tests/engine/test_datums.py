"""Datum formation, IDs and hashes (Pachyderm 2.x semantics)."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest

from pachlocal.datums import (
    Datum,
    DatumError,
    DatumInput,
    FileInfo,
    InputCommit,
    datum_hash,
    datum_id,
    form_datums,
    sort_input,
)
from pachlocal.globs import GlobError

Shape = list[tuple[tuple[str, str], ...]]


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _commit(repo: str, *paths: str, branch: str = "master") -> InputCommit:
    files = [FileInfo(p, _h(p.encode()), len(p)) for p in sorted(paths)]
    return InputCommit(repo, branch, f"{repo}-head", files)


def _pfs(repo: str, glob: str, **extra: Any) -> dict[str, Any]:
    return {"pfs": {"name": repo, "repo": repo, "branch": "master", "glob": glob, **extra}}


def _shape(datums: list[Datum]) -> Shape:
    """(input name, path) per input, per datum; datums sorted for readability."""
    return sorted(tuple((i.name, i.path) for i in d.inputs) for d in datums)


def _form(spec: dict[str, Any], *commits: InputCommit) -> list[Datum]:
    return form_datums(spec, {c.repo: c for c in commits})


A = _commit("a", "/1.txt", "/2.txt", "/3.txt")
B = _commit("b", "/1-x.csv", "/2-x.csv", "/2-y.csv", "/4-x.csv")
JOIN_A = _pfs("a", "/(*).txt", joinOn="$1")
JOIN_B = _pfs("b", "/(*)-*.csv", joinOn="$1")


def test_pfs_datums_one_per_match_ordered_by_id() -> None:
    datums = _form(_pfs("a", "/*"), A)
    assert _shape(datums) == [(("a", "/1.txt"),), (("a", "/2.txt"),), (("a", "/3.txt"),)]
    assert [d.id for d in datums] == sorted(d.id for d in datums)


def test_pfs_datum_input_fields() -> None:
    c = _commit("docs", "/d/x", "/d/y", "/e")
    (d,) = [d for d in _form(_pfs("docs", "/*", groupBy="g"), c) if d.inputs[0].is_dir]
    assert d.inputs == (
        DatumInput(
            name="docs",
            repo="docs",
            branch="master",
            commit="docs-head",
            glob="/*",
            path="/d",
            files=tuple(c.files[:2]),
            is_dir=True,
            group_by="g",
        ),
    )


def test_root_glob_is_one_datum() -> None:
    assert _shape(_form(_pfs("a", "/"), A)) == [(("a", "/"),)]
    assert _form(_pfs("a", "/"), _commit("a")) == []


def test_cross_is_the_cartesian_product_in_child_order() -> None:
    c = _commit("c", "/x", "/y")
    datums = _form({"cross": [_pfs("c", "/*"), _pfs("a", "/[12]*")]}, A, c)
    assert _shape(datums) == [
        (("c", "/x"), ("a", "/1.txt")),
        (("c", "/x"), ("a", "/2.txt")),
        (("c", "/y"), ("a", "/1.txt")),
        (("c", "/y"), ("a", "/2.txt")),
    ]
    assert _form({"cross": [_pfs("c", "/*"), _pfs("a", "/none")]}, A, c) == []


def test_union_concatenates_and_drops_duplicate_ids() -> None:
    c = _commit("c", "/x")
    union = {"union": [_pfs("a", "/1*"), _pfs("c", "/*"), _pfs("a", "/[12]*")]}
    assert _shape(_form(union, A, c)) == [
        (("a", "/1.txt"),),
        (("a", "/2.txt"),),
        (("c", "/x"),),
    ]


def test_union_alternatives_sharing_a_name_find_their_commits() -> None:
    other = _commit("other", "/9.txt")
    union = {"union": [_pfs("a", "/1*"), {"pfs": {**_pfs("other", "/*")["pfs"], "name": "a"}}]}
    datums = form_datums(union, {"a": A, "spare": other})
    assert sorted((d.inputs[0].repo, d.inputs[0].path) for d in datums) == [
        ("a", "/1.txt"),
        ("other", "/9.txt"),
    ]


def test_inner_join_crosses_files_sharing_a_key() -> None:
    datums = _form({"join": [JOIN_A, JOIN_B]}, A, B)
    assert _shape(datums) == [
        (("a", "/1.txt"), ("b", "/1-x.csv")),
        (("a", "/2.txt"), ("b", "/2-x.csv")),
        (("a", "/2.txt"), ("b", "/2-y.csv")),
    ]
    assert sorted({i.join_on for d in datums for i in d.inputs}) == ["1", "2"]


def test_outer_join_keeps_unmatched_inputs_of_outer_children_only() -> None:
    left = _form({"join": [{"pfs": {**JOIN_A["pfs"], "outerJoin": True}}, JOIN_B]}, A, B)
    assert _shape(left) == [
        (("a", "/1.txt"), ("b", "/1-x.csv")),
        (("a", "/2.txt"), ("b", "/2-x.csv")),
        (("a", "/2.txt"), ("b", "/2-y.csv")),
        (("a", "/3.txt"),),
    ]
    both = {"join": [{"pfs": {**p["pfs"], "outerJoin": True}} for p in (JOIN_A, JOIN_B)]}
    assert _shape(_form(both, A, B)) == [*_shape(left), (("b", "/4-x.csv"),)]


def test_group_collects_every_input_with_the_key() -> None:
    group = {"group": [_pfs("a", "/(*).txt", groupBy="$1"), _pfs("b", "/(*)-*.csv", groupBy="$1")]}
    datums = _form(group, A, B)
    assert sorted(sorted(i.path for i in d.inputs) for d in datums) == [
        ["/1-x.csv", "/1.txt"],
        ["/2-x.csv", "/2-y.csv", "/2.txt"],
        ["/3.txt"],
        ["/4-x.csv"],
    ]
    # inside a group: child after child, each child's inputs in its datum order
    (two,) = [d for d in datums if len(d.inputs) == 3]
    assert [i.name for i in two.inputs] == ["a", "b", "b"]
    assert list(two.inputs[1:]) == sorted(two.inputs[1:], key=lambda i: datum_id([i]))


def test_nested_cross_of_a_join() -> None:
    c = _commit("c", "/x", "/y")
    datums = _form({"cross": [{"join": [JOIN_A, JOIN_B]}, _pfs("c", "/*")]}, A, B, c)
    assert _shape(datums) == sorted(
        (*j, ("c", p))
        for j in _shape(_form({"join": [JOIN_A, JOIN_B]}, A, B))
        for p in ("/x", "/y")
    )


def test_cron_input_reads_its_tick_repo_with_glob_star() -> None:
    ticks = InputCommit("p_tick", "master", "t1", [FileInfo("/2024-05-01T02:00:00Z", _h(b""), 0)])
    spec = {"cron": {"name": "tick", "repo": "p_tick", "spec": "@hourly", "overwrite": False}}
    (d,) = form_datums(spec, {"tick": ticks})
    assert (d.inputs[0].name, d.inputs[0].repo, d.inputs[0].branch, d.inputs[0].glob) == (
        "tick",
        "p_tick",
        "master",
        "/*",
    )
    assert d.inputs[0].path == "/2024-05-01T02:00:00Z"


def _reference_id(*inputs: tuple[str, str, str, str]) -> str:
    h = hashlib.blake2b(digest_size=32)
    for fields in inputs:
        for value in fields:
            h.update(value.encode() + struct.pack(">q", len(value.encode())))
    return h.hexdigest()


def _one(
    name: str = "a", repo: str = "a", branch: str = "master", path: str = "/1.txt"
) -> DatumInput:
    f = FileInfo(path, _h(b"one"), 3)
    return DatumInput(name, repo, branch, "c1", "/*", path, (f,))


def test_datum_id_layout() -> None:
    assert _one().id_bytes.endswith(b"/1.txt" + struct.pack(">q", 6))
    assert datum_id([_one()]) == _reference_id(("a", "a", "master", "/1.txt"))
    folder = DatumInput("b", "b", "dev", "c1", "/*", "/d", _one().files, is_dir=True)
    two = [_one(), folder]
    expected = _reference_id(("a", "a", "master", "/1.txt"), ("b", "b", "dev", "/d/"))
    assert datum_id(two) == Datum(tuple(two)).id == expected


def test_datum_id_depends_on_name_repo_branch_and_path_only() -> None:
    base = datum_id([_one()])
    same_paths_new_commit = _form(_pfs("a", "/*"), _commit("a", "/1.txt"))[0]
    assert same_paths_new_commit.id == base
    others = [_one(name="x"), _one(repo="x"), _one(branch="x"), _one(path="/2.txt")]
    assert len({base, *(datum_id([i]) for i in others)}) == 5


def test_datum_hash_changes_with_content_and_salt_only() -> None:
    d = Datum((_one(),))
    h = datum_hash(d, "salt")
    f = d.inputs[0].files[0]
    expected = hashlib.blake2b(d.id.encode() + bytes.fromhex(f.hash) + b"salt", digest_size=32)
    assert h == expected.hexdigest()

    def with_file(new: FileInfo, commit: str = "c1") -> Datum:
        i = d.inputs[0]
        return Datum((DatumInput(i.name, i.repo, i.branch, commit, i.glob, i.path, (new,)),))

    assert datum_hash(with_file(FileInfo(f.path, f.hash, 99), "c2"), "salt") == h
    assert datum_hash(with_file(FileInfo(f.path, _h(b"new"), 3)), "salt") != h
    assert datum_hash(d, "other salt") != h


def test_directory_hash_is_pfs_merkle_hash() -> None:
    c = _commit("a", "/d/x", "/d/e/f")
    (d,) = _form(_pfs("a", "/d"), c)
    by_path = {f.path: bytes.fromhex(f.hash) for f in c.files}
    sub = hashlib.blake2b(by_path["/d/e/f"], digest_size=32).digest()
    top = hashlib.blake2b(sub + by_path["/d/x"], digest_size=32).digest()
    assert d.inputs[0].content_hash == top
    assert datum_hash(d, "") == hashlib.blake2b(d.id.encode() + top, digest_size=32).hexdigest()


def test_sort_input_as_pachd_does_before_defaulting_names() -> None:
    unnamed_z, unnamed_y = (
        {"pfs": {"repo": "z", "glob": "/*"}},
        {"pfs": {"repo": "y", "glob": "/*"}},
    )
    named_b, cron = {"pfs": {"name": "b", "repo": "b", "glob": "/*"}}, {"cron": {"name": "a"}}
    assert sort_input({"cross": [unnamed_z, named_b, cron, unnamed_y]}) == {
        "cross": [unnamed_z, cron, unnamed_y, named_b]
    }
    named_a, named_c = ({"pfs": {"name": n, "repo": n, "glob": "/*"}} for n in "ac")
    nested = {"join": [named_b, {"union": [named_c, named_a]}]}
    assert sort_input(nested) == {"join": [{"union": [named_a, named_c]}, named_b]}


def test_bad_glob_names_input_and_pattern() -> None:
    with pytest.raises(GlobError, match=r"input 'a': invalid glob '/\[x'"):
        _form(_pfs("a", "/[x"), A)


@pytest.mark.parametrize(
    "spec",
    [{"spout": {}}, {"pfs": _pfs("a", "/*")["pfs"], "cross": []}, {}],
)
def test_unknown_or_ambiguous_input_kind(spec: dict[str, Any]) -> None:
    with pytest.raises(DatumError, match="exactly one of"):
        _form(spec, A)


def test_missing_commit_or_glob() -> None:
    with pytest.raises(DatumError, match="no commit given for b@master"):
        _form(_pfs("b", "/*"), A)
    with pytest.raises(DatumError, match="needs a repo and a glob"):
        _form({"pfs": {"repo": "a"}}, A)
