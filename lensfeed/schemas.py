"""The four Lens source tables as Arrow schemas, with validation and conforming.

The tables are the BigQuery exports of ``lens-public-data.polygon.*`` that land in
GCS as Parquet. Column names are the real ones; types are the ones inferred from
the original Spark schemas (see ``shared/reference/lens-domain.md``, section 2).

Canonical types:

- timestamps are ``timestamp[us, tz=UTC]`` (BigQuery ``TIMESTAMP``);
- counters are ``int64``, flags are ``bool``, identifiers and text are ``string``;
- ``datastream_metadata`` is ``struct<uuid: string, source_timestamp: int64>``,
  ``source_timestamp`` in milliseconds since the epoch (Datastream's convention);
- ``tags_vector`` is a ``string``: the column is a PostgreSQL ``tsvector``
  replicated by Datastream, which carries it as its text form (``'defi':1
  'lens':2``). A string is also the lossless choice: a list can be parsed out of
  it downstream, the reverse is not true for the positions.

Required columns are the schema fields with ``nullable=False``: they must hold no
null. Every column of a schema must be present in an export, nullable or not, so
that a dropped column is caught at ingest instead of silently becoming nulls.

Accepted variants (:func:`validate_table` accepts them, :func:`conform_table`
casts them to the canonical type):

- ``int8/16/32`` and ``uint8/16/32`` for ``int64`` (lossless widening);
  ``uint64`` is refused (it may not fit);
- timestamps of any unit (``s``, ``ms``, ``us``, ``ns``) whose zone is UTC
  (``UTC``, ``Etc/UTC``, ``+00:00``, ``Z``); nanoseconds are truncated to
  microseconds, which BigQuery cannot hold anyway. Zone-naive timestamps are
  refused: their meaning depends on the writer;
- ``large_string``, ``string_view`` and dictionary-encoded strings for ``string``;
- a column of Arrow type ``null`` (an all-null column written without a type);
- a ``datastream_metadata`` struct with extra fields (they are dropped).

:func:`conform_table` keeps the canonical columns only, in canonical order, and
drops unknown extra columns: downstream code can rely on the exact schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

POSTS = "public_profile_post"
STATS = "public_publication_stats"
PROFILES = "public_profile"
FOLLOWERS = "public_follower"

TIMESTAMP = pa.timestamp("us", tz="UTC")
DATASTREAM_METADATA = pa.struct(
    [pa.field("uuid", pa.string()), pa.field("source_timestamp", pa.int64())]
)

#: Timestamps must lie in [MIN_TIMESTAMP, MAX_TIMESTAMP).
MIN_TIMESTAMP = datetime(2020, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
#: A single string cell larger than this (in UTF-8 bytes) is flagged.
MAX_STRING_BYTES = 1 << 20

_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "+00:00", "Z", "utc"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _required(name: str, dtype: Any) -> Any:
    return pa.field(name, dtype, nullable=False)


def _optional(name: str, dtype: Any) -> Any:
    return pa.field(name, dtype, nullable=True)


@dataclass(frozen=True)
class TableSpec:
    """One source table: its canonical schema, grain and keys."""

    name: str
    grain: str
    schema: Any  # pyarrow.Schema
    primary_key: tuple[str, ...]
    unique: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        """Columns that must hold no null."""
        return tuple(f.name for f in self.schema if not f.nullable)

    @property
    def columns(self) -> tuple[str, ...]:
        """Canonical column names, in order."""
        return tuple(f.name for f in self.schema)


POSTS_SPEC = TableSpec(
    name=POSTS,
    grain="one row per post or mirror (comments live elsewhere)",
    schema=pa.schema(
        [
            _required("post_id", pa.string()),
            _required("profile_id", pa.string()),
            _optional("contract_publication_id", pa.string()),
            _optional("content_uri", pa.string()),
            _optional("is_related_to_post", pa.string()),
            _optional("is_related_to_comment", pa.string()),
            # the three filter flags are required: the feed must never guess
            # whether a post is hidden, gated or flagged
            _required("is_hidden", pa.bool_()),
            _required("is_gated", pa.bool_()),
            _required("custom_filters_gardener_flagged", pa.bool_()),
            _optional("is_metadata_processed", pa.bool_()),
            _optional("has_error", pa.bool_()),
            _optional("is_data_availability", pa.bool_()),
            _required("block_timestamp", TIMESTAMP),
            _optional("language", pa.string()),
            _optional("region", pa.string()),
            _optional("content_warning", pa.string()),
            _optional("main_content_focus", pa.string()),
            _optional("tags_vector", pa.string()),
            _optional("content", pa.string()),
            _optional("app_id", pa.string()),
            _optional("datastream_metadata", DATASTREAM_METADATA),
        ]
    ),
    primary_key=("post_id",),
)

STATS_SPEC = TableSpec(
    name=STATS,
    grain="one row per publication (latest counters); exports repeat a publication as it grows",
    schema=pa.schema(
        [
            _required("publication_id", pa.string()),
            _required("total_amount_of_collects", pa.int64()),
            _required("total_amount_of_mirrors", pa.int64()),
            _required("total_amount_of_comments", pa.int64()),
            _required("total_upvotes", pa.int64()),
            _required("total_downvotes", pa.int64()),
            _optional("datastream_metadata", DATASTREAM_METADATA),
        ]
    ),
    primary_key=("publication_id",),
)

PROFILES_SPEC = TableSpec(
    name=PROFILES,
    grain="one row per profile",
    schema=pa.schema(
        [
            _required("profile_id", pa.string()),
            # nullable: profiles without a handle exist; unique when present
            _optional("handle", pa.string()),
            _required("owned_by", pa.string()),
            _optional("name", pa.string()),
            _optional("is_burnt", pa.bool_()),
            _optional("is_default", pa.bool_()),
            _required("block_timestamp", TIMESTAMP),
            _optional("metadata_block_timestamp", TIMESTAMP),
        ]
    ),
    primary_key=("profile_id",),
    unique=("handle",),
)

FOLLOWERS_SPEC = TableSpec(
    name=FOLLOWERS,
    grain="one row per (follower wallet, followed profile), current state",
    schema=pa.schema(
        [
            _required("address", pa.string()),
            _required("follow_profile_id", pa.string()),
            _required("block_timestamp", TIMESTAMP),
            _optional("is_finalised_on_chain", pa.bool_()),
        ]
    ),
    primary_key=("address", "follow_profile_id"),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (POSTS_SPEC, STATS_SPEC, PROFILES_SPEC, FOLLOWERS_SPEC)
}
SCHEMAS: dict[str, Any] = {name: spec.schema for name, spec in TABLES.items()}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {name: spec.primary_key for name, spec in TABLES.items()}


class SchemaError(ValueError):
    """A table cannot be conformed; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def table_spec(table_name: str) -> TableSpec:
    """The spec of a source table; ValueError naming the known tables otherwise."""
    try:
        return TABLES[table_name]
    except KeyError:
        known = ", ".join(sorted(TABLES))
        raise ValueError(f"unknown table {table_name!r}; known tables: {known}") from None


