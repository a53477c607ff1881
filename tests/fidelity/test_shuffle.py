"""Pachyderm's shuffle example (examples/shuffle): a union of ``fruits`` (``/*.jpeg``)
and ``pricing`` (``/*.json``) with ``emptyFiles``, whose shell only symlinks each input
into a folder per fruit. The spec is the example's, verbatim: no stand-in is needed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.conftest import Pachlocal

from .support import create_pipeline, job_counts, put_file

# examples/shuffle: two images (stand-in bytes) and two price files of 23 and 22 bytes
FRUITS = {
    "/apple.jpeg": b"\xff\xd8apple jpeg\xff\xd9",
    "/mango.jpeg": b"\xff\xd8mango jpeg\xff\xd9",
}
PRICING = {
    "/apple.json": b'{\n  "price_usd": 100\n}\n',
    "/mango.json": b'{\n  "price_usd": 10\n}\n',
}

SHUFFLE_STDIN = [
    "echo 'process fruits if any'",
    "fn=$(find  -L /pfs -not -path \"*/\\.*\"  -type f \\( -path '*/fruits/*' \\))",
    "for f in $fn; do fruit_name=$(basename $f .jpeg); mkdir -p /pfs/out/$fruit_name/; "
    "ln -s $f /pfs/out/$fruit_name/img.jpeg; done",
    "echo 'process pricing if any'",
    "fn=$(find  -L /pfs -not -path \"*/\\.*\"  -type f \\( -path '*/pricing/*' \\))",
    "for f in $fn; do fruit_name=$(basename $f .json); mkdir -p /pfs/out/$fruit_name/; "
    "ln -s $f /pfs/out/$fruit_name/cost.json; done",
]


def shuffle_spec(name: str, **pfs_options: bool) -> dict[str, Any]:
    """examples/shuffle/shuffle.pipeline.json, with ``emptyFiles`` (the example) or
    ``lazy`` (the spec's other way not to download inputs; the README's listing names
    the pipeline ``lazy_shuffle``) on both inputs."""
    return {
        "input": {
            "union": [
                {"pfs": {"glob": "/*.jpeg", "repo": "fruits", **pfs_options}},
                {"pfs": {"glob": "/*.json", "repo": "pricing", **pfs_options}},
            ]
        },
        "pipeline": {"name": name},
        "description": "A pipeline that places files with a matching name pattern and stored "
        "in separate repositories to a corresponding folder in the output repository.",
        "transform": {"image": "ubuntu:20.04", "cmd": ["/bin/bash"], "stdin": SHUFFLE_STDIN},
    }


def load_fruits(pl: Pachlocal) -> None:
    """The README's `put file` commands, one commit each."""
    for repo, files in (("fruits", FRUITS), ("pricing", PRICING)):
        pl("create", "repo", repo)
        for path, data in sorted(files.items(), reverse=True):  # mango first, as the README
            put_file(pl, f"{repo}@master:{path}", data)


@pytest.mark.usefixtures("isolated_datums")
@pytest.mark.parametrize(
    "name, option", [("shuffle", {"emptyFiles": True}), ("lazy_shuffle", {"lazy": True})]
)
def test_symlinked_inputs_are_stored_with_their_content(
    pl: Pachlocal, name: str, option: dict[str, bool]
) -> None:
    """4 datums (2 fruits + 2 prices); each output is a symlink to an input, and the
    output commit holds the input's full content even though, with ``emptyFiles``, the
    datum saw an empty file."""
    load_fruits(pl)
    create_pipeline(pl, shuffle_spec(name, **option))
    # examples/shuffle/README.md "List job": PROGRESS 4 + 0 / 4
    assert job_counts(pl, name) == [("success", 4, 0, 4)]
    # README "Output files": /apple/cost.json 23B, /apple/img.jpeg, /mango/cost.json 22B,
    # /mango/img.jpeg: the inputs' sizes
    assert pl.files(f"{name}@master") == {
        "/apple/cost.json": PRICING["/apple.json"],
        "/apple/img.jpeg": FRUITS["/apple.jpeg"],
        "/mango/cost.json": PRICING["/mango.json"],
        "/mango/img.jpeg": FRUITS["/mango.jpeg"],
    }
    assert [len(PRICING["/apple.json"]), len(PRICING["/mango.json"])] == [23, 22]


def test_empty_files_inputs_have_names_but_no_content(pl: Pachlocal) -> None:
    """README: with ``emptyFiles`` "we'll get files with the correct name but no
    content"; without it, the datum reads the bytes."""
    load_fruits(pl)
    sizes = "for f in /pfs/fruits/*; do wc -c < $f > /pfs/out/$(basename $f).size; done"
    for name, empty in (("sizes_empty", True), ("sizes_full", False)):
        spec = {
            "pipeline": {"name": name},
            "input": {"pfs": {"glob": "/*.jpeg", "repo": "fruits", "emptyFiles": empty}},
            "transform": {"cmd": ["sh", "-c", sizes]},
        }
        create_pipeline(pl, spec)
    assert pl.files("sizes_empty@master") == {
        "/apple.jpeg.size": b"0\n",
        "/mango.jpeg.size": b"0\n",
    }
    assert pl.files("sizes_full@master") == {
        f"{path}.size": f"{len(data)}\n".encode() for path, data in FRUITS.items()
    }
