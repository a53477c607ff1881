"""``python -m lensrun compare``: two state directories held against each other, repo by
repo, commit by commit, file by file; the files that name commits are skipped."""

from __future__ import annotations

from pathlib import Path

from lensrun.__main__ import main
from lensrun.compare import differences
from pachlocal.engine import Engine


def state(home: Path, commits: dict[str, list[dict[str, bytes]]]) -> Path:
    with Engine(home) as engine:
        for repo, history in commits.items():
            engine.store.create_repo(repo)
            for files in history:
                engine.commit_files(repo, "master", list(files.items()))
    return home


def test_the_same_histories_compare_equal_whatever_the_commit_ids(tmp_path: Path) -> None:
    history = {"feed": [{"/feed.csv": b"a\n"}, {"/feed.csv": b"b\n"}], "raw": [{"/x": b"1"}]}
    a, b = state(tmp_path / "a", history), state(tmp_path / "b", history)
    assert differences(a, b) == []
    assert main(["compare", str(a), str(b)]) == 0


def test_every_kind_of_difference_is_named(tmp_path: Path) -> None:
    a = state(
        tmp_path / "a",
        {
            "feed": [{"/feed.csv": b"a\n", "/feed_meta.json": b"{1}"}],
            "raw": [{"/x": b"1", "/y": b"2"}],
            "model": [{"/m": b""}],
            "left": [{"/z": b""}],
        },
    )
    b = state(
        tmp_path / "b",
        {
            "feed": [{"/feed.csv": b"b\n", "/feed_meta.json": b"{2}"}],
            "raw": [{"/x": b"1"}],
            "model": [{"/m": b""}, {"/m": b"."}],
        },
    )
    assert differences(a, b) == [
        f"repo left: only in {a}",
        "feed commit 1/1: /feed.csv differs",
        "repo model: 1 commits against 2",
        f"raw commit 1/1: /y only in {a}",
    ]
    assert "feed commit 1/1: /feed_meta.json differs" in differences(a, b, ignore=())
    assert main(["compare", str(a), str(b)]) == 1
