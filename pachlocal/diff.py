"""File-tree and row-level diffs, rendered like `pachctl diff file`."""

from __future__ import annotations

import difflib
import hashlib
import io
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

Mask = npt.NDArray[np.bool_]
Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FileRef:
    """One file on one side of a diff; `hash` identifies its content."""

    path: str
    hash: str
    size: int


@dataclass(frozen=True)
class FileChange:
    """A path that differs: `old` None means added, `new` None means removed."""

    path: str
    old: FileRef | None
    new: FileRef | None


def _clean(path: str) -> str:
    """pfs CleanPath: absolute, normalised, no trailing slash."""
    return posixpath.normpath("/" + path.lstrip("/"))


def diff_listings(
    new: Mapping[str, FileRef], old: Mapping[str, FileRef], prefix: str = "/"
) -> list[FileChange]:
    """Paths under `prefix` (a file or a directory) added, removed or with another hash."""
    root = _clean(prefix).rstrip("/")
    news, olds = ({_clean(p): r for p, r in side.items()} for side in (new, old))
    paths = sorted(p for p in news.keys() | olds.keys() if p == root or p.startswith(root + "/"))
    pairs = ((p, olds.get(p), news.get(p)) for p in paths)
    return [FileChange(p, o, n) for p, o, n in pairs if o is None or n is None or o.hash != n.hash]


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def bytes_size(size: float) -> str:
    """docker/go-units BytesSize: base 1024, `%.4g` then the unit, e.g. `1.5KiB`."""
    i = 0
    while size >= 1024 and i < len(_UNITS) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{_UNITS[i]}"


def _tabulate(rows: Sequence[Sequence[str]]) -> str:
    """Go tabwriter (minwidth 0, padding 1, ' '): all cells but the last padded per column."""
    widths = [max(len(r[i]) for r in rows) + 1 for i in range(len(rows[0]) - 1)]
    return "".join(
        "".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1] + "\n" for r in rows
    )


_NAME_HEADER = ("OP", "SIZE   ", "NAME")
_TERM_HEIGHT = 50  # pachyderm's tabwriter flushes and repeats the header every 49 rows


def render_name_only(changes: Sequence[FileChange]) -> str:
    """`pachctl diff file --name-only`: `+` new side then `-` old side, OP SIZE NAME."""
    rows: list[tuple[str, str, str]] = []
    for c in changes:
        rows += [("+", bytes_size(c.new.size), c.new.path)] if c.new else []
        rows += [("-", bytes_size(c.old.size), c.old.path)] if c.old else []
    step = _TERM_HEIGHT - 1
    chunks = [rows[i : i + step] for i in range(0, len(rows), step)] or [[]]
    return "".join(_tabulate([_NAME_HEADER, *chunk]) for chunk in chunks)


def _blob_id(data: bytes | None) -> str:
    """Abbreviated git blob id, as in git's `index` line."""
    if data is None:
        return "0000000"
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()[:7]


def _split(data: bytes) -> list[bytes]:
    """Lines split on LF only, each keeping its newline."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _span(start: int, length: int) -> str:
    return f"{start + 1}" if length == 1 else f"{start + (length > 0)},{length}"


def _funcname(line: bytes) -> bytes | None:
    """git's default hunk-header function line: starts with a letter, `_` or `$`."""
    if line[:1].isalpha() or line[:1] in (b"_", b"$"):
        return line[:80].rstrip(b" \t\n\v\f\r")
    return None


def _hunks(a: list[bytes], b: list[bytes]) -> list[str]:
    """Unified hunks with 3 lines of context and git's function-line headers."""
    out: list[str] = []
    func, searched = b"", -1
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in matcher.get_grouped_opcodes(3):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        for k in range(i1 - 1, searched, -1):
            if (found := _funcname(a[k])) is not None:
                func = found
                break
        searched = i1 - 1
        head = f"@@ -{_span(i1, i2 - i1)} +{_span(j1, j2 - j1)} @@"
        out.append(head + (" " + func.decode("utf-8", "replace") if func else ""))
        for tag, o1, o2, n1, n2 in group:
            lines = [(" " if tag == "equal" else "-", x) for x in a[o1:o2]]
            lines += [("+", x) for x in b[n1:n2]] if tag != "equal" else []
            for sign, line in lines:
                text = line.decode("utf-8", "replace")
                out.append(sign + text.removesuffix("\n"))
                out += [] if text.endswith("\n") else ["\\ No newline at end of file"]
    return out


