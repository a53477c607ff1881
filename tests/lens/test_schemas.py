"""Tests of lensfeed.schemas: canonical schemas, validate_table and conform_table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from lensfeed.schemas import (
    DATASTREAM_METADATA,
    FOLLOWERS,
    MAX_STRING_BYTES,
    POSTS,
    PRIMARY_KEYS,
    PROFILES,
    SCHEMAS,
    STATS,
    TABLES,
    TIMESTAMP,
    SchemaError,
    conform_table,
    validate_table,
)

T0 = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2023, 5, 1, 13, 0, tzinfo=UTC)
T2 = datetime(2023, 5, 2, 9, 30, tzinfo=UTC)


def _datastream(n: int) -> Any:
    return pa.array(
        [{"uuid": f"u{i}", "source_timestamp": 1_682_942_400_000 + i} for i in range(n)],
        type=DATASTREAM_METADATA,
    )


def _posts() -> Any:
    """Three posts; the third mirrors the first."""
    columns: dict[str, Any] = {
        "post_id": ["0x01-0x01", "0x01137e-0x01a8", "0x05-0x02"],
        "profile_id": ["0x01", "0x01137e", "0x05"],
        "contract_publication_id": ["0x01", "0x01a8", "0x02"],
        "content_uri": ["ipfs://a", "ar://b", None],
        "is_related_to_post": [None, None, "0x01-0x01"],
        "is_related_to_comment": [None, None, None],
        "is_hidden": [False, False, True],
        "is_gated": [False, True, False],
        "custom_filters_gardener_flagged": [False, False, False],
        "is_metadata_processed": [True, True, None],
        "has_error": [False, False, False],
        "is_data_availability": [False, True, False],
        "block_timestamp": [T0, T1, T2],
        "language": ["en", None, "fr"],
        "region": [None, None, None],
        "content_warning": [None, "NSFW", None],
        "main_content_focus": ["TEXT_ONLY", "IMAGE", "VIDEO"],
        "tags_vector": ["'lens':1", None, None],
        "content": ["gm", "hello", None],
        "app_id": ["lenster", None, "orb"],
        "datastream_metadata": _datastream(3),
    }
    return pa.table(columns, schema=SCHEMAS[POSTS])


def _stats() -> Any:
    return pa.table(
        {
            "publication_id": ["0x01-0x01", "0x01137e-0x01a8"],
            "total_amount_of_collects": [0, 12],
            "total_amount_of_mirrors": [1, 40],
            "total_amount_of_comments": [0, 7],
            "total_upvotes": [3, 900],
            "total_downvotes": [0, 2],
            "datastream_metadata": _datastream(2),
        },
        schema=SCHEMAS[STATS],
    )


def _profiles() -> Any:
    return pa.table(
        {
            "profile_id": ["0x01", "0x05", "0x01137e"],
            "handle": ["lensprotocol.lens", "stani.lens", None],
            "owned_by": ["0x" + "a" * 40, "0x" + "b" * 40, "0x" + "b" * 40],
            "name": ["Lens Protocol", None, "x"],
            "is_burnt": [False, False, True],
            "is_default": [True, True, False],
            "block_timestamp": [T0, T0, T1],
            "metadata_block_timestamp": [T1, None, None],
        },
        schema=SCHEMAS[PROFILES],
    )


def _followers() -> Any:
    return pa.table(
        {
            "address": ["0x" + "a" * 40, "0x" + "a" * 40, "0x" + "c" * 40],
            "follow_profile_id": ["0x05", "0x01137e", "0x05"],
            "block_timestamp": [T0, T1, T2],
            "is_finalised_on_chain": [True, True, None],
        },
        schema=SCHEMAS[FOLLOWERS],
    )


TINY = {POSTS: _posts, STATS: _stats, PROFILES: _profiles, FOLLOWERS: _followers}


def _replace(table: Any, name: str, values: Any) -> Any:
    index = table.schema.get_field_index(name)
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    return table.set_column(index, pa.field(name, array.type), array)


def test_schemas_use_the_real_columns_and_inferred_types() -> None:
    posts = SCHEMAS[POSTS]
    assert posts.field("block_timestamp").type == pa.timestamp("us", tz="UTC")
    assert posts.field("is_hidden").type == pa.bool_()
    assert posts.field("tags_vector").type == pa.string()
    assert posts.field("datastream_metadata").type == pa.struct(
        [("uuid", pa.string()), ("source_timestamp", pa.int64())]
    )
    assert SCHEMAS[STATS].field("total_upvotes").type == pa.int64()
    assert SCHEMAS[PROFILES].names == [
        "profile_id",
        "handle",
        "owned_by",
        "name",
        "is_burnt",
        "is_default",
        "block_timestamp",
        "metadata_block_timestamp",
    ]
    assert PRIMARY_KEYS == {
        POSTS: ("post_id",),
        STATS: ("publication_id",),
        PROFILES: ("profile_id",),
        FOLLOWERS: ("address", "follow_profile_id"),
    }


def test_required_columns_are_the_keys_timestamps_flags_and_counters() -> None:
    assert TABLES[POSTS].required == (
        "post_id",
        "profile_id",
        "is_hidden",
        "is_gated",
        "custom_filters_gardener_flagged",
        "block_timestamp",
    )
    assert TABLES[STATS].required == tuple(SCHEMAS[STATS].names[:6])
    assert TABLES[PROFILES].required == ("profile_id", "owned_by", "block_timestamp")
    assert TABLES[FOLLOWERS].required == ("address", "follow_profile_id", "block_timestamp")


@pytest.mark.parametrize("table_name", sorted(TINY))
def test_valid_tables_have_no_problems(table_name: str) -> None:
    assert validate_table(table_name, TINY[table_name]()) == []


def test_unknown_table_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown table 'public_comment'"):
        validate_table("public_comment", _stats())


def test_missing_column_is_named() -> None:
    table = _posts().drop_columns(["is_gated", "language"])
    assert validate_table(POSTS, table) == [
        "public_profile_post: missing column 'is_gated'",
        "public_profile_post: missing column 'language'",
    ]


def test_wrong_type_names_column_and_both_types() -> None:
    table = _replace(_posts(), "is_hidden", ["false", "false", "true"])
    assert validate_table(POSTS, table) == [
        "public_profile_post: column 'is_hidden' has type string, expected bool"
    ]


def test_naive_timestamp_and_uint64_are_refused() -> None:
    naive = _replace(
        _followers(), "block_timestamp", pa.array([T0, T1, T2]).cast(pa.timestamp("us"))
    )
    assert validate_table(FOLLOWERS, naive) == [
        "public_follower: column 'block_timestamp' has type timestamp[us], "
        "expected timestamp[us, tz=UTC]"
    ]
    unsigned = _replace(_stats(), "total_upvotes", pa.array([3, 900], type=pa.uint64()))
    assert validate_table(STATS, unsigned) == [
        "public_publication_stats: column 'total_upvotes' has type uint64, expected int64"
    ]


def test_null_in_required_column_names_first_row() -> None:
    table = _replace(_posts(), "post_id", ["0x01-0x01", None, None])
    assert validate_table(POSTS, table) == [
        "public_profile_post: column 'post_id' is null in 2 rows, first at row 1"
    ]


def test_null_in_optional_column_is_fine() -> None:
    table = _replace(_posts(), "language", pa.array([None, None, None], type=pa.string()))
    assert validate_table(POSTS, table) == []


def test_duplicate_primary_key_names_an_example() -> None:
    table = _replace(_posts(), "post_id", ["0x05-0x02", "0x01-0x01", "0x05-0x02"])
    assert validate_table(POSTS, table) == [
        "public_profile_post: duplicate primary key post_id='0x05-0x02' in 2 rows (1 key repeated)"
    ]


def test_duplicate_composite_key() -> None:
    table = _replace(_followers(), "follow_profile_id", ["0x05", "0x05", "0x05"])
    assert validate_table(FOLLOWERS, table) == [
        "public_follower: duplicate primary key "
        f"address='0x{'a' * 40}', follow_profile_id='0x05' in 2 rows (1 key repeated)"
    ]


def test_duplicate_handle_is_flagged_but_null_handles_are_not() -> None:
    table = _replace(_profiles(), "handle", ["stani.lens", "stani.lens", None])
    assert validate_table(PROFILES, table) == [
        "public_profile: duplicate value handle='stani.lens' in 2 rows (1 value repeated)"
    ]
    no_handles = _replace(_profiles(), "handle", pa.array([None, None, None], type=pa.string()))
    assert validate_table(PROFILES, no_handles) == []


def test_timestamp_out_of_range_names_column_and_row() -> None:
    early = datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC)
    late = datetime(2100, 1, 1, tzinfo=UTC)
    table = _replace(_posts(), "block_timestamp", pa.array([T0, early, late], type=TIMESTAMP))
    assert validate_table(POSTS, table) == [
        "public_profile_post: column 'block_timestamp' is outside [2020-01-01, 2100-01-01) "
        "in 2 rows, first at row 1: 2019-12-31T23:59:59+00:00"
    ]


def test_optional_timestamp_out_of_range_is_flagged_too() -> None:
    table = _replace(
        _profiles(),
        "metadata_block_timestamp",
        pa.array([None, None, datetime(1970, 1, 1, tzinfo=UTC)], type=TIMESTAMP),
    )
    assert validate_table(PROFILES, table) == [
        "public_profile: column 'metadata_block_timestamp' is outside "
        "[2020-01-01, 2100-01-01) in 1 row, first at row 2: 1970-01-01T00:00:00+00:00"
    ]


def test_huge_string_is_flagged() -> None:
    table = _replace(_posts(), "content", ["gm", None, "x" * (MAX_STRING_BYTES + 1)])
    assert validate_table(POSTS, table) == [
        "public_profile_post: column 'content' is over 1048576 bytes in 1 row, "
        "first at row 2: 1048577 bytes"
    ]
    at_limit = _replace(_posts(), "content", ["gm", None, "x" * MAX_STRING_BYTES])
    assert validate_table(POSTS, at_limit) == []


def test_negative_counter_is_flagged() -> None:
    table = _replace(_stats(), "total_downvotes", [0, -2])
    assert validate_table(STATS, table) == [
        "public_publication_stats: column 'total_downvotes' is negative in 1 row, "
        "first at row 1: -2"
    ]


def test_repeated_column_is_flagged() -> None:
    table = _stats().append_column("total_upvotes", pa.array([1, 2]))
    assert validate_table(STATS, table) == [
        "public_publication_stats: column 'total_upvotes' appears 2 times"
    ]


def test_several_problems_are_all_reported() -> None:
    table = _replace(_stats(), "publication_id", ["0x01-0x01", None]).drop_columns(
        ["total_upvotes"]
    )
    assert validate_table(STATS, table) == [
        "public_publication_stats: missing column 'total_upvotes'",
        "public_publication_stats: column 'publication_id' is null in 1 row, first at row 1",
    ]


def _widened_stats() -> Any:
    """The tiny stats table as another writer might produce it."""
    struct = pa.array(
        [
            {"source_timestamp": 1_682_942_400_000, "uuid": "u0", "extra": 1},
            {"source_timestamp": 1_682_942_400_001, "uuid": "u1", "extra": 2},
        ]
    )
    return pa.table(
        {
            "total_downvotes": pa.array([0, 2], type=pa.int8()),
            "publication_id": pa.array(["0x01-0x01", "0x01137e-0x01a8"]).dictionary_encode(),
            "total_amount_of_collects": pa.array([0, 12], type=pa.int32()),
            "total_amount_of_mirrors": pa.array([1, 40], type=pa.uint32()),
            "total_amount_of_comments": pa.array([0, 7], type=pa.int16()),
            "total_upvotes": pa.array([3, 900], type=pa.int64()),
            "datastream_metadata": struct,
            "ingested_by": ["x", "y"],
        }
    )


def test_safe_widening_is_accepted_and_conformed() -> None:
    table = _widened_stats()
    assert validate_table(STATS, table) == []
    conformed = conform_table(STATS, table)
    assert conformed.schema.equals(SCHEMAS[STATS])
    assert conformed.equals(_stats())


def test_timestamp_units_zones_and_string_kinds_are_conformed() -> None:
    original = _followers()
    table = pa.table(
        {
            "address": original.column("address").cast(pa.large_string()),
            "follow_profile_id": original.column("follow_profile_id"),
            "block_timestamp": original.column("block_timestamp").cast(
                pa.timestamp("ns", tz="Etc/UTC")
            ),
            "is_finalised_on_chain": original.column("is_finalised_on_chain"),
        }
    )
    assert validate_table(FOLLOWERS, table) == []
    assert conform_table(FOLLOWERS, table).equals(original)


def test_nanoseconds_are_truncated_to_microseconds() -> None:
    nanos = pa.array([1_682_942_400_000_000_999], type=pa.timestamp("ns", tz="UTC"))
    table = _followers().slice(0, 1)
    table = _replace(table, "block_timestamp", nanos)
    conformed = conform_table(FOLLOWERS, table)
    assert conformed.column("block_timestamp").to_pylist() == [
        datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    ]


def test_all_null_column_of_null_type_is_accepted() -> None:
    table = _replace(_posts(), "region", pa.nulls(3))
    assert validate_table(POSTS, table) == []
    assert conform_table(POSTS, table).equals(_posts())


def test_conform_keeps_canonical_columns_in_order_and_leaves_input_alone() -> None:
    posts = _posts()
    shuffled = posts.select(list(reversed(posts.column_names))).append_column(
        "_export_time", pa.array([1, 2, 3])
    )
    before = shuffled.schema
    conformed = conform_table(POSTS, shuffled)
    assert conformed.equals(posts)
    assert conformed.schema.equals(SCHEMAS[POSTS], check_metadata=True)
    assert shuffled.schema.equals(before)
    assert "_export_time" in shuffled.column_names


def test_conform_refuses_what_validate_reports() -> None:
    table = _replace(_posts(), "post_id", ["a", None, "c"]).drop_columns(["content"])
    with pytest.raises(SchemaError) as raised:
        conform_table(POSTS, table)
    assert raised.value.problems == [
        "public_profile_post: missing column 'content'",
        "public_profile_post: column 'post_id' is null in 1 row, first at row 1",
    ]


def test_struct_missing_a_field_is_refused() -> None:
    struct = pa.array([{"uuid": "u0"}, {"uuid": "u1"}])
    table = _replace(_stats(), "datastream_metadata", struct)
    assert validate_table(STATS, table) == [
        "public_publication_stats: column 'datastream_metadata' has type struct<uuid: string>, "
        "expected struct<uuid: string, source_timestamp: int64>"
    ]


def test_null_structs_survive_conforming() -> None:
    struct = pa.array([None, {"uuid": "u1", "source_timestamp": 5, "x": 1}])
    table = _replace(_stats(), "datastream_metadata", struct)
    conformed = conform_table(STATS, table)
    assert conformed.column("datastream_metadata").to_pylist() == [
        None,
        {"uuid": "u1", "source_timestamp": 5},
    ]


def test_empty_table_is_valid() -> None:
    empty = SCHEMAS[FOLLOWERS].empty_table()
    assert validate_table(FOLLOWERS, empty) == []
    assert conform_table(FOLLOWERS, empty).num_rows == 0
