"""Pachyderm's deferred processing: a staging branch moved onto ``master`` by hand
(doc/docs/2.3.x/concepts/advanced-concepts/deferred-processing.md in
pachyderm/pachyderm), an ``outputBranch`` whose ``master`` is moved with
``create branch edges_dp@master --head dev``
(examples/deferred-processing/deferred_processing_plus_transactions), and a trigger
embedded in a spec (pachyderm/examples deferred_processing/triggers)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.conftest import Pachlocal

from .support import branch_heads, create_pipeline, job_counts, put_file, put_tree


def copy_spec(name: str, repo: str, **pfs: Any) -> dict[str, Any]:
    """A pipeline on ``repo`` (glob ``/*``) copying each datum's file to its output."""
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": repo, "glob": "/*", **pfs}},
        "transform": {"cmd": ["sh", "-c", f"cp /pfs/{repo}/* /pfs/out/"]},
    }


def test_a_staging_branch_is_processed_when_master_moves_onto_it(pl: Pachlocal) -> None:
    """Commits to ``staging`` start no job; ``create branch data@master --head staging``
    starts one job over everything staged; ``--head staging^1`` rolls the output back
    to the parent commit's data; any ancestor can be processed the same way."""
    pl("create", "repo", "data")
    create_pipeline(pl, copy_spec("test", "data"))
    for name in ("a", "b", "c"):
        put_file(pl, f"data@staging:/{name}", name.encode())
    # "No jobs have started to process the new file"
    assert job_counts(pl, "test") == [("success", 0, 0, 0)]
    assert pl.files("test@master") == {}

    pl("create", "branch", "data@master", "--head", "staging")
    # "You should see one job that Pachyderm created for all the changes"
    assert job_counts(pl, "test") == [("success", 0, 0, 0), ("success", 3, 0, 3)]
    assert pl.files("test@master") == {"/a": b"a", "/b": b"b", "/c": b"c"}

    # "Change the HEAD of your Branch": the output is the result of processing staging^1
    # (written staging^ and staging~2 here: pachd reads ^N, ^^ and ~N alike,
    # src/internal/ancestry/ancestry.go)
    pl("create", "branch", "data@master", "--head", "staging^")
    assert pl.files("test@master") == {"/a": b"a", "/b": b"b"}
    # "Process Specific Commits": one job per move
    pl("create", "branch", "data@master", "--head", "staging~2")
    assert pl.files("test@master") == {"/a": b"a"}
    pl("create", "branch", "data@master", "--head", "staging")
    assert pl.files("test@master") == {"/a": b"a", "/b": b"b", "/c": b"c"}
    # a move back skips the datums it keeps and removes the others' output
    assert job_counts(pl, "test") == [
        ("success", 0, 0, 0),
        ("success", 3, 0, 3),
        ("success", 0, 2, 2),
        ("success", 0, 1, 1),
        ("success", 2, 1, 3),
    ]


def edges_dp_spec() -> dict[str, Any]:
    """deferred_processing_plus_transactions/edges_dp.pipeline.json: the opencv edges
    pipeline writing to branch ``dev``, its input renamed ``images``."""
    return {
        "pipeline": {"name": "edges_dp"},
        "input": {"pfs": {"glob": "/*", "repo": "images_dp_1", "name": "images"}},
        "outputBranch": "dev",
        "transform": {
            "cmd": ["python3", "edges.py", "/pfs/images", "/pfs/out"],
            "image": "pachyderm/opencv",
        },
    }


def montage_dp_spec() -> dict[str, Any]:
    """deferred_processing_plus_transactions/montage_dp.pipeline.json: reads
    ``edges_dp@master``, not the ``dev`` branch edges_dp writes."""
    return {
        "pipeline": {"name": "montage_dp"},
        "input": {
            "cross": [
                {"pfs": {"glob": "/", "repo": "images_dp_2"}},
                {"pfs": {"glob": "/", "repo": "edges_dp"}},
            ]
        },
        "transform": {
            "cmd": ["sh"],
            "image": "v4tech/imagemagick",
            "stdin": [
                "python3 montage.py -shadow -background SkyBlue -geometry 300x300+2+2 "
                "$(find /pfs -type f | sort) /pfs/out/montage.png"
            ],
        },
    }


@pytest.mark.usefixtures("isolated_datums")
def test_an_output_branch_feeds_downstream_only_when_moved(pl: Pachlocal) -> None:
    """edges_dp's jobs commit to ``dev`` and start no montage_dp job; each
    ``create branch edges_dp@master --head dev`` does. With images_dp_2 still empty the
    cross has no datum; a commit to images_dp_2 then builds the montage."""
    pl("create", "repo", "images_dp_1")
    pl("create", "repo", "images_dp_2")
    create_pipeline(pl, edges_dp_spec())
    create_pipeline(pl, montage_dp_spec())
    put_file(pl, "images_dp_1@master:/liberty.jpg", b"liberty")  # images.txt
    put_tree(pl, "images_dp_1@master", {"/kitten.jpg": b"kitten", "/robot.jpg": b"robot"})
    dev = {f"/{n}.png": b"edges of " + n.encode() for n in ("kitten", "liberty", "robot")}
    assert pl.files("edges_dp@dev") == dev

    put_file(pl, "images_dp_1@master:/1VqcWw9.jpg", b"1VqcWw9")  # README step 5
    assert job_counts(pl, "montage_dp") == [("success", 0, 0, 0)]
    pl("create", "branch", "edges_dp@master", "--head", "dev")  # step 7
    put_file(pl, "images_dp_1@master:/2GI70mb.jpg", b"2GI70mb")  # step 9
    pl("create", "branch", "edges_dp@master", "--head", "dev")  # step 10
    dev.update({f"/{n}.png": b"edges of " + n.encode() for n in ("1VqcWw9", "2GI70mb")})
    assert pl.files("edges_dp@master") == dev
    # README step 10's `pachctl list job -x`, PROGRESS column: edges_dp 0+0/0, 1+0/1,
    # 2+1/3, 1+3/4, 1+4/5; montage_dp 0+0/0 three times (images_dp_2 is empty)
    assert job_counts(pl, "edges_dp") == [
        ("success", 0, 0, 0),
        ("success", 1, 0, 1),
        ("success", 2, 1, 3),
        ("success", 1, 3, 4),
        ("success", 1, 4, 5),
    ]
    assert job_counts(pl, "montage_dp") == [("success", 0, 0, 0)] * 3
    assert pl.files("montage_dp@master") == {}

    put_file(pl, "images_dp_2@master:/9iIlokw.jpg", b"9iIlokw")  # section 3, step 5
    tiles = [(f"edges_dp{p}", d) for p, d in sorted(dev.items())]
    tiles.append(("images_dp_2/9iIlokw.jpg", b"9iIlokw"))
    # section 3 step 8: `pachctl list files montage_dp@master` -> /montage.png
    assert pl.files("montage_dp@master") == {
        "/montage.png": b"".join(f"{n}: ".encode() + d + b"\n" for n, d in tiles)
    }
    assert job_counts(pl, "montage_dp")[-1] == ("success", 1, 0, 1)


def csv_of(size: int) -> bytes:
    """A CSV of exactly ``size`` bytes (the triggers example's housing-simplified-a?.csv
    files are 2518, 2547, 2505 bytes)."""
    header = b"RM,LSTAT,PTRATIO,MEDV\n"
    return header + b"0" * (size - len(header) - 1) + b"\n"


def regression_spec() -> dict[str, Any]:
    """deferred_processing/triggers/regression-trigger.json; the regression's stand-in
    records each datum's file size."""
    return {
        "pipeline": {"name": "regression"},
        "description": "A pipeline that trains produces a regression model for housing prices.",
        "input": {"pfs": {"glob": "/*", "repo": "housing_data", "trigger": {"size": "3KB"}}},
        "transform": {
            "cmd": ["sh", "-c", "wc -c < $housing_data > /pfs/out/$(basename $housing_data).model"],
            "image": "pachyderm/housing-prices:1.11.0",
        },
    }


def test_an_embedded_trigger_moves_its_branch_when_master_grew_3kb(pl: Pachlocal) -> None:
    """The triggers README, section 3 (with 2.x's overwriting `put file`, each CSV gets
    its own name so that the repo grows as the README's appends made it): the pipeline
    reads ``regression-trigger-1``, which moves to master's head once master grew by
    3KB since the branch's head, and can be moved by hand like any branch."""
    pl("create", "repo", "housing_data")
    create_pipeline(pl, regression_spec())
    # README step 2: `list branch` -> master, and regression-trigger-1 "master on Size(3KB)"
    assert set(branch_heads(pl, "housing_data")) == {"master", "regression-trigger-1"}
    put_file(pl, "housing_data@master:/aa.csv", csv_of(2518))
    # README step 2: regression-trigger-1 did not move ("has no head"), no job ran (2.x's
    # first job, at `create pipeline`, has nothing to process)
    heads = branch_heads(pl, "housing_data")
    assert heads["regression-trigger-1"] != heads["master"]
    assert job_counts(pl, "regression") == [("success", 0, 0, 0)]
    assert pl.files("regression@master") == {}

    put_file(pl, "housing_data@master:/ab.csv", csv_of(2547))
    # README step 3: both branches have the same head, and a job ran
    fired = branch_heads(pl, "housing_data")
    assert fired["regression-trigger-1"] == fired["master"]
    assert pl.files("regression@master") == {"/aa.csv.model": b"2518\n", "/ab.csv.model": b"2547\n"}

    put_file(pl, "housing_data@master:/ac.csv", csv_of(2505))
    # README step 4: 2.45KiB more does not fire it; the branch keeps its head
    assert branch_heads(pl, "housing_data")["regression-trigger-1"] == fired["master"]
    assert job_counts(pl, "regression") == [("success", 0, 0, 0), ("success", 2, 0, 2)]

    # deferred-processing.md: "You can manually update the heads of these branches"
    pl("create", "branch", "housing_data@regression-trigger-1", "--head", "master")
    assert pl.files("regression@master") == {
        "/aa.csv.model": b"2518\n",
        "/ab.csv.model": b"2547\n",
        "/ac.csv.model": b"2505\n",
    }
    assert job_counts(pl, "regression")[-1] == ("success", 1, 2, 3)