def _is_string(dtype: Any) -> bool:
    return bool(
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
    )


def _accepts(expected: Any, actual: Any) -> bool:
    """Whether a column of type ``actual`` can be conformed to ``expected`` losslessly."""
    if actual.equals(expected) or pa.types.is_null(actual):
        return True
    if pa.types.is_dictionary(actual):
        return _is_string(expected) and _is_string(actual.value_type)
    if _is_string(expected):
        return _is_string(actual)
    if pa.types.is_int64(expected):
        return bool(
            pa.types.is_signed_integer(actual)
            or (pa.types.is_unsigned_integer(actual) and actual.bit_width < 64)
        )
    if pa.types.is_timestamp(expected):
        return bool(pa.types.is_timestamp(actual) and actual.tz in _UTC_ZONES)
    if pa.types.is_struct(expected):
        if not pa.types.is_struct(actual):
            return False
        names = [actual.field(i).name for i in range(actual.num_fields)]
        for i in range(expected.num_fields):
            child = expected.field(i)
            if names.count(child.name) != 1:
                return False
            if not _accepts(child.type, actual.field(child.name).type):
                return False
        return True
    return False


def _conform_array(array: Any, expected: Any) -> Any:
    """Cast one (chunk of a) column already accepted by :func:`_accepts`."""
    if array.type.equals(expected):
        return array
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), type=expected)
    if pa.types.is_struct(expected):
        children = [
            _conform_array(array.field(expected.field(i).name), expected.field(i).type)
            for i in range(expected.num_fields)
        ]
        fields = [expected.field(i) for i in range(expected.num_fields)]
        mask = array.is_null() if array.null_count else None
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)
    options = pc.CastOptions(expected, allow_time_truncate=True)
    return pc.cast(array, options=options)


def _conform_column(column: Any, expected: Any) -> Any:
    chunks = [_conform_array(chunk, expected) for chunk in column.chunks]
    return pa.chunked_array(chunks, type=expected)


