"""Pachyderm's opencv example (examples/opencv, and the beginner tutorial built on it):
``images`` -> ``edges`` (glob ``/*``) -> ``montage`` (cross of ``images`` and ``edges``,
both glob ``/``). OpenCV and ImageMagick are replaced by ``programs/edges.py`` and
``programs/montage.py``; the specs are the example's."""

from __future__ import annotations

from typing import Any

from tests.engine.conftest import Pachlocal

from .support import create_pipeline, job_counts, put_file

# The beginner tutorial's images (doc/docs/2.3.x/getting-started/beginner-tutorial.md):
# liberty.png, then AT-AT.png and kitten.png in two more commits. Stand-in pixels.
IMAGES = {
    "/liberty.png": b"liberty pixels",
    "/AT-AT.png": b"at-at pixels",
    "/kitten.png": b"kitten pixels",
}


def edges_spec() -> dict[str, Any]:
    """examples/opencv/edges.pipeline.json; the image's ``/edges.py`` becomes the stand-in,
    given its input and output directories (the original hard-codes them)."""
    return {
        "pipeline": {"name": "edges"},
        "description": "A pipeline that performs image edge detection by using the OpenCV library.",
        "input": {"pfs": {"glob": "/*", "repo": "images"}},
        "transform": {
            "cmd": ["python3", "edges.py", "/pfs/images", "/pfs/out"],
            "image": "pachyderm/opencv:1.0",
        },
    }


def montage_spec() -> dict[str, Any]:
    """examples/opencv/montage.pipeline.json; ``montage`` is the stand-in."""
    return {
        "pipeline": {"name": "montage"},
        "description": "A pipeline that combines images from the `images` and `edges` "
        "repositories into a montage.",
        "input": {
            "cross": [
                {"pfs": {"glob": "/", "repo": "images"}},
                {"pfs": {"glob": "/", "repo": "edges"}},
            ]
        },
        "transform": {
            "cmd": ["sh"],
            "image": "dpokidov/imagemagick:7.1.0-23",
            "stdin": [
                "python3 montage.py -shadow -background SkyBlue -geometry 300x300+2+2 "
                "$(find -L /pfs/images /pfs/edges -type f | sort) /pfs/out/montage.png"
            ],
        },
    }


def tiles(files: list[tuple[str, bytes]]) -> bytes:
    return b"".join(f"{name}: ".encode() + data + b"\n" for name, data in files)


def test_edges_processes_each_new_image_once(pl: Pachlocal) -> None:
    """The tutorial's edges steps: one output PNG per image, named after it; each new
    commit starts one job that processes only the new image."""
    pl("create", "repo", "images")
    put_file(pl, "images@master:/liberty.png", IMAGES["/liberty.png"])
    create_pipeline(pl, edges_spec())
    # beginner-tutorial.md: `pachctl list job` shows one job after `create pipeline`
    assert pl.files("edges@master") == {"/liberty.png": b"edges of liberty pixels"}
    put_file(pl, "images@master:/AT-AT.png", IMAGES["/AT-AT.png"])
    put_file(pl, "images@master:/kitten.png", IMAGES["/kitten.png"])
    # beginner-tutorial.md: three edges jobs, then `get file edges@master:AT-AT.png`
    assert pl.files("edges@master") == {
        "/liberty.png": b"edges of liberty pixels",
        "/AT-AT.png": b"edges of at-at pixels",
        "/kitten.png": b"edges of kitten pixels",
    }
    assert job_counts(pl, "edges") == [
        ("success", 1, 0, 1),
        ("success", 1, 1, 2),
        ("success", 1, 2, 3),
    ]


def test_montage_crosses_every_image_with_every_edge_map(pl: Pachlocal) -> None:
    """The montage job sees both whole repos in one datum (cross of two ``/`` globs):
    its montage.png tiles every image and every edge map, sorted by path; a new image
    reruns edges for that image only, then the montage over everything."""
    pl("create", "repo", "images")
    create_pipeline(pl, edges_spec())
    for path, data in IMAGES.items():
        put_file(pl, f"images@master:{path}", data)
    create_pipeline(pl, montage_spec())
    # beginner-tutorial.md: `get file montage@master:montage.png`
    assert pl.files("montage@master") == {
        "/montage.png": tiles(
            [
                ("edges/AT-AT.png", b"edges of at-at pixels"),
                ("edges/kitten.png", b"edges of kitten pixels"),
                ("edges/liberty.png", b"edges of liberty pixels"),
                ("images/AT-AT.png", b"at-at pixels"),
                ("images/kitten.png", b"kitten pixels"),
                ("images/liberty.png", b"liberty pixels"),
            ]
        )
    }
    assert job_counts(pl, "montage") == [("success", 1, 0, 1)]

    put_file(pl, "images@master:/robot.png", b"robot pixels")
    assert pl.files("montage@master") == {
        "/montage.png": tiles(
            [
                ("edges/AT-AT.png", b"edges of at-at pixels"),
                ("edges/kitten.png", b"edges of kitten pixels"),
                ("edges/liberty.png", b"edges of liberty pixels"),
                ("edges/robot.png", b"edges of robot pixels"),
                ("images/AT-AT.png", b"at-at pixels"),
                ("images/kitten.png", b"kitten pixels"),
                ("images/liberty.png", b"liberty pixels"),
                ("images/robot.png", b"robot pixels"),
            ]
        )
    }
    assert job_counts(pl, "edges")[-1] == ("success", 1, 3, 4)
    assert job_counts(pl, "montage")[-1] == ("success", 1, 0, 1)


def test_the_union_over_two_projects_is_refused_naming_the_project(pl: Pachlocal) -> None:
    """examples/opencv/edges-union.pipeline.json unions ``images`` of the default project
    with ``images`` of project ``staging`` (the Makefile's `opencv-union` target):
    pachlocal has one project, so it refuses the spec, naming the field."""
    spec = edges_spec()
    spec["input"] = {
        "union": [
            {"pfs": {"glob": "/*", "repo": "images"}},
            {"pfs": {"glob": "/*", "repo": "images", "project": "staging"}},
        ]
    }
    pl("create", "repo", "images")
    res = pl("create", "pipeline", "-f", pl.spec(pl.home.parent, spec), ok=False)
    assert res.rc == 1
    assert res.err.strip() == (
        "pachlocal: pipeline edges: input.union[1].pfs.project: project 'staging': "
        "pachlocal has the 'default' project only"
    )
    assert pl("list", "pipeline", "--raw").json() == []