def _git_diff(old: bytes | None, new: bytes | None, a: str, b: str) -> str:
    """`git diff --no-index` of one file pair, without colour."""
    if old == new:
        return ""
    src = "a/" + a if old is not None else "/dev/null"
    dst = "b/" + b if new is not None else "/dev/null"
    lines = [f"diff --git a/{a if old is not None else b} b/{b if new is not None else a}"]
    if old is None:
        lines += ["new file mode 100644", f"index 0000000..{_blob_id(new)}"]
    elif new is None:
        lines += ["deleted file mode 100644", f"index {_blob_id(old)}..0000000"]
    else:
        lines.append(f"index {_blob_id(old)}..{_blob_id(new)} 100644")
    if any(b"\0" in x[:8000] for x in (old, new) if x is not None):
        lines.append(f"Binary files {src} and {dst} differ")
    elif hunks := _hunks(_split(old or b""), _split(new or b"")):
        tab_a, tab_b = ("\t" if " " in n else "" for n in (a, b))
        lines += [f"--- {src}{tab_a}", f"+++ {dst}{tab_b}", *hunks]
    return "\n".join(lines) + "\n"


def render_unified(
    changes: Sequence[FileChange], read: Callable[[str], bytes], new_label: str, old_label: str
) -> str:
    """git-style unified diff per change; `read(hash)` returns a file's content."""

    def name(label: str, path: str) -> str:
        return f"{label}:{path}" if label else path.lstrip("/")

    return "".join(
        _git_diff(
            read(c.old.hash) if c.old else None,
            read(c.new.hash) if c.new else None,
            name(old_label, c.path),
            name(new_label, c.path),
        )
        for c in changes
    )


class RowDiffError(ValueError):
    """A table cannot be row-diffed (missing or duplicate key, unknown format)."""


@dataclass(frozen=True)
class RowChange:
    """One changed row: its key values and `column -> (old, new)` for differing columns."""

    key: dict[str, Any]
    values: dict[str, tuple[Any, Any]]


@dataclass(frozen=True)
class RowDiff:
    """Row-level diff of one table; listings are capped at `limit` rows each."""

    key: tuple[str, ...]
    added: int
    removed: int
    changed: int
    unchanged: int
    changed_columns: dict[str, int]
    added_rows: list[dict[str, Any]]
    removed_rows: list[dict[str, Any]]
    changed_rows: list[RowChange]
    columns_added: list[str]
    columns_removed: list[str]
    columns_retyped: dict[str, tuple[str, str]]


def table_format(path: str) -> str | None:
    """`parquet` or `csv` from the file extension, else None."""
    ext = posixpath.splitext(path.lower())[1]
    return {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(ext)


def _read(data: bytes, fmt: str) -> pa.Table:
    """Parquet with its own types; CSV with every column as (non-null) text."""
    if fmt == "parquet":
        table = pq.read_table(io.BytesIO(data))
    elif fmt == "csv":
        if not data.strip():
            return pa.table({})
        names = pacsv.open_csv(io.BytesIO(data)).schema.names
        types = {n: pa.string() for n in names}
        opts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False)
        table = pacsv.read_csv(io.BytesIO(data), convert_options=opts)
    else:
        raise RowDiffError(f"unsupported table format {fmt!r}")
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def _differs(a: Any, b: Any) -> Mask:
    """Elementwise a != b with exact types, null == null and NaN == NaN."""
    both_null = pc.and_(a.is_null(), b.is_null()).to_numpy(zero_copy_only=False)
    if a.type != b.type:
        return ~np.asarray(both_null, dtype=bool)
    if pa.types.is_nested(a.type):  # no vectorised equality for lists/structs
        pairs = zip(a.to_pylist(), b.to_pylist(), strict=True)
        return np.fromiter((x != y for x, y in pairs), dtype=bool, count=len(a))
    same = pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False) | both_null
    if pa.types.is_floating(a.type):
        nan = pc.fill_null(pc.and_(pc.is_nan(a), pc.is_nan(b)), False)
        same |= nan.to_numpy(zero_copy_only=False)
    return ~np.asarray(same, dtype=bool)


def _match(old: pa.Table, new: pa.Table, cols: list[str], occurrence: bool) -> tuple[Index, ...]:
    """Merge on `cols` (plus occurrence number for multisets): removed, added, old+new pairs."""
    o, n, ind, occ = "\0old", "\0new", "\0merge", "\0occ"
    left, right = (t.select(cols).to_pandas() for t in (old, new))
    left[o], right[n] = np.arange(len(left), dtype=np.int64), np.arange(len(right), dtype=np.int64)
    if occurrence:
        for frame in (left, right):
            frame[occ] = frame.groupby(cols, dropna=False, sort=False).cumcount()
    on = [*cols, occ] if occurrence else cols
    m = left.merge(right, on=on, how="outer", indicator=ind)

    def idx(side: str, col: str) -> Index:
        return np.sort(m.loc[m[ind] == side, col].to_numpy().astype(np.int64))

    both = m.loc[m[ind] == "both", [o, n]].to_numpy().astype(np.int64)
    both = both[np.argsort(both[:, 1], kind="stable")]
    return idx("left_only", o), idx("right_only", n), both[:, 0], both[:, 1]


