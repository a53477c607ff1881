"""Feature frames and checks shared by the predict tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from lensfeed.predict import (
    OUTPUT_COLUMNS,
    PASSTHROUGH,
)
from tests.lens.test_model import (
    PRODUCTION_MODEL,
)

needs_production_model = pytest.mark.skipif(
    not PRODUCTION_MODEL.exists(), reason=f"fixture {PRODUCTION_MODEL} absent (../shared)"
)


def shuffled_with_other_category_order(features: pd.DataFrame) -> pd.DataFrame:
    """The same posts in another row order, categorical columns with reversed categories."""
    other = features.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for name in ("main_content_focus", "language", "region", "content_warning"):
        values = other[name]
        categories = sorted(values.dropna().unique(), reverse=True)
        other[name] = pd.Categorical(values, categories=categories)
    return other


def as_plain(predictions: pd.DataFrame) -> pd.DataFrame:
    """The passthrough ``content_warning`` back to plain objects (it was made categorical)."""
    plain = predictions["content_warning"].astype(object)
    return predictions.assign(content_warning=plain.where(plain.notna(), None))


def tiny_model(tmp_path: Path, frame: pd.DataFrame, objective: str = "multi:softmax") -> Path:
    labels = np.arange(len(frame)) % 3
    params = {"objective": objective, "tree_method": "hist", "nthread": 1}
    if objective.startswith("multi"):
        params["num_class"] = 3
    else:
        labels = labels % 2
    data = xgb.DMatrix(frame, label=labels, enable_categorical=True)
    path = tmp_path / f"{objective.replace(':', '_')}.json"
    xgb.train(params, data, num_boost_round=2).save_model(path)
    return path


def check_predictions(predictions: pd.DataFrame, features: pd.DataFrame) -> None:
    assert tuple(predictions.columns) == OUTPUT_COLUMNS
    assert predictions["post_id"].tolist() == sorted(features["post_id"])
    probabilities = predictions[["p_maybe", "p_no", "p_yes"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    best = np.array(["MAYBE", "NO", "YES"], dtype=object)[probabilities.argmax(axis=1)]
    assert (predictions["label"].to_numpy() == best).all()
    by_post = features.set_index("post_id").loc[predictions["post_id"]]
    for name in PASSTHROUGH:
        assert predictions[name].tolist() == by_post[name].tolist(), name


def with_nulls_and_strays(features: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer and boolean features holding nulls, null and unknown categories."""
    other = features.copy()
    other["followship_rank"] = other["followship_rank"].astype("Int64")
    other["upvotes"] = other["upvotes"].astype("Int64")
    other.loc[::17, "upvotes"] = pd.NA
    other["is_original"] = other["is_original"].astype("boolean")
    other.loc[::13, "is_original"] = pd.NA
    other.loc[::11, "main_content_focus"] = None
    other.loc[:2, "main_content_focus"] = ["EMBED", "hologram", " image "]
    return other


def write_parts(frame: pd.DataFrame, directory: Path, parts: int = 3) -> Path:
    """``frame`` as several Parquet parts of several row groups: Arrow reads many chunks."""
    directory.mkdir(parents=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    size = -(-len(frame) // parts)
    for part in range(parts):
        pq.write_table(
            table.slice(part * size, size),
            directory / f"part-{part:05d}.parquet",
            row_group_size=max(size // 4, 1),
        )
    return directory