def _structure(spec: TableSpec, table: Any) -> tuple[dict[str, Any], list[str]]:
    """Conformed columns that are present with an accepted type, plus the problems."""
    problems: list[str] = []
    columns: dict[str, Any] = {}
    names = list(table.column_names)
    for field in spec.schema:
        count = names.count(field.name)
        if count == 0:
            problems.append(f"{spec.name}: missing column '{field.name}'")
            continue
        if count > 1:
            problems.append(f"{spec.name}: column '{field.name}' appears {count} times")
            continue
        column = table.column(field.name)
        if not _accepts(field.type, column.type):
            problems.append(
                f"{spec.name}: column '{field.name}' has type {column.type}, expected {field.type}"
            )
            continue
        try:
            columns[field.name] = _conform_column(column, field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problems.append(
                f"{spec.name}: column '{field.name}' cannot be cast to {field.type}: {exc}"
            )
    return columns, problems


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def _first_true(mask: Any) -> int:
    return int(pc.index(mask, True).as_py())


def _null_problems(spec: TableSpec, columns: dict[str, Any]) -> list[str]:
    problems = []
    for name in spec.required:
        column = columns.get(name)
        if column is None or column.null_count == 0:
            continue
        first = _first_true(column.is_null())
        problems.append(
            f"{spec.name}: column '{name}' is null in {_rows(column.null_count)}, "
            f"first at row {first}"
        )
    return problems


#: Struct children holding a time as milliseconds since the epoch (Datastream's
#: ``source_timestamp``): range-checked like the timestamp columns.
_MILLISECOND_TIMES = (("datastream_metadata", "source_timestamp"),)
_MS = timedelta(milliseconds=1)


def _child(column: Any, name: str) -> Any:
    """A struct column's child as one chunked array, null where the struct is null."""
    index = column.type.get_field_index(name)
    chunks = [chunk.flatten()[index] for chunk in column.chunks]
    return pa.chunked_array(chunks, type=column.type.field(index).type)


def _format_timestamp(value: Any) -> str:
    """A timestamp scalar, or an int64 scalar of milliseconds since the epoch, as ISO 8601."""
    if pa.types.is_timestamp(value.type):
        micros = value.cast(pa.int64()).as_py()
    else:
        micros = value.as_py() * 1000
    try:
        return (_EPOCH + timedelta(microseconds=micros)).isoformat()
    except OverflowError:
        return f"{micros} us since 1970-01-01"


def _time_columns(spec: TableSpec, columns: dict[str, Any]) -> Iterator[tuple[str, Any, Any, Any]]:
    """(name, values, low, high) of every timestamp column and millisecond struct child."""
    for field in spec.schema:
        column = columns.get(field.name)
        if column is not None and pa.types.is_timestamp(field.type):
            low, high = (pa.scalar(t, type=TIMESTAMP) for t in (MIN_TIMESTAMP, MAX_TIMESTAMP))
            yield field.name, column, low, high
    for parent, child in _MILLISECOND_TIMES:
        column = columns.get(parent)
        if column is not None:
            low, high = (pa.scalar((t - _EPOCH) // _MS) for t in (MIN_TIMESTAMP, MAX_TIMESTAMP))
            yield f"{parent}.{child}", _child(column, child), low, high


def _range_problems(spec: TableSpec, columns: dict[str, Any]) -> list[str]:
    problems = []
    for name, column, low, high in _time_columns(spec, columns):
        outside = pc.fill_null(pc.or_(pc.less(column, low), pc.greater_equal(column, high)), False)
        count = pc.sum(outside).as_py() or 0
        if count == 0:
            continue
        first = _first_true(outside)
        problems.append(
            f"{spec.name}: column '{name}' is outside "
            f"[{MIN_TIMESTAMP.date()}, {MAX_TIMESTAMP.date()}) in {_rows(count)}, "
            f"first at row {first}: {_format_timestamp(column[first])}"
        )
    return problems


def _invalid_utf8(column: Any) -> tuple[int, int]:
    """How many values of a string column are not valid UTF-8, and the first one's row.

    Parquet readers do not check UTF-8: Arrow's full validation finds a bad chunk
    cheaply, and only such a chunk is decoded value by value.
    """
    count, first, offset = 0, -1, 0
    for chunk in column.chunks:
        try:
            chunk.validate(full=True)
        except pa.ArrowInvalid:
            for i, value in enumerate(chunk.cast(pa.binary()).to_pylist()):
                try:
                    if value is not None:
                        value.decode("utf-8")
                except UnicodeDecodeError:
                    count += 1
                    first = offset + i if first < 0 else first
        offset += len(chunk)
    return count, first


def _string_columns(spec: TableSpec, columns: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, column) of every string column, struct children as ``parent.child``."""
    for field in spec.schema:
        column = columns.get(field.name)
        if column is None:
            continue
        if pa.types.is_string(field.type):
            yield field.name, column
        elif pa.types.is_struct(field.type):
            for i in range(field.type.num_fields):
                child = field.type.field(i)
                if pa.types.is_string(child.type):
                    yield f"{field.name}.{child.name}", _child(column, child.name)


def _value_problems(spec: TableSpec, columns: dict[str, Any]) -> list[str]:
    """Strings that are not UTF-8, oversized strings and negative counters."""
    problems = []
    for name, column in _string_columns(spec, columns):
        count, first = _invalid_utf8(column)
        if count:
            problems.append(
                f"{spec.name}: column '{name}' is not valid UTF-8 in {_rows(count)}, "
                f"first at row {first}"
            )
    for field in spec.schema:
        column = columns.get(field.name)
        if column is None:
            continue
        if pa.types.is_string(field.type):
            over = pc.fill_null(pc.greater(pc.binary_length(column), MAX_STRING_BYTES), False)
            count = pc.sum(over).as_py() or 0
            if count:
                first = _first_true(over)
                size = pc.binary_length(column[first]).as_py()
                problems.append(
                    f"{spec.name}: column '{field.name}' is over {MAX_STRING_BYTES} bytes "
                    f"in {_rows(count)}, first at row {first}: {size} bytes"
                )
        elif pa.types.is_int64(field.type):
            negative = pc.fill_null(pc.less(column, 0), False)
            count = pc.sum(negative).as_py() or 0
            if count:
                first = _first_true(negative)
                problems.append(
                    f"{spec.name}: column '{field.name}' is negative in {_rows(count)}, "
                    f"first at row {first}: {column[first].as_py()}"
                )
    return problems


def _duplicate_problem(
    spec: TableSpec, columns: dict[str, Any], keys: tuple[str, ...], label: str
) -> list[str]:
    if any(key not in columns for key in keys):
        return []
    frame = pa.table({key: columns[key] for key in keys})
    not_null = None
    for key in keys:
        valid = pc.is_valid(frame.column(key))
        not_null = valid if not_null is None else pc.and_(not_null, valid)
    frame = frame.filter(not_null)
    counts = frame.group_by(list(keys), use_threads=False).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if repeated.num_rows == 0:
        return []
    example = ", ".join(f"{key}={repeated.column(key)[0].as_py()!r}" for key in keys)
    shared = repeated.column("count_all")[0].as_py()
    noun = label.split()[-1]
    total = f"1 {noun}" if repeated.num_rows == 1 else f"{repeated.num_rows} {noun}s"
    return [f"{spec.name}: duplicate {label} {example} in {shared} rows ({total} repeated)"]


def validate_table(table_name: str, table: Any) -> list[str]:
    """Check one export of a source table against its canonical schema.

    Args:
        table_name: one of :data:`TABLES` (e.g. ``"public_profile_post"``).
        table: the ``pyarrow.Table`` read from an export object.

    Returns:
        Readable problems, empty when the table is accepted: missing or repeated
        columns, unacceptable types, nulls in required columns (first row index),
        duplicate primary keys or handles (an example key), timestamps (and
        ``datastream_metadata.source_timestamp``, in milliseconds) outside
        [2020-01-01, 2100-01-01) (column and first row), strings that are not
        valid UTF-8 (column and first row), strings over 1 MiB in one cell and
        negative counters. Value checks skip columns whose type failed.

    Raises:
        ValueError: ``table_name`` is not a known source table.
    """
    spec = table_spec(table_name)
    columns, problems = _structure(spec, table)
    problems += _null_problems(spec, columns)
    problems += _duplicate_problem(spec, columns, spec.primary_key, "primary key")
    for column in spec.unique:
        problems += _duplicate_problem(spec, columns, (column,), "value")
    problems += _range_problems(spec, columns)
    problems += _value_problems(spec, columns)
    return problems


def conform_table(table_name: str, table: Any) -> Any:
    """Cast an accepted export to the canonical schema of its table.

    Keeps the canonical columns only, in canonical order, with canonical types
    and nullability; unknown extra columns are dropped and schema metadata is
    cleared. Only structure and required nulls are checked here (cheap); run
    :func:`validate_table` for keys, ranges and sizes.

    Args:
        table_name: one of :data:`TABLES`.
        table: a ``pyarrow.Table``; it is not modified.

    Returns:
        A new ``pyarrow.Table`` whose schema equals ``SCHEMAS[table_name]``.

    Raises:
        SchemaError: a column is missing, repeated, of an unacceptable type, or a
            required column holds nulls.
        ValueError: ``table_name`` is not a known source table.
    """
    spec = table_spec(table_name)
    columns, problems = _structure(spec, table)
    problems += _null_problems(spec, columns)
    if problems:
        raise SchemaError(problems)
    return pa.Table.from_arrays([columns[name] for name in spec.columns], schema=spec.schema)


#: Columns ``predict`` copies from the features into the predictions for ``feed``: the
#: contract between the two stages (``post_id``, ``label`` and probabilities come first).
FEED_PASSTHROUGH: tuple[str, ...] = (
    "block_timestamp",
    "feature_time",
    "is_original",
    "content_warning",
    "is_hidden",
    "is_gated",
    "custom_filters_gardener_flagged",
    "has_error",
    "upvotes",
    "mirrors",
    "comments",
    "collects",
)