def _check_key(table: pa.Table, key: Sequence[str], side: str) -> None:
    """Raise unless every key column exists and key values are unique."""
    if not key:
        return
    for k in key:
        if k not in table.column_names:
            have = ", ".join(table.column_names)
            raise RowDiffError(f"key column {k!r} missing from the {side} side (columns: {have})")
    dup = table.select(list(key)).to_pandas().duplicated(keep="first").to_numpy()
    if dup.any():
        row = table.select(list(key)).take([int(np.argmax(dup))]).to_pylist()[0]
        raise RowDiffError(f"duplicate key in the {side} side: {_fmt_row(row)}")


def row_diff(
    old_bytes: bytes | None, new_bytes: bytes | None, fmt: str, key: Sequence[str], limit: int = 20
) -> RowDiff:
    """Rows matched by `key` (added/removed/changed), or whole rows as multisets without key."""
    sides = [_read(b, fmt) if b is not None else None for b in (old_bytes, new_bytes)]
    empty = next((t.schema.empty_table() for t in sides if t is not None), pa.table({}))
    old, new = (t if t is not None else empty for t in sides)
    key = tuple(key)
    _check_key(old, key, "old")
    _check_key(new, key, "new")
    o_names, n_names = old.column_names, new.column_names
    common = [c for c in n_names if c in o_names]
    types = {c: (str(old.schema.field(c).type), str(new.schema.field(c).type)) for c in common}
    retyped = {c: t for c, t in types.items() if t[0] != t[1]}
    if bad := [k for k in key if k in retyped]:
        raise RowDiffError(f"key column {bad[0]!r} changed type ({' -> '.join(retyped[bad[0]])})")
    masks: dict[str, Mask] = {}
    if key or (set(o_names) == set(n_names) and not retyped and n_names):
        removed, added, oi, ni = _match(old, new, list(key or n_names), occurrence=not key)
        for c in (c for c in common if key and c not in key):
            if (mask := _differs(old.column(c).take(oi), new.column(c).take(ni))).any():
                masks[c] = mask
    else:  # different schemas: no whole row can be equal
        removed, added = np.arange(old.num_rows), np.arange(new.num_rows)
        oi = ni = np.zeros(0, dtype=np.int64)
    row_changed = np.zeros(len(oi), dtype=bool)
    for mask in masks.values():
        row_changed |= mask
    pos = np.flatnonzero(row_changed)[:limit]
    olds = {c: old.column(c).take(oi[pos]).to_pylist() for c in masks}
    news = {c: new.column(c).take(ni[pos]).to_pylist() for c in masks}
    keys = new.select(list(key)).take(ni[pos]).to_pylist()
    return RowDiff(
        key=key,
        added=len(added),
        removed=len(removed),
        changed=int(row_changed.sum()),
        unchanged=len(oi) - int(row_changed.sum()),
        changed_columns={c: int(m.sum()) for c, m in masks.items()},
        added_rows=new.select(list(key) or n_names).take(added[:limit]).to_pylist(),
        removed_rows=old.select(list(key) or o_names).take(removed[:limit]).to_pylist(),
        changed_rows=[
            RowChange(k, {c: (olds[c][r], news[c][r]) for c in masks if masks[c][p]})
            for r, (k, p) in enumerate(zip(keys, pos, strict=True))
        ],
        columns_added=[c for c in n_names if c not in o_names],
        columns_removed=[c for c in o_names if c not in n_names],
        columns_retyped=retyped,
    )


def _fmt(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _fmt_row(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in row.items())


def render_row_diff(path: str, rd: RowDiff) -> str:
    """Summary, schema changes and the capped row listings of one table."""
    mode = f"key: {', '.join(rd.key)}" if rd.key else "no key: rows compared as a multiset"
    counts = f"{rd.added} added, {rd.removed} removed, {rd.changed} changed"
    lines = [f"{path}: {counts}, {rd.unchanged} unchanged ({mode})"]
    schema = {
        "columns added": ", ".join(rd.columns_added),
        "columns removed": ", ".join(rd.columns_removed),
        "columns retyped": ", ".join(f"{c} {a} -> {b}" for c, (a, b) in rd.columns_retyped.items()),
        "changed columns": ", ".join(f"{c}={n}" for c, n in rd.changed_columns.items()),
    }
    lines += [f"  {k}: {v}" for k, v in schema.items() if v]
    changes = [
        _fmt_row(ch.key)
        + ": "
        + "; ".join(f"{c} {_fmt(a)} -> {_fmt(b)}" for c, (a, b) in ch.values.items())
        for ch in rd.changed_rows
    ]
    listings = [
        ("+", rd.added, [_fmt_row(r) for r in rd.added_rows], "added"),
        ("-", rd.removed, [_fmt_row(r) for r in rd.removed_rows], "removed"),
        ("~", rd.changed, changes, "changed"),
    ]
    for sign, total, texts, what in listings:
        lines += [f"  {sign} {t}" for t in texts]
        if total > len(texts):
            lines.append(f"  ... {total - len(texts)} more {what} rows")
    return "\n".join(lines) + "\n"
