"""Generated inputs laid out the way the pipelines see them under ``/pfs``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lensfeed.generate import generate_dataset, plan_exports
from lensfeed.schemas import POSTS, PROFILES, STATS


def write_features_inputs(
    root: Path, posts: int, seed: int, start: datetime, end: datetime, trust_every: int
) -> None:
    """Posts and stats in ingest's ``<table>/dtime=<T>/`` layout under ``root/ingest``, and
    ``root/trust/trust.parquet`` scoring every ``trust_every``-th profile."""
    dataset = generate_dataset(posts, seed, start, end)
    for obj in plan_exports(dataset, start, end, 1, seed):
        if obj.table in (POSTS, STATS):
            directory = root / "ingest" / obj.table / f"dtime={obj.export_time:%Y-%m-%dT%H:%M:%SZ}"
            directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(obj.table_data, directory / obj.name.rsplit("/", 1)[1])
    write_trust(root / "trust", dataset[PROFILES].column("profile_id").to_pylist()[::trust_every])


def write_trust(directory: Path, ids: Sequence[str]) -> None:
    """A ``trust.parquet`` ranking ``ids`` in order, with decreasing scores."""
    trust = pa.table(
        {
            "strategy_name": ["followship"] * len(ids),
            "i": list(ids),
            "v": [1.0 / (k + 2) for k in range(len(ids))],
            "rank": pa.array(range(1, len(ids) + 1), pa.int64()),
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(trust, directory / "trust.parquet")
