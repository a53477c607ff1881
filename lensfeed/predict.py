"""Labels for every post from an XGBoost JSON model (the ``predict`` stage).

:func:`load_model` accepts any 3-class XGBoost JSON model whose features the
features stage produces, and works out how to feed its categorical features:

- **Categories stored** (models trained by :mod:`lensfeed.model`, XGBoost >= 3.1
  ``cats`` block): each categorical column is coded against the model's own
  vocabulary and passed as a pandas ``category`` column; XGBoost re-codes by
  value, so neither the row order nor the order of categories in the input
  matters.
- **No categories stored** (the 2023 production model, saved by 1.7.5): the
  trees test raw codes, so the codes must be the ones the notebook's
  ``astype('category')`` gave on its training frame, i.e. the positions of the
  values in the sorted list of values it saw. :data:`LEGACY_CODES` holds that
  list for each feature where it can be known (see there). A categorical
  feature that no split tests cannot change any prediction and is fed as
  missing; a model that splits on a feature with no known mapping is refused.

Values outside the vocabulary are counted (:func:`predict` logs them and puts
them in ``attrs["unseen_categories"]``) and fed as missing: XGBoost itself
would route them silently.

Probabilities: the class margins are predicted (``predict_type="margin"``) and
passed through a softmax, which is what ``multi:softprob`` computes and what a
``multi:softmax`` model (class ids only) would give as probabilities. The label
is the arg-max margin, the class ``multi:softmax`` predicts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xgboost as xgb

from lensfeed.model import (
    BOOLEAN_VALUES,
    FEATURES,
    LABELS,
    STRING_FEATURES,
    Unseen,
    encode_columns,
)
from lensfeed.schemas import FEED_PASSTHROUGH, TIMESTAMP

_log = logging.getLogger(__name__)

#: Feature columns a model may use: what the features stage writes.
PRODUCIBLE: frozenset[str] = frozenset(FEATURES) | {"is_hidden", "is_gated"}
#: Columns copied from the features to the predictions for the feed stage.
PASSTHROUGH: tuple[str, ...] = FEED_PASSTHROUGH
PROBABILITIES: tuple[str, ...] = tuple(f"p_{name.lower()}" for name in LABELS)
OUTPUT_COLUMNS: tuple[str, ...] = ("post_id", "label", *PROBABILITIES, *PASSTHROUGH)
OBJECTIVES = ("multi:softmax", "multi:softprob")
_BOOL, _INT = pa.bool_(), pa.int64()
#: The written file's schema (a column of nulls still has its real type).
PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string()),
        pa.field("label", pa.string()),
        *[pa.field(name, pa.float64()) for name in PROBABILITIES],
        pa.field("block_timestamp", TIMESTAMP),
        pa.field("feature_time", TIMESTAMP),
        pa.field("is_original", _BOOL),
        pa.field("content_warning", pa.string()),
        pa.field("is_hidden", _BOOL),
        pa.field("is_gated", _BOOL),
        pa.field("custom_filters_gardener_flagged", _BOOL),
        *[pa.field(name, _INT) for name in ("upvotes", "mirrors", "comments", "collects")],
    ]
)

#: Code order of the categorical features of models saved without categories
#: (the 2023 notebook), inferred from the production model's splits (only
#: ``is_original`` and ``main_content_focus`` are ever split on):
#:
#: - ``main_content_focus``: splits use codes 0 to 5, so training saw at least 6
#:   values. In XGBoost 1.7.5 a partition split's set is a prefix of the
#:   categories stably sorted by weight, a weight being 0 below a hessian of 1
#:   (``EnumeratePart``). So in the YES-class roots of trees 233 to 299 (hessian
#:   about 2.3, set {0,1,3,4,5}), code 2 must hold a hessian of 1 or more, and in
#:   tree 68 (set {4}) code 4 holds 1.5 of 4.1: the last hard rows are code 2 and
#:   code 4 posts. With one of the 7 Lens values absent, the sorted values put
#:   IMAGE at 2 and TEXT_ONLY at 4, the two most common values (85 % of posts);
#:   with all 7 present those codes would be EMBED and LINK (about 3 %). Hence 6
#:   values, EMBED (the rarest, newest) absent: an EMBED post is reported unseen
#:   and fed as missing. Best supported, not proven; the 7-value reading would
#:   change about 4 % of labels.
#: - booleans: pandas orders ``False`` before ``True``; ``is_original`` is split
#:   one-hot on code 0, which needs both values.
#:
#: ``region``, ``language`` and ``content_warning`` are in no split of that
#: model, so their training vocabularies (unknowable) do not matter.
LEGACY_CODES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "main_content_focus": ("ARTICLE", "AUDIO", "IMAGE", "LINK", "TEXT_ONLY", "VIDEO"),
        "is_original": BOOLEAN_VALUES,
        "is_content_warning": BOOLEAN_VALUES,
        "custom_filters_gardener_flagged": BOOLEAN_VALUES,
        "is_hidden": BOOLEAN_VALUES,
        "is_gated": BOOLEAN_VALUES,
    }
)


class ModelError(ValueError):
    """A model this stage cannot use; the message says why."""


@dataclass(frozen=True)
class LoadedModel:
    """A booster and how to feed it.

    ``vocabularies`` maps each categorical feature to its categories in code
    order, or to None when no split tests it and its codes are unknown (fed as
    missing). ``categories_stored`` says whether XGBoost re-codes the input
    (categories in the model) or reads raw codes.
    """

    path: str
    booster: Any = field(repr=False)
    feature_names: tuple[str, ...]
    feature_types: tuple[str, ...]
    objective: str
    classes: tuple[str, ...]
    categories_stored: bool
    vocabularies: Mapping[str, tuple[str, ...] | None]


def split_categories(document: Mapping[str, Any]) -> dict[str, int]:
    """The largest category code each categorical feature is split on.

    Args:
        document: a parsed XGBoost JSON model.

    Returns:
        ``{feature: max code}`` for the features some categorical split tests.
    """
    learner = document["learner"]
    names = learner.get("feature_names") or []
    largest: dict[str, int] = {}
    for tree in learner["gradient_booster"]["model"]["trees"]:
        nodes = tree.get("categories_nodes") or []
        for node, start, size in zip(
            nodes, tree["categories_segments"], tree["categories_sizes"], strict=True
        ):
            codes = tree["categories"][start : start + size]
            name = names[tree["split_indices"][node]]
            largest[name] = max([largest.get(name, -1), *codes])
    return largest


def _stored_vocabularies(booster: Any, path: str) -> dict[str, tuple[str, ...]] | None:
    categories = booster.get_categories(export_to_arrow=True)
    if categories.empty():
        return None
    vocabularies = {}
    for name, values in categories.to_arrow():
        if values is None:
            continue
        if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            raise ModelError(
                f"{path}: categories of {name} are {values.type}, expected strings "
                "(the vocabularies of lensfeed.model)"
            )
        vocabularies[name] = tuple(values.to_pylist())
    return vocabularies


def _legacy_vocabularies(
    document: Mapping[str, Any], categorical: list[str], path: str
) -> dict[str, tuple[str, ...] | None]:
    used = split_categories(document)
    vocabularies: dict[str, tuple[str, ...] | None] = {}
    for name in categorical:
        if name not in used:
            vocabularies[name] = None
            continue
        known = LEGACY_CODES.get(name)
        if known is None or used[name] >= len(known):
            raise ModelError(
                f"{path}: the model stores no categories and splits on {name} codes up to "
                f"{used[name]}, but the code of each value is not known "
                f"({len(known) if known else 0} known values)"
            )
        vocabularies[name] = known
    return vocabularies


def load_model(path: str | Path, *, nthread: int | None = None) -> LoadedModel:
    """Load an XGBoost JSON model and check that this stage can feed it.

    Args:
        path: the model file (XGBoost JSON).
        nthread: prediction threads (XGBoost's default when None).

    Raises:
        ModelError: not a 3-class ``multi:softmax``/``softprob`` model, a
            feature the features stage does not produce, or categorical codes
            that cannot be reproduced.
    """
    where = str(path)
    raw = Path(path).read_bytes()
    try:
        document = json.loads(raw)
        learner = document["learner"]
        names = list(learner.get("feature_names") or [])
        types = list(learner.get("feature_types") or [])
        objective = learner["objective"]["name"]
        n_class = int(learner["learner_model_param"]["num_class"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{where}: not an XGBoost JSON model ({exc!r})") from None
    if objective not in OBJECTIVES or n_class != len(LABELS):
        raise ModelError(
            f"{where}: objective {objective} with {n_class} classes; expected one of "
            f"{', '.join(OBJECTIVES)} with {len(LABELS)} classes"
        )
    if not names or len(types) != len(names):
        raise ModelError(f"{where}: the model does not name its features and their types")
    missing = [name for name in names if name not in PRODUCIBLE]
    if missing:
        raise ModelError(
            f"{where}: the model needs features the features stage does not produce: "
            f"{', '.join(missing)}"
        )
    categorical = [name for name, kind in zip(names, types, strict=True) if kind == "c"]
    as_numbers = sorted(STRING_FEATURES.intersection(names).difference(categorical))
    if as_numbers:
        raise ModelError(f"{where}: string feature(s) {', '.join(as_numbers)} are not categorical")

    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    if nthread is not None:
        booster.set_param({"nthread": nthread})
    stored = _stored_vocabularies(booster, where)
    vocabularies: dict[str, tuple[str, ...] | None]
    if stored is not None:
        vocabularies = {name: stored[name] for name in categorical}
    else:
        vocabularies = _legacy_vocabularies(document, categorical, where)
    classes = tuple(str(booster.attr("classes") or ",".join(LABELS)).split(","))
    if sorted(classes) != sorted(LABELS):
        raise ModelError(f"{where}: classes {classes}, expected {LABELS} in some order")
    return LoadedModel(
        path=where,
        booster=booster,
        feature_names=tuple(names),
        feature_types=tuple(types),
        objective=objective,
        classes=classes,
        categories_stored=stored is not None,
        vocabularies=MappingProxyType(vocabularies),
    )


def encode(model: LoadedModel, features: pd.DataFrame) -> tuple[Any, Unseen]:
    """The model's input for ``features``: what :meth:`Booster.inplace_predict` takes.

    Returns:
        A frame with ``category`` columns (categories stored in the model) or a
        float32 array of raw codes (none stored), and the unseen values.

    Raises:
        KeyError: a feature column is missing.
    """
    if model.categories_stored:
        frame, unknown = encode_columns(features, model.feature_names, model.vocabularies)
        return pd.DataFrame(frame, index=features.index, copy=False), unknown
    # column-major float32, filled one contiguous column at a time: XGBoost reads the
    # strides, so no row-major copy is needed (float32 is what the booster compares)
    columns, unseen = encode_columns(
        features, model.feature_names, model.vocabularies, dtype=np.float32
    )
    matrix = np.empty((len(features), len(columns)), dtype=np.float32, order="F")
    for i, column in enumerate(columns.values()):
        if isinstance(column, pd.Categorical):
            matrix[:, i] = column.codes
            matrix[column.codes < 0, i] = np.nan
        else:
            matrix[:, i] = column
    return matrix, unseen


def softmax(margins: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Row-wise softmax of class margins, in float64."""
    # class-major: each step runs over contiguous columns (a reduction along a short
    # row axis is several times slower); sums in class order, as a row-wise sum does
    by_class = margins.T.astype(np.float64)
    if by_class.shape[0] == 0:
        return by_class.T
    peak = by_class[0].copy()
    for values in by_class[1:]:
        np.maximum(peak, values, out=peak)
    by_class -= peak
    np.exp(by_class, out=by_class)
    total = by_class[0].copy()
    for values in by_class[1:]:
        total += values
    by_class /= total
    result: npt.NDArray[np.float64] = by_class.T
    return result


def predict(model: LoadedModel, features: pd.DataFrame) -> pd.DataFrame:
    """Label every post.

    Args:
        model: from :func:`load_model`.
        features: one row per post: ``post_id``, the model's features and the
            :data:`PASSTHROUGH` columns.

    Returns:
        One row per post, sorted by ``post_id``: :data:`OUTPUT_COLUMNS`, with
        ``label`` in ``YES|MAYBE|NO`` and ``p_maybe + p_no + p_yes = 1``.
        ``attrs["unseen_categories"]`` holds the unknown categorical values.

    Raises:
        KeyError: a required column is missing.
    """
    missing = [name for name in ("post_id", *PASSTHROUGH) if name not in features.columns]
    if missing:
        raise KeyError(f"predict: missing column(s) {', '.join(missing)}")
    data, unseen = encode(model, features)
    n_rows, n_class = len(features), len(model.classes)
    if n_rows:
        margins = np.asarray(model.booster.inplace_predict(data, predict_type="margin"))
        margins = margins.reshape(n_rows, n_class)
    else:
        margins = np.zeros((0, n_class), dtype=np.float32)
    probabilities = softmax(margins)
    post_ids = features["post_id"].to_numpy()
    # one permutation applied to every output column, no frame copies; Arrow sorts
    # a million strings in a fraction of the time of NumPy's object sort
    order: Any = slice(None)
    if not features["post_id"].is_monotonic_increasing:
        order = pc.sort_indices(pa.array(post_ids, type=pa.string())).to_numpy()
    by_name = dict(zip(model.classes, range(n_class), strict=True))
    out = {
        "post_id": post_ids[order],
        "label": np.asarray(model.classes, dtype=object)[margins.argmax(axis=1)[order]],
        **{
            column: probabilities[order, by_name[name]]
            for column, name in zip(PROBABILITIES, LABELS, strict=True)
        },
        **{name: features[name].array[order] for name in PASSTHROUGH},
    }
    result = pd.DataFrame(out, copy=False)
    if unseen:
        _log.warning("unseen categorical values fed as missing: %s", unseen)
    result.attrs["unseen_categories"] = unseen
    return result


def write_predictions(predictions: pd.DataFrame, path: Path) -> None:
    """Write predictions as Parquet in :data:`PREDICTIONS_SCHEMA`; equal frames give
    equal bytes (no pandas metadata)."""
    table = pa.Table.from_pandas(predictions, schema=PREDICTIONS_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata(None)
    pq.write_table(table, path, compression="zstd", compression_level=3, write_statistics=True)
