"""Tiny input rows and frames for the feature tests, and ingest partitions built from them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.parquet as pq

from lensfeed import frames
from lensfeed.schemas import POSTS_SPEC, STATS_SPEC, TABLES, TIMESTAMP

FEATURE_TIME = datetime(2024, 5, 10, tzinfo=UTC)
T1 = datetime(2024, 5, 9, 1, tzinfo=UTC)
T2 = datetime(2024, 5, 9, 2, tzinfo=UTC)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def post(
    post_id: str,
    block_timestamp: str,
    *,
    dtime: datetime = T1,
    related_post: str | None = None,
    related_comment: str | None = None,
    content_warning: str | None = None,
    language: str | None = "en",
    source_ms: int = 0,
    hidden: bool = False,
    has_error: bool | None = False,
) -> dict[str, Any]:
    """A public_profile_post row (author = the id before the dash) plus ``dtime``."""
    return {
        "post_id": post_id,
        "profile_id": post_id.split("-")[0],
        "is_related_to_post": related_post,
        "is_related_to_comment": related_comment,
        "is_hidden": hidden,
        "is_gated": post_id.endswith("3"),
        "custom_filters_gardener_flagged": False,
        "has_error": has_error,
        "block_timestamp": ts(block_timestamp),
        "language": language,
        "region": None,
        "content_warning": content_warning,
        "main_content_focus": "TEXT_ONLY",
        "datastream_metadata": {"uuid": f"u-{post_id}-{source_ms}", "source_timestamp": source_ms},
        "dtime": dtime,
    }


def stat(
    publication_id: str,
    collects: int = 0,
    mirrors: int = 0,
    comments: int = 0,
    upvotes: int = 0,
    downvotes: int = 0,
    *,
    source_ms: int = 0,
    dtime: datetime = T1,
) -> dict[str, Any]:
    return {
        "publication_id": publication_id,
        "total_amount_of_collects": collects,
        "total_amount_of_mirrors": mirrors,
        "total_amount_of_comments": comments,
        "total_upvotes": upvotes,
        "total_downvotes": downvotes,
        "datastream_metadata": {
            "uuid": f"s-{publication_id}-{source_ms}",
            "source_timestamp": source_ms,
        },
        "dtime": dtime,
    }


def _frame(session: Any, spec: Any, rows: list[dict[str, Any]]) -> Any:
    """Rows in the canonical schema of ``spec`` plus ``dtime`` (UTC timestamp)."""
    schema = spec.schema.append(pa.field("dtime", TIMESTAMP))
    table = pa.Table.from_pylist([{n: row.get(n) for n in schema.names} for row in rows], schema)
    return frames.from_arrow(session, table)


def posts_frame(session: Any, rows: list[dict[str, Any]]) -> Any:
    return _frame(session, POSTS_SPEC, rows)


def stats_frame(session: Any, rows: list[dict[str, Any]]) -> Any:
    return _frame(session, STATS_SPEC, rows)


def tuples_frame(session: Any, schema: pa.Schema, rows: list[tuple[Any, ...]]) -> Any:
    """``rows`` (values in ``schema``'s column order) as a frame of exactly that schema."""
    records = [dict(zip(schema.names, row, strict=True)) for row in rows]
    return frames.from_arrow(session, pa.Table.from_pylist(records, schema))


TRUST_SCHEMA = pa.schema(
    [("strategy_name", pa.string()), ("i", pa.string()), ("v", pa.float64()), ("rank", pa.int64())]
)


def trust_frame(session: Any, rows: list[tuple[str, float, int]]) -> Any:
    return tuples_frame(session, TRUST_SCHEMA, [("followship", i, v, r) for i, v, r in rows])


def counters(names: str) -> pa.Schema:
    """``post_id`` (string) and int64 columns, named in one space-separated string."""
    return pa.schema([(n, pa.string() if n == "post_id" else pa.int64()) for n in names.split()])


def collect(frame: Any, columns: list[str]) -> pd.DataFrame:
    """A small result as pandas (through Arrow: exact types), ordered by its first column."""
    table = frame.select(*columns).toArrow()
    return table.to_pandas().sort_values(columns[0]).reset_index(drop=True)


def utc(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


def write_partition(root: Path, table: str, tick: datetime, rows: list[dict[str, Any]]) -> None:
    """One ingest partition: ``root/<table>/dtime=<tick>/<object>.parquet``, conformed."""
    directory = root / table / f"dtime={tick:%Y-%m-%dT%H:%M:%SZ}"
    directory.mkdir(parents=True, exist_ok=True)
    schema = TABLES[table].schema
    frame = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)
    pq.write_table(frame, directory / f"{tick:%Y%m%dT%H%M%SZ}-0.parquet")
