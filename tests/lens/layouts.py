"""Generated inputs laid out the way the pipelines see them under ``/pfs``."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.parquet as pq

from lensfeed import compact
from lensfeed.schemas import POSTS, PROFILES, STATS
from lensrun.generate import generate_dataset, plan_exports


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


def compact_ticks(session: Any, ingest: Path, out: Path) -> list[str]:
    """Run the ``compact`` step over ``ingest``'s partitions into ``out``, one tick at a
    time, each tick's partitions alone as its group datum mounts them; the ticks, in order."""
    by_tick: dict[str, dict[str, Path]] = {}
    for table in (POSTS, STATS):
        for folder in sorted((ingest / table).glob("dtime=*")):
            by_tick.setdefault(folder.name.removeprefix("dtime="), {})[table] = folder
    out.mkdir(parents=True, exist_ok=True)
    for tables in by_tick.values():
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            inputs = {}
            for table in (POSTS, STATS):
                inputs[table] = Path(tmp) / table
                inputs[table].mkdir()
                if table in tables:
                    (inputs[table] / tables[table].name).symlink_to(tables[table])
            compact.compact_partition(session, inputs, out)
    return sorted(by_tick)


def features_layout(session: Any, root: Path) -> dict[str, Path]:
    """``root/compact`` from ``root/ingest`` and an empty ``root/history``: the features
    step's inputs (with ``root/trust``) before any daily merge."""
    compact_ticks(session, root / "ingest", root / "compact")
    (root / "history").mkdir(exist_ok=True)
    return {name: root / name for name in ("compact", "history", "trust")}


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


def random_predictions(
    n: int, seed: int = 0, *, id_prefix: str = "", feature_time: str = "2024-05-10T00:00:00Z"
) -> pd.DataFrame:
    """``n`` rows as predict writes them (the columns feed reads), ids ``0x<prefix><i>``."""
    rng = np.random.default_rng(seed)
    ft = pd.Timestamp(feature_time)
    return pd.DataFrame(
        {
            "post_id": [f"0x{id_prefix}{i:05x}" for i in range(n)],
            "label": rng.choice(["YES", "MAYBE", "NO"], n, p=[0.1, 0.6, 0.3]),
            "p_maybe": 0.3,
            "p_no": 0.3,
            "p_yes": 0.4,
            "block_timestamp": ft - pd.to_timedelta(rng.exponential(10, n), unit="D"),
            "feature_time": ft,
            "is_original": rng.random(n) < 0.9,
            "content_warning": np.where(rng.random(n) < 0.05, "nsfw", None),
            "is_hidden": rng.random(n) < 0.02,
            "is_gated": rng.random(n) < 0.02,
            "custom_filters_gardener_flagged": rng.random(n) < 0.02,
            "has_error": rng.random(n) < 0.01,
            "upvotes": rng.poisson(2, n),
            "mirrors": rng.poisson(0.5, n),
            "comments": rng.poisson(0.5, n),
            "collects": rng.poisson(0.2, n),
        }
    )
