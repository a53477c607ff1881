"""``predict``: :func:`lensfeed.predict.predict_table` on the features as the pipeline
reads them, against a bare ``Booster.inplace_predict``; labels compared."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from bench.harness import median, pair_ratio, paired, row
from bench.scenarios import FEATURE_TIME


def prediction_features(n: int, rng: np.random.Generator) -> pd.DataFrame:
    from lensfeed.classifier import LANGUAGES, REGIONS

    def pick(values: list[Any], p: list[float] | None = None) -> Any:
        return np.asarray(values, dtype=object)[rng.choice(len(values), n, p=p)]

    counters = {c: rng.geometric(p, n) - 1 for c, p in
                (("mirrors", 0.5), ("collects", 0.8), ("comments", 0.4), ("upvotes", 0.3),
                 ("downvotes", 0.9))}  # fmt: skip
    age = rng.integers(0, 1000, n)
    ranked = rng.random(n) < 0.7
    rank = np.where(ranked, rng.integers(1, 100_000, n), np.nan)
    stamps = pd.Timestamp(FEATURE_TIME) - pd.to_timedelta(age, unit="D")
    frame = pd.DataFrame(
        {
            "post_id": [f"0x{i:07x}" for i in range(n)],
            "region": pick([*REGIONS[:20], None]),
            "language": pick([*LANGUAGES[:20], None]),
            "main_content_focus": pick(
                ["TEXT_ONLY", "IMAGE", "VIDEO", "ARTICLE", "AUDIO", "LINK", "EMBED"],
                [0.6, 0.25, 0.05, 0.04, 0.02, 0.02, 0.02],
            ),
            "content_warning": pick(
                [None, "NSFW", "SENSITIVE", "SPOILER"], [0.97, 0.01, 0.01, 0.01]
            ),
            "custom_filters_gardener_flagged": rng.random(n) < 0.005,
            "is_original": rng.random(n) < 0.85,
            "is_hidden": rng.random(n) < 0.01,
            "is_gated": rng.random(n) < 0.02,
            "has_error": rng.random(n) < 0.003,
            **counters,
            "age": age,
            "followship_rank": rank,
            "followship_score": np.where(ranked, 1 / (rank + 10), np.nan),
            "max_age": age + rng.integers(0, 100, n),
            "max_mirrors": counters["mirrors"] + rng.integers(0, 5, n),
            "max_collects": counters["collects"] + rng.integers(0, 5, n),
            "max_comments": counters["comments"] + rng.integers(0, 5, n),
            "block_timestamp": stamps.astype("datetime64[us, UTC]"),
            "feature_time": pd.Timestamp(FEATURE_TIME).as_unit("us"),
        }
    )
    frame["is_content_warning"] = frame["content_warning"].notna()

    def safe(c: str) -> Any:
        return np.where(frame[f"max_{c}"] == 0, 1e10, frame[f"max_{c}"])

    frame["post_score"] = (
        frame["mirrors"] / safe("mirrors")
        + frame["collects"] / safe("collects")
        + 3 * frame["comments"] / safe("comments")
        - 5 * frame["age"] / safe("age")
    )
    return frame


def features_table(frame: pd.DataFrame, directory: Path) -> Any:
    """``frame`` as the predict pipeline gets it: written as the features stage writes
    (parts and row groups of its sizes, its writer options), read back by
    :func:`lensfeed.predict.read_features_table`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lensfeed import predict
    from lensfeed.features import ROW_GROUP_ROWS, ROWS_PER_PART
    from lensfeed.parquet import WRITER_OPTIONS

    table = pa.Table.from_pandas(frame, preserve_index=False)
    directory.mkdir(parents=True)
    for part, start in enumerate(range(0, len(frame), ROWS_PER_PART)):
        pq.write_table(
            table.slice(start, ROWS_PER_PART),
            directory / f"part-{part:05d}.parquet",
            row_group_size=ROW_GROUP_ROWS,
            **WRITER_OPTIONS,
        )
    return predict.read_features_table(directory)


def bench_predict(scale: dict[str, Any], repeat: int, model_path: Path) -> list[dict[str, Any]]:
    """:func:`lensfeed.predict.predict_table` on the features as the pipeline reads them
    (Arrow, reading excluded) against a bare ``inplace_predict`` of the encoded matrix;
    :func:`lensfeed.predict.predict` on the same rows as a pandas frame is timed
    alongside, for reference."""
    from lensfeed import predict
    from lensfeed.booster import load_model
    from lensfeed.matrix import encode

    model = load_model(model_path)
    frame = prediction_features(scale["predict"], np.random.default_rng(3))
    with tempfile.TemporaryDirectory(prefix="lensfeed-bench-") as tmp:
        table = features_table(frame, Path(tmp) / "features")
    matrix, _ = encode(model, table)
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    booster = model.booster

    def bare() -> Any:
        return booster.inplace_predict(matrix, predict_type="margin")

    times = paired(
        {
            "ours": lambda: predict.predict_table(model, table),
            "bare": bare,
            "pandas": lambda: predict.predict(model, frame),
        },
        repeat,
    )
    ours, _ = predict.predict_table(model, table)
    margins = np.asarray(bare()).reshape(len(frame), len(model.classes))
    expected = np.asarray(model.classes, dtype=object)[margins.argmax(axis=1)]
    labels = ours.column("label").to_numpy(zero_copy_only=False)
    same = bool((labels == expected).all())
    from_pandas = predict.predict(model, frame)
    same_as_pandas = all(
        np.array_equal(ours.column(name).to_numpy(zero_copy_only=False), from_pandas[name])
        for name in ("post_id", "label", *predict.PROBABILITIES)
    )
    n = len(frame)
    extra = {
        "rows": n,
        "ours_rows_per_s": round(n / median(times["ours"])),
        "bare_rows_per_s": round(n / median(times["bare"])),
        "labels_equal": same,
        "pandas_input_s": round(median(times["pandas"]), 4),
        "pandas_input_ratio": round(pair_ratio(times["bare"], times["pandas"]), 3),
        "pandas_input_equal": same_as_pandas,
        "threads": os.cpu_count(),
    }
    result = row(
        "predict",
        f"predict {n:,} rows (throughput)",
        times["ours"],
        times["bare"],
        speedup=True,  # bare/ours time = our throughput / bare throughput
        target=0.9,
        extra=extra,
        ok=same and same_as_pandas,
    )
    return [result]
