"""CLI verbs beyond the job basics: diff, debug datum, logs, joins and groups, tables."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .conftest import Pachlocal

Write = Callable[[str, str | bytes], Path]


def test_diff_file_unified_and_name_only(pl: Pachlocal, write: Write) -> None:
    pl("create", "repo", "docs")
    pl("put", "file", "docs@master:/a.txt", "-f", str(write("a1", "one\ntwo\n")))
    pl("put", "file", "docs@master:/gone.txt", "-f", str(write("g", "bye\n")))
    pl("put", "file", "docs@master:/a.txt", "-f", str(write("a2", "one\nTWO\n")))
    unified = pl("diff", "file", "docs@master:/a.txt").out
    assert "-two\n+TWO\n" in unified
    assert unified.splitlines()[0].startswith("diff --git a/")
    pl("delete", "file", "docs@master:/gone.txt")
    name_only = pl("diff", "file", "docs@master:/", "docs@master~2:/", "--name-only").out
    assert name_only.splitlines() == [
        "OP SIZE    NAME",
        "+  8B      /a.txt",
        "-  8B      /a.txt",
        "-  4B      /gone.txt",
    ]


def parquet(rows: dict[str, list[Any]]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(rows), buf)
    return buf.getvalue()


def test_diff_file_row_level_summary(pl: Pachlocal, write: Write) -> None:
    pl("create", "repo", "t")
    old = parquet({"post_id": ["a", "b", "c"], "v": [1.0, 2.0, 3.0]})
    new = parquet({"post_id": ["a", "b", "d"], "v": [1.0, 2.5, 4.0]})
    pl("put", "file", "t@master:/feed.parquet", "-f", str(write("old.parquet", old)))
    pl("put", "file", "t@master:/feed.parquet", "-f", str(write("new.parquet", new)))
    out = pl("diff", "file", "t@master:/feed.parquet", "--key", "post_id").out
    assert out.splitlines() == [
        "/feed.parquet: 1 added, 1 removed, 1 changed, 1 unchanged (key: post_id)",
        "  changed columns: v=1",
        "  + post_id='d'",
        "  - post_id='c'",
        "  ~ post_id='b': v 2.0 -> 2.5",
        "",
    ]


def test_debug_datum_recreates_pfs_and_prints_a_rerun_command(
    pl: Pachlocal, tmp_path: Path, write: Write
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/x/data", "-f", str(write("d", "payload")))
    spec = {
        "pipeline": {"name": "dbg"},
        "transform": {"cmd": ["sh", "-c", "cp $in/data /pfs/out/copy"]},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
    }
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    (job,) = pl("list", "job", "-p", "dbg", "--raw").json()
    (datum,) = pl("list", "datum", f"dbg@{job['id']}", "--raw").json()
    target = tmp_path / "debug"
    out = pl("debug", "datum", f"dbg@{job['id']}", datum["datum"][:10], "--dir", str(target)).out
    assert (target / "pfs" / "in" / "x" / "data").read_bytes() == b"payload"
    assert (target / "pfs" / "out").is_dir()
    rerun = next(line for line in out.splitlines() if "unshare" in line).strip()
    subprocess.run(["sh", "-c", rerun], check=True)
    assert (target / "pfs" / "out" / "copy").read_bytes() == b"payload"


def test_logs_filter_by_datum(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in")
    for name in ("a", "b"):
        pl("put", "file", f"in@master:/{name}", "-f", str(write(name, name)))
    spec = {
        "pipeline": {"name": "talk"},
        "transform": {"cmd": ["sh", "-c", "echo hello from $(basename $in)"]},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
    }
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    (job,) = pl("list", "job", "-p", "talk", "--raw").json()
    datums = pl("list", "datum", f"talk@{job['id']}", "--raw").json()
    by_path = {d["inputs"][0]["path"]: d["datum"] for d in datums}
    assert sorted(pl("logs", "-p", "talk").out.splitlines()) == ["hello from a", "hello from b"]
    assert pl("logs", "-p", "talk", "--datum", by_path["/b"]).out == "hello from b\n"


def test_join_and_group_through_the_engine(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "left")
    pl("create", "repo", "right")
    for repo, files in (("left", ["1.txt", "2.txt", "3.txt"]), ("right", ["1.csv", "2.csv"])):
        for f in files:
            pl("put", "file", f"{repo}@master:/{f}", "-f", str(write(f"{repo}-{f}", f)))
    join = {
        "pipeline": {"name": "joined"},
        "transform": {
            "cmd": [
                "sh",
                "-c",
                'echo "$(ls /pfs/left) $(ls /pfs/right)" > /pfs/out/$PACH_DATUM_left_JOIN_ON',
            ]
        },
        "input": {
            "join": [
                {"pfs": {"repo": "left", "glob": "/(*).txt", "joinOn": "$1", "outerJoin": True}},
                {"pfs": {"repo": "right", "glob": "/(*).csv", "joinOn": "$1"}},
            ]
        },
    }
    pl("create", "pipeline", "-f", pl.spec(tmp_path, join))
    assert pl.files("joined@master") == {
        "/1": b"1.txt 1.csv\n",
        "/2": b"2.txt 2.csv\n",
        "/3": b"3.txt \n",
    }
    group = {
        "pipeline": {"name": "grouped"},
        "transform": {
            "cmd": [
                "sh",
                "-c",
                "ls /pfs/left /pfs/right | grep -v : | sort | tr '\\n' ' ' > /pfs/out/all",
            ]
        },
        "input": {
            "group": [
                {"pfs": {"repo": "left", "glob": "/*", "groupBy": "all"}},
                {"pfs": {"repo": "right", "glob": "/*", "groupBy": "all"}},
            ]
        },
    }
    pl("create", "pipeline", "-f", pl.spec(tmp_path, group))
    assert pl.files("grouped@master") == {"/all": b" 1.csv 1.txt 2.csv 2.txt 3.txt "}


def test_list_tables_have_pachctl_headers(pl: Pachlocal, tmp_path: Path, write: Write) -> None:
    pl("create", "repo", "in", "-d", "raw inputs")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    assert pl("list", "repo").out.splitlines()[0].split() == [
        "PROJECT",
        "NAME",
        "CREATED",
        "SIZE",
        "(MASTER)",
        "DESCRIPTION",
    ]
    header, row = pl("list", "commit", "in").out.splitlines()
    assert header.split() == [
        "PROJECT",
        "REPO",
        "COMMIT",
        "FINISHED",
        "SIZE",
        "ORIGIN",
        "DESCRIPTION",
    ]
    assert row.split()[:2] == ["default", "in"] and "USER" in row
    assert pl("list", "file", "in@master").out.splitlines() == ["NAME TYPE SIZE", "/a   file 1B"]
