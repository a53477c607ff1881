"""The malformed export corpus: one bad object per kind of fault, each with the verdict ingest must give it."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from lensfeed.ingest import MAX_NAME_BYTES
from lensfeed.parquet import parquet_bytes
from lensfeed.schemas import FOLLOWERS, MAX_STRING_BYTES, POSTS, PROFILES, STATS
from tests.lens.faults_engine import (
    START,
)

Tables = dict[str, pa.Table]  # the first good export of each table

Bad = tuple[str, bytes, str]  # object name, bytes, verdict (a regular expression, fullmatch)


def _name(table: str, part: int, tail: str = "") -> str:
    return f"lens/{table}/20240501T003000Z-{part:012d}{tail}.parquet"


def _column(table: pa.Table, column: str, values: Any) -> pa.Table:
    """``table`` with ``column`` replaced (a list keeps the column's type)."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, table.schema.field(column).type)
    return table.set_column(table.schema.get_field_index(column), column, values)


def _cell(table: pa.Table, column: str, rows: dict[int, Any]) -> pa.Table:
    values = table.column(column).to_pylist()
    for row, value in rows.items():
        values[row] = value
    return _column(table, column, values)


def _raw_strings(values: list[bytes | None]) -> pa.Array:
    """A string array holding these bytes unchecked: Parquet writers and readers check no UTF-8."""
    binary = pa.array(values, pa.binary())
    validity, offsets, data = binary.buffers()
    return pa.StringArray.from_buffers(len(binary), offsets, data, validity, binary.null_count)


def _bad_utf8(table: pa.Table, column: str, rows: dict[int, bytes]) -> pa.Table:
    values = [None if v is None else v.encode() for v in table.column(column).to_pylist()]
    for row, value in rows.items():
        values[row] = value
    return _column(table, column, _raw_strings(values))


def _pq(table: pa.Table) -> bytes:
    return parquet_bytes(table)


def _json(table: pa.Table) -> bytes:
    return json.dumps(table.slice(0, 3).to_pylist(), default=str).encode()


def _csv(table: pa.Table, sep: str = ",") -> bytes:
    text = io.StringIO()
    table.slice(0, 3).to_pandas().to_csv(text, index=False, sep=sep)
    return text.getvalue().encode()


def _cut_body(data: bytes) -> bytes:
    """Magic and footer intact, the column chunks in between partly gone."""
    return data[:4] + data[len(data) // 2 :]


def _uuid_not_utf8(t: Tables) -> Bad:
    posts = t[POSTS]
    meta = posts.column("datastream_metadata").combine_chunks()
    uuids = [v.encode() for v in meta.field("uuid").to_pylist()]
    uuids[0] = b"\xed\xa0\x80-lone-surrogate"
    struct = pa.StructArray.from_arrays(
        [_raw_strings(uuids), meta.field("source_timestamp")], names=["uuid", "source_timestamp"]
    )
    verdict = (
        f"{POSTS}: column 'datastream_metadata.uuid' is not valid UTF-8 in 1 row, first at row 0"
    )
    return _name(POSTS, 402), _pq(_column(posts, "datastream_metadata", struct)), verdict


def _source_ms(t: Tables, row: int, millis: int) -> pa.Table:
    stats = t[STATS]
    meta = stats.column("datastream_metadata").combine_chunks()
    source = meta.field("source_timestamp").to_pylist()
    source[row] = millis
    struct = pa.StructArray.from_arrays(
        [meta.field("uuid"), pa.array(source, pa.int64())], names=["uuid", "source_timestamp"]
    )
    return _column(stats, "datastream_metadata", struct)


def _dup_followers(t: Tables) -> Bad:
    followers = t[FOLLOWERS]
    address, profile = (
        followers.column("address")[0].as_py(),
        followers.column("follow_profile_id")[0].as_py(),
    )
    verdict = re.escape(
        f"{FOLLOWERS}: duplicate primary key address={address!r}, "
        f"follow_profile_id={profile!r} in 2 rows (1 key repeated)"
    )
    return _name(FOLLOWERS, 501), _pq(pa.concat_tables([followers, followers.slice(0, 1)])), verdict


def _dup_stats(t: Tables) -> Bad:
    stats = t[STATS]
    key = stats.column("publication_id")[5].as_py()
    verdict = re.escape(
        f"{STATS}: duplicate primary key publication_id={key!r} in 2 rows (1 key repeated)"
    )
    return _name(STATS, 502), _pq(pa.concat_tables([stats, stats.slice(5, 1)])), verdict


def _dup_handle(t: Tables) -> Bad:
    profiles = t[PROFILES]
    handles = profiles.column("handle").to_pylist()
    first, second = [i for i, h in enumerate(handles) if h is not None][:2]
    verdict = re.escape(
        f"{PROFILES}: duplicate value handle={handles[first]!r} in 2 rows (1 value repeated)"
    )
    return _name(PROFILES, 503), _pq(_cell(profiles, "handle", {second: handles[first]})), verdict


def _s_overflow(t: Tables) -> Bad:
    followers = t[FOLLOWERS]
    seconds = [1_714_435_200] * followers.num_rows
    seconds[6] = 10**15  # year ~31.7 million: fits seconds, overflows microseconds
    column = pa.array(seconds, pa.int64()).cast(pa.timestamp("s", tz="UTC"))
    verdict = (
        rf"{FOLLOWERS}: column 'block_timestamp' cannot be cast to timestamp\[us, tz=UTC\]: "
        r".*out of bounds.*"
    )
    return _name(FOLLOWERS, 604), _pq(_column(followers, "block_timestamp", column)), verdict


def _name_case(name: str, verdict: str) -> Callable[[Tables], Bad]:
    return lambda t: (name, _pq(t[POSTS]), re.escape(verdict))


def _long(total: int) -> str:
    head, tail = f"lens/{POSTS}/", ".parquet"
    return head + "9" * (total - len(head) - len(tail)) + tail


TICK = "2024-05-01T01:00:00Z"  # every object of the corpus lands in its window (00:00, 01:00]
GOOD_LANDED = START + timedelta(minutes=10)
BAD_LANDED = START + timedelta(minutes=20)
OUTSIDE = r"is outside \[2020-01-01, 2100-01-01\) in"
LAYOUT = "name does not match lens/<table>/<YYYYmmddTHHMMSSZ>-<part>.parquet"


#: Every kind of bad object ``test_ingest`` does not already cover; each is built from a good
#: export with exactly one defect, so its verdict is exactly one problem.
CORPUS: dict[str, Callable[[Tables], Bad]] = {
    # not Parquet at all
    "json-array": lambda t: (_name(POSTS, 101), _json(t[POSTS]), "not Parquet: looks like JSON"),
    "json-lines": lambda t: (
        _name(STATS, 102),
        b"\n".join(json.dumps(r, default=str).encode() for r in t[STATS].slice(0, 3).to_pylist()),
        "not Parquet: looks like JSON",
    ),
    "json-with-bom": lambda t: (
        _name(PROFILES, 103),
        b"\xef\xbb\xbf" + _json(t[PROFILES]),
        "not Parquet: looks like JSON",
    ),
    "tsv": lambda t: (
        _name(FOLLOWERS, 104),
        _csv(t[FOLLOWERS], "\t"),
        "not Parquet: looks like CSV",
    ),
    "csv-with-bom": lambda t: (
        _name(STATS, 105),
        b"\xef\xbb\xbf" + _csv(t[STATS]),
        "not Parquet: looks like CSV",
    ),
    "parquet-body-cut": lambda t: (
        _name(STATS, 106),
        _cut_body(_pq(t[STATS])),
        rf"unreadable Parquet \({STATS}\): .+",
    ),
    # columns
    "missing-nullable-column": lambda t: (
        _name(PROFILES, 201),
        _pq(t[PROFILES].drop_columns(["handle"])),
        f"{PROFILES}: missing column 'handle'",
    ),
    "missing-key-column": lambda t: (
        _name(FOLLOWERS, 202),
        _pq(t[FOLLOWERS].drop_columns(["follow_profile_id"])),
        f"{FOLLOWERS}: missing column 'follow_profile_id'",
    ),
    # wrong types
    "counter-as-string": lambda t: (
        _name(STATS, 301),
        _pq(_column(t[STATS], "total_upvotes", t[STATS].column("total_upvotes").cast(pa.string()))),
        f"{STATS}: column 'total_upvotes' has type string, expected int64",
    ),
    "counter-as-double": lambda t: (
        _name(STATS, 302),
        _pq(
            _column(t[STATS], "total_upvotes", t[STATS].column("total_upvotes").cast(pa.float64()))
        ),
        f"{STATS}: column 'total_upvotes' has type double, expected int64",
    ),
    "counter-as-uint64": lambda t: (
        _name(STATS, 303),
        _pq(_column(t[STATS], "total_upvotes", t[STATS].column("total_upvotes").cast(pa.uint64()))),
        f"{STATS}: column 'total_upvotes' has type uint64, expected int64",
    ),
    "timestamp-naive": lambda t: (
        _name(FOLLOWERS, 304),
        _pq(
            _column(
                t[FOLLOWERS],
                "block_timestamp",
                t[FOLLOWERS].column("block_timestamp").cast(pa.timestamp("us")),
            )
        ),
        rf"{FOLLOWERS}: column 'block_timestamp' has type timestamp\[us\], "
        r"expected timestamp\[us, tz=UTC\]",
    ),
    "timestamp-other-zone": lambda t: (
        _name(POSTS, 305),
        _pq(
            _column(
                t[POSTS],
                "block_timestamp",
                t[POSTS].column("block_timestamp").cast(pa.timestamp("us", tz="Europe/Paris")),
            )
        ),
        rf"{POSTS}: column 'block_timestamp' has type timestamp\[us, tz=Europe/Paris\], "
        r"expected timestamp\[us, tz=UTC\]",
    ),
    "timestamp-as-string": lambda t: (
        _name(PROFILES, 306),
        _pq(
            _column(
                t[PROFILES],
                "block_timestamp",
                t[PROFILES].column("block_timestamp").cast(pa.string()),
            )
        ),
        rf"{PROFILES}: column 'block_timestamp' has type string, expected timestamp\[us, tz=UTC\]",
    ),
    "flag-as-int": lambda t: (
        _name(POSTS, 307),
        _pq(_column(t[POSTS], "is_gated", t[POSTS].column("is_gated").cast(pa.int8()))),
        f"{POSTS}: column 'is_gated' has type int8, expected bool",
    ),
    # null and duplicate keys
    "null-primary-key": lambda t: (
        _name(POSTS, 401),
        _pq(_cell(t[POSTS], "post_id", {7: None})),
        f"{POSTS}: column 'post_id' is null in 1 row, first at row 7",
    ),
    "null-key-part": lambda t: (
        _name(FOLLOWERS, 403),
        _pq(_cell(t[FOLLOWERS], "address", {3: None, 5: None})),
        f"{FOLLOWERS}: column 'address' is null in 2 rows, first at row 3",
    ),
    "null-required-flag": lambda t: (
        _name(POSTS, 404),
        _pq(_cell(t[POSTS], "is_hidden", {2: None})),
        f"{POSTS}: column 'is_hidden' is null in 1 row, first at row 2",
    ),
    "duplicate-composite-key": _dup_followers,
    "duplicate-stats-key": _dup_stats,
    "duplicate-handle": _dup_handle,
    # strings
    "not-utf8-text": lambda t: (
        _name(POSTS, 405),
        _pq(_bad_utf8(t[POSTS], "content", {1: b"caf\xe9 (latin-1)"})),
        f"{POSTS}: column 'content' is not valid UTF-8 in 1 row, first at row 1",
    ),
    "not-utf8-key": lambda t: (
        _name(FOLLOWERS, 406),
        _pq(_bad_utf8(t[FOLLOWERS], "address", {2: b"0x\xc3\x28", 4: b"0x\xff\xfe"})),
        f"{FOLLOWERS}: column 'address' is not valid UTF-8 in 2 rows, first at row 2",
    ),
    "not-utf8-struct-child": _uuid_not_utf8,
    "huge-string": lambda t: (
        _name(POSTS, 407),
        _pq(_cell(t[POSTS], "content", {3: "x" * (MAX_STRING_BYTES + 1)})),
        f"{POSTS}: column 'content' is over {MAX_STRING_BYTES} bytes in 1 row, first at row 3: "
        f"{MAX_STRING_BYTES + 1} bytes",
    ),
    "huge-multibyte-strings": lambda t: (
        _name(PROFILES, 408),
        _pq(_cell(t[PROFILES], "name", {4: "é" * 600_000, 9: "é" * 600_000})),
        f"{PROFILES}: column 'name' is over {MAX_STRING_BYTES} bytes in 2 rows, first at row 4: "
        "1200000 bytes",
    ),
    # time out of range
    "timestamp-1970": lambda t: (
        _name(FOLLOWERS, 601),
        _pq(_cell(t[FOLLOWERS], "block_timestamp", {4: datetime(1970, 1, 1, tzinfo=UTC)})),
        rf"{FOLLOWERS}: column 'block_timestamp' {OUTSIDE} 1 row, first at row 4: "
        r"1970-01-01T00:00:00\+00:00",
    ),
    "timestamp-just-before-2020": lambda t: (
        _name(PROFILES, 602),
        _pq(
            _cell(
                t[PROFILES],
                "metadata_block_timestamp",
                {0: datetime(2019, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},
            )
        ),
        rf"{PROFILES}: column 'metadata_block_timestamp' {OUTSIDE} 1 row, first at row 0: "
        r"2019-12-31T23:59:59\.999999\+00:00",
    ),
    "timestamp-2100": lambda t: (
        _name(POSTS, 603),
        _pq(_cell(t[POSTS], "block_timestamp", {5: datetime(2100, 1, 1, tzinfo=UTC)})),
        rf"{POSTS}: column 'block_timestamp' {OUTSIDE} 1 row, first at row 5: "
        r"2100-01-01T00:00:00\+00:00",
    ),
    "timestamp-overflow": _s_overflow,
    "source-timestamp-far-future": lambda t: (
        _name(STATS, 605),
        _pq(_source_ms(t, 2, 32_503_680_000_000)),  # 3000-01-01 in ms
        rf"{STATS}: column 'datastream_metadata.source_timestamp' {OUTSIDE} 1 row, "
        r"first at row 2: 3000-01-01T00:00:00\+00:00",
    ),
    "source-timestamp-negative": lambda t: (
        _name(STATS, 606),
        _pq(_source_ms(t, 0, -1)),
        rf"{STATS}: column 'datastream_metadata.source_timestamp' {OUTSIDE} 1 row, "
        r"first at row 0: 1969-12-31T23:59:59\.999000\+00:00",
    ),
    "negative-counter": lambda t: (
        _name(STATS, 607),
        _pq(_cell(t[STATS], "total_amount_of_mirrors", {0: -3})),
        f"{STATS}: column 'total_amount_of_mirrors' is negative in 1 row, first at row 0: -3",
    ),
    # object names (the bytes are a good export: the name alone must reject it)
    "name-absolute": _name_case(f"/{_name(POSTS, 701)}", "name is an absolute path"),
    "name-dotdot-escape": _name_case(
        f"lens/{POSTS}/../../../../escaped/20240501T003000Z-000000000702.parquet",
        "name has a '..' component",
    ),
    "name-dotdot-table": _name_case(
        "lens/../20240501T003000Z-000000000703.parquet", "name has a '..' component"
    ),
    "name-nul": _name_case(_name(POSTS, 704, "\x00"), "name contains control character U+0000"),
    "name-tab": _name_case(_name(POSTS, 705, "\t"), "name contains control character U+0009"),
    "name-cr": _name_case(_name(POSTS, 706, "\r"), "name contains control character U+000D"),
    "name-escape": _name_case(
        _name(POSTS, 707, "\x1b[2J"), "name contains control character U+001B"
    ),
    "name-del": _name_case(_name(POSTS, 708, "\x7f"), "name contains control character U+007F"),
    "name-c1-nel": _name_case(_name(POSTS, 709, "\x85"), "name contains control character U+0085"),
    "name-1024-bytes": _name_case(
        _long(MAX_NAME_BYTES), f"name is {MAX_NAME_BYTES} bytes; names must be under 1024"
    ),
    "name-multibyte-over-limit": _name_case(
        f"lens/{POSTS}/" + "é" * 600 + ".parquet", "name is 1233 bytes; names must be under 1024"
    ),
    "name-1023-bytes-off-layout": _name_case(_long(MAX_NAME_BYTES - 1), LAYOUT),
}
