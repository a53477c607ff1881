"""Tests for pachlocal.diff: listings, pachctl-style renderings and row diffs."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pachlocal.diff import (
    FileChange,
    FileRef,
    RowChange,
    RowDiff,
    RowDiffError,
    bytes_size,
    diff_listings,
    render_name_only,
    render_row_diff,
    render_unified,
    row_diff,
    table_format,
)


def ref(path: str, content: bytes) -> FileRef:
    return FileRef(path, f"h:{content.decode('latin-1')}", len(content))


def listing(**files: bytes) -> dict[str, FileRef]:
    """Keyword names map to paths: `dir__a_txt` -> `/dir/a.txt`."""
    paths = {k: "/" + k.replace("__", "/").replace("_", ".") for k in files}
    return {paths[k]: ref(paths[k], v) for k, v in files.items()}


def read(hash_: str) -> bytes:
    return hash_.removeprefix("h:").encode("latin-1")


OLD = listing(a_txt=b"same", b_txt=b"old", dir__c_txt=b"gone", dirx__d_txt=b"d")
NEW = listing(a_txt=b"same", b_txt=b"newer", dir__e_txt=b"born", dirx__d_txt=b"d2")


def test_diff_listings_reports_added_removed_modified_and_omits_identical() -> None:
    assert diff_listings(NEW, OLD) == [
        FileChange("/b.txt", OLD["/b.txt"], NEW["/b.txt"]),
        FileChange("/dir/c.txt", OLD["/dir/c.txt"], None),
        FileChange("/dir/e.txt", None, NEW["/dir/e.txt"]),
        FileChange("/dirx/d.txt", OLD["/dirx/d.txt"], NEW["/dirx/d.txt"]),
    ]


@pytest.mark.parametrize("prefix", ["/dir", "dir/", "/dir/"])
def test_diff_listings_prefix_directory_excludes_siblings_sharing_the_name(prefix: str) -> None:
    assert diff_listings(NEW, OLD, prefix) == [
        FileChange("/dir/c.txt", OLD["/dir/c.txt"], None),
        FileChange("/dir/e.txt", None, NEW["/dir/e.txt"]),
    ]


def test_diff_listings_prefix_single_file() -> None:
    assert diff_listings(NEW, OLD, "/b.txt") == [FileChange("/b.txt", OLD["/b.txt"], NEW["/b.txt"])]
    assert diff_listings(NEW, OLD, "/a.txt") == []


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (12, "12B"),
        (1023, "1023B"),
        (1024, "1KiB"),
        (1536, "1.5KiB"),
        (1025, "1.001KiB"),
        (1048565, "1024KiB"),
        (int(3.25 * 2**20), "3.25MiB"),
        (5 * 2**40, "5TiB"),
    ],
)
def test_bytes_size_matches_go_units(size: int, text: str) -> None:
    assert bytes_size(size) == text


def test_render_name_only_table() -> None:
    changes = [
        FileChange("/a.txt", FileRef("/a.txt", "o", 1536), FileRef("/a.txt", "n", 12)),
        FileChange("/b/c.csv", None, FileRef("/b/c.csv", "n", 0)),
        FileChange("/d", FileRef("/d", "o", 1025), None),
    ]
    assert render_name_only(changes) == (
        "OP SIZE     NAME\n"
        "+  12B      /a.txt\n"
        "-  1.5KiB   /a.txt\n"
        "+  0B       /b/c.csv\n"
        "-  1.001KiB /d\n"
    )
    assert (
        render_name_only(changes[:1]) == "OP SIZE    NAME\n+  12B     /a.txt\n-  1.5KiB  /a.txt\n"
    )
    assert render_name_only([]) == "OP SIZE    NAME\n"


def test_render_name_only_repeats_header_every_49_rows() -> None:
    changes = [FileChange(f"/f{i:02}", None, FileRef(f"/f{i:02}", "h", 1)) for i in range(50)]
    lines = render_name_only(changes).splitlines()
    assert len(lines) == 52
    assert lines[0] == lines[50] == "OP SIZE    NAME"
    assert lines[49] == "+  1B      /f48"
    assert lines[51] == "+  1B      /f49"


APP_OLD = b"def main():\n    a = 1\n    b = 2\n    c = 3\n    d = 4\n    e = 5\n    f = 6\n    g = 7\n    return a\n"
APP_NEW = APP_OLD.replace(b"g = 7", b"g = 70").replace(b"return a\n", b"return a + g")
CSV = b"x,y\n1,2\n"


def unified(old: bytes | None, new: bytes | None, path: str = "/app.py") -> str:
    change = FileChange(
        path,
        ref(path, old) if old is not None else None,
        ref(path, new) if new is not None else None,
    )
    return render_unified([change], read, new_label="new", old_label="old")


def test_render_unified_modified_with_function_context_and_missing_newline() -> None:
    assert unified(APP_OLD, APP_NEW) == (
        "diff --git a/old:/app.py b/new:/app.py\n"
        "index 62c233f..73fba47 100644\n"
        "--- a/old:/app.py\n"
        "+++ b/new:/app.py\n"
        "@@ -5,5 +5,5 @@ def main():\n"
        "     d = 4\n"
        "     e = 5\n"
        "     f = 6\n"
        "-    g = 7\n"
        "-    return a\n"
        "+    g = 70\n"
        "+    return a + g\n"
        "\\ No newline at end of file\n"
    )


def test_render_unified_added_and_removed_against_dev_null() -> None:
    assert unified(None, CSV, "/n.csv") == (
        "diff --git a/new:/n.csv b/new:/n.csv\n"
        "new file mode 100644\n"
        "index 0000000..9e468ec\n"
        "--- /dev/null\n"
        "+++ b/new:/n.csv\n"
        "@@ -0,0 +1,2 @@\n"
        "+x,y\n"
        "+1,2\n"
    )
    assert unified(CSV, None, "/n.csv") == (
        "diff --git a/old:/n.csv b/old:/n.csv\n"
        "deleted file mode 100644\n"
        "index 9e468ec..0000000\n"
        "--- a/old:/n.csv\n"
        "+++ /dev/null\n"
        "@@ -1,2 +0,0 @@\n"
        "-x,y\n"
        "-1,2\n"
    )


def test_render_unified_binary_empty_and_several_files() -> None:
    assert unified(b"PAR1\0\2", b"PAR1\0\1", "/t.bin") == (
        "diff --git a/old:/t.bin b/new:/t.bin\n"
        "index 706a118..55577ce 100644\n"
        "Binary files a/old:/t.bin and b/new:/t.bin differ\n"
    )
    assert unified(None, b"PAR1\0\1", "/t.bin") == (
        "diff --git a/new:/t.bin b/new:/t.bin\n"
        "new file mode 100644\n"
        "index 0000000..55577ce\n"
        "Binary files /dev/null and b/new:/t.bin differ\n"
    )
    assert unified(None, b"", "/e") == (
        "diff --git a/new:/e b/new:/e\nnew file mode 100644\nindex 0000000..e69de29\n"
    )
    both = [FileChange("/a", None, ref("/a", b"1\n")), FileChange("/b", ref("/b", b"2\n"), None)]
    assert render_unified(both, read, "n", "o") == unified(None, b"1\n", "/a").replace(
        "new:", "n:"
    ) + unified(b"2\n", None, "/b").replace("old:", "o:")


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (APP_OLD, APP_NEW),
        (APP_OLD * 3, APP_OLD.replace(b"b = 2", b"b = 3") * 2 + APP_OLD.replace(b"f", b"F")),
        (
            b"_x\n" + b"\n".join(b"%d" % i for i in range(30)),
            b"_x\n" + b"\n".join(b"%d" % i for i in range(1, 31)),
        ),
        (None, CSV),
        (CSV, None),
        (CSV, b"x,y\n1,2"),
        (b"x\0", b"y\0"),
        (None, b""),
    ],
)
def test_render_unified_matches_git_diff_no_index(
    tmp_path: Path, old: bytes | None, new: bytes | None
) -> None:
    """pachctl shells out to `git diff --no-index OLD NEW`; compare with real git."""
    args = []
    for label, data in (("old", old), ("new", new)):
        if data is None:
            args.append("/dev/null")
        else:
            (tmp_path / f"{label}:").mkdir()
            (tmp_path / f"{label}:" / "f").write_bytes(data)
            args.append(f"{label}:/f")
    home = str(tmp_path)
    env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": home, "GIT_CONFIG_NOSYSTEM": "1"}
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    git = subprocess.run(
        ["git", "diff", "--no-index", *args], cwd=tmp_path, env=env, capture_output=True
    )
    assert unified(old, new, "/f") == git.stdout.decode()


def test_table_format() -> None:
    assert [table_format(p) for p in ("/a.csv", "/b.PARQUET", "/c.pq", "/d.json")] == [
        "csv",
        "parquet",
        "parquet",
        None,
    ]


OLD_CSV = b"id,score,label\n1,0.5,a\n2,0.7,b\n3,,c\n4,1,d\n5,2,e\n"
NEW_CSV = b"id,score,label\n1,0.50,a\n3,,c\n4,1,D\n5,3,E\n6,4,f\n7,5,g\n"


def test_row_diff_csv_keyed_counts_changed_columns_and_capped_listing() -> None:
    rd = row_diff(OLD_CSV, NEW_CSV, "csv", ["id"], limit=1)
    assert rd == RowDiff(
        key=("id",),
        added=2,
        removed=1,
        changed=3,
        unchanged=1,
        changed_columns={"score": 2, "label": 2},
        added_rows=[{"id": "6"}],
        removed_rows=[{"id": "2"}],
        changed_rows=[RowChange({"id": "1"}, {"score": ("0.5", "0.50")})],
        columns_added=[],
        columns_removed=[],
        columns_retyped={},
    )
    assert render_row_diff("/scores.csv", rd) == (
        "/scores.csv: 2 added, 1 removed, 3 changed, 1 unchanged (key: id)\n"
        "  changed columns: score=2, label=2\n"
        "  + id='6'\n"
        "  ... 1 more added rows\n"
        "  - id='2'\n"
        "  ~ id='1': score '0.5' -> '0.50'\n"
        "  ... 2 more changed rows\n"
    )
    full = row_diff(OLD_CSV, NEW_CSV, "csv", ["id"])
    assert full.changed_rows[1:] == [
        RowChange({"id": "4"}, {"label": ("d", "D")}),
        RowChange({"id": "5"}, {"score": ("2", "3"), "label": ("e", "E")}),
    ]


def parquet(**columns: pa.Array | list[object]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


NAN = float("nan")


def test_row_diff_parquet_nan_null_equality_and_schema_change() -> None:
    old = parquet(k=[1, 2, 3, 4], v=[NAN, None, 1.5, 2.0], n=[1, 2, 3, 4], gone=["a"] * 4)
    new = parquet(k=[4, 3, 2, 1], v=[2.0, 1.5, None, NAN], n=[4.0, 3, 2, 1], s=pa.array(["x"] * 4))
    rd = row_diff(old, new, "parquet", ["k"], limit=2)
    assert rd == RowDiff(
        key=("k",),
        added=0,
        removed=0,
        changed=4,
        unchanged=0,
        changed_columns={"n": 4},
        added_rows=[],
        removed_rows=[],
        changed_rows=[RowChange({"k": 4}, {"n": (4, 4.0)}), RowChange({"k": 3}, {"n": (3, 3.0)})],
        columns_added=["s"],
        columns_removed=["gone"],
        columns_retyped={"n": ("int64", "double")},
    )
    assert render_row_diff("/t.parquet", rd) == (
        "/t.parquet: 0 added, 0 removed, 4 changed, 0 unchanged (key: k)\n"
        "  columns added: s\n"
        "  columns removed: gone\n"
        "  columns retyped: n int64 -> double\n"
        "  changed columns: n=4\n"
        "  ~ k=4: n 4 -> 4.0\n"
        "  ~ k=3: n 3 -> 3.0\n"
        "  ... 2 more changed rows\n"
    )
    same = row_diff(old, parquet(k=[2, 1, 3, 4], v=[None, NAN, 1.5, 2.0]), "parquet", ["k"])
    assert (same.changed, same.unchanged, same.changed_columns) == (0, 4, {})


def test_row_diff_floats_are_compared_exactly() -> None:
    rd = row_diff(parquet(k=[1], v=[0.1 + 0.2]), parquet(k=[1], v=[0.3]), "parquet", ["k"])
    assert rd.changed_rows == [RowChange({"k": 1}, {"v": (0.30000000000000004, 0.3)})]


def test_row_diff_missing_key_column_names_column_and_side() -> None:
    with pytest.raises(RowDiffError, match=r"key column 'id' missing from the new side"):
        row_diff(OLD_CSV, b"ident,score\n1,2\n", "csv", ["id"])
    with pytest.raises(RowDiffError, match=r"key column 'k' missing from the old side"):
        row_diff(parquet(j=[1]), parquet(k=[1]), "parquet", ["k"])


def test_row_diff_duplicate_key_names_an_example() -> None:
    with pytest.raises(RowDiffError, match=r"duplicate key in the new side: id='3', label='c'"):
        row_diff(OLD_CSV, NEW_CSV + b"3,9,c\n", "csv", ["id", "label"])


def test_row_diff_without_key_compares_multisets_of_rows() -> None:
    old = b"a,b\n1,x\n1,x\n2,y\n"
    new = b"a,b\n2,y\n1,x\n2,y\n3,z\n"
    rd = row_diff(old, new, "csv", [])
    assert rd == RowDiff(
        key=(),
        added=2,
        removed=1,
        changed=0,
        unchanged=2,
        changed_columns={},
        added_rows=[{"a": "2", "b": "y"}, {"a": "3", "b": "z"}],
        removed_rows=[{"a": "1", "b": "x"}],
        changed_rows=[],
        columns_added=[],
        columns_removed=[],
        columns_retyped={},
    )
    assert render_row_diff("/t.csv", rd) == (
        "/t.csv: 2 added, 1 removed, 0 changed, 2 unchanged (no key: rows compared as a multiset)\n"
        "  + a='2', b='y'\n"
        "  + a='3', b='z'\n"
        "  - a='1', b='x'\n"
    )
    nan_rows = parquet(v=[NAN, None, 1.0])
    assert row_diff(nan_rows, parquet(v=[1.0, NAN, None]), "parquet", []).unchanged == 3


def test_row_diff_new_and_deleted_files() -> None:
    added = row_diff(None, b"id,v\n1,a\n", "csv", ["id"])
    assert (added.added, added.removed, added.added_rows, added.columns_added) == (
        1,
        0,
        [{"id": "1"}],
        [],
    )
    gone = row_diff(b"id,v\n1,a\n", None, "csv", [])
    assert (gone.added, gone.removed, gone.removed_rows) == (0, 1, [{"id": "1", "v": "a"}])
