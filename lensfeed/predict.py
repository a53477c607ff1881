"""Labels for every post from an XGBoost JSON model (the ``predict`` stage).

The model comes from :func:`lensfeed.booster.load_model` (any 3-class XGBoost
JSON model whose features the features stage produces) and its input from
:func:`lensfeed.matrix.encode`.

Values outside the vocabulary are counted (:func:`predict` logs them and puts
them in ``attrs["unseen_categories"]``, :func:`predict_table` returns them) and
fed as missing: XGBoost itself would route them silently.

Probabilities: the class margins are predicted (``predict_type="margin"``) and
passed through a softmax, which is what ``multi:softprob`` computes and what a
``multi:softmax`` model (class ids only) would give as probabilities. The label
is the arg-max margin, the class ``multi:softmax`` predicts.

Two doors, one computation: :func:`predict` takes and returns pandas frames;
:func:`predict_table` takes the Arrow table :func:`read_features_table` reads
and returns an Arrow table, with no pandas object column on the way. For the
same rows both give the same values, and :func:`write_predictions` writes the
same bytes from either.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc

# the stage's whole interface, loading included, for the entry point and the benchmarks
from lensfeed.booster import LoadedModel
from lensfeed.classifier import LABELS, STRING_FEATURES, Unseen
from lensfeed.matrix import Features, encode, require_columns
from lensfeed.parquet import PREDICTIONS_OPTIONS, read_dataset, write_table
from lensfeed.schemas import FEED_PASSTHROUGH, TIMESTAMP

_log = logging.getLogger(__name__)

#: Columns copied from the features to the predictions for the feed stage.
PASSTHROUGH: tuple[str, ...] = FEED_PASSTHROUGH
PROBABILITIES: tuple[str, ...] = tuple(f"p_{name.lower()}" for name in LABELS)
OUTPUT_COLUMNS: tuple[str, ...] = ("post_id", "label", *PROBABILITIES, *PASSTHROUGH)
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
        pa.field("has_error", _BOOL),
        *[pa.field(name, _INT) for name in ("upvotes", "mirrors", "comments", "collects")],
    ]
)


def _softmax_by_class(
    margins: npt.NDArray[Any],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8]]:
    """Softmax of row-wise class margins, class-major, and the arg-max class of each row.

    Returns:
        ``(probabilities, class_ids)``: probabilities as a C-contiguous
        ``(classes, rows)`` float64 array (each class a contiguous column of the
        output), class ids the first class of largest margin, as ``argmax`` gives.
    """
    # class-major: each step runs over contiguous rows (a reduction along a short
    # row axis is several times slower); sums in class order, as a row-wise sum does
    by_class = np.ascontiguousarray(margins.T, dtype=np.float64)
    n_class, rows = by_class.shape
    if n_class < 2:
        return np.ones_like(by_class), np.zeros(rows, dtype=np.int8)
    peak = np.maximum(by_class[0], by_class[1])
    for values in by_class[2:]:
        np.maximum(peak, values, out=peak)
    by_class -= peak
    # the first class at the peak wins: count the classes before it (a masked
    # write per class is several times slower)
    before = by_class[0] != 0.0
    class_ids = before.astype(np.int8)
    for values in by_class[1:-1]:
        before &= values != 0.0
        class_ids += before
    np.exp(by_class, out=by_class)
    total = np.add(by_class[0], by_class[1])
    for values in by_class[2:]:
        total += values
    by_class /= total
    return by_class, class_ids


def softmax(margins: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Row-wise softmax of class margins, in float64."""
    probabilities, _ = _softmax_by_class(margins)
    result: npt.NDArray[np.float64] = probabilities.T
    return result


def _scores(
    model: LoadedModel, features: Features
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8], Unseen]:
    """Encode, predict the margins, softmax: ``(probabilities by class, class ids, unseen)``."""
    require_columns(features, ("post_id", *PASSTHROUGH), "predict")
    data, unseen = encode(model, features)
    n_rows, n_class = len(features), len(model.classes)
    if n_rows:
        margins = np.asarray(model.booster.inplace_predict(data, predict_type="margin"))
        margins = margins.reshape(n_rows, n_class)
    else:
        margins = np.zeros((0, n_class), dtype=np.float32)
    probabilities, class_ids = _softmax_by_class(margins)
    if unseen:
        _log.warning("unseen categorical values fed as missing: %s", unseen)
    return probabilities, class_ids, unseen


def _probability_rows(model: LoadedModel) -> list[tuple[str, int]]:
    """``(output column, row of the probabilities)`` in :data:`PROBABILITIES` order."""
    by_name = {name: k for k, name in enumerate(model.classes)}
    return [(column, by_name[name]) for column, name in zip(PROBABILITIES, LABELS, strict=True)]


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
    probabilities, class_ids, unseen = _scores(model, features)
    post_ids = features["post_id"].to_numpy()
    # one permutation applied to every output column, no frame copies; Arrow sorts
    # a million strings in a fraction of the time of NumPy's object sort
    order: Any = slice(None)
    if not features["post_id"].is_monotonic_increasing:
        order = pc.sort_indices(pa.array(post_ids, type=pa.string())).to_numpy()
    out = {
        "post_id": post_ids[order],
        "label": np.asarray(model.classes, dtype=object)[class_ids[order]],
        **{column: probabilities[k][order] for column, k in _probability_rows(model)},
        **{name: features[name].array[order] for name in PASSTHROUGH},
    }
    result = pd.DataFrame(out, copy=False)
    result.attrs["unseen_categories"] = unseen
    return result


def _is_sorted(values: pa.ChunkedArray) -> bool:
    """Whether ``values`` holds no null and never decreases (strings by code point)."""
    if values.null_count:
        return False
    if len(values) < 2:
        return True
    return bool(pc.all(pc.less_equal(values[:-1], values[1:])).as_py())


def predict_table(model: LoadedModel, features: pa.Table) -> tuple[pa.Table, Unseen]:
    """:func:`predict` from and to Arrow: no pandas objects, no string round trips.

    Args:
        model: from :func:`load_model`.
        features: as for :func:`predict` (e.g. from :func:`read_features_table`).

    Returns:
        The predictions in :data:`PREDICTIONS_SCHEMA`, the same values as
        :func:`predict` gives for ``features.to_pandas()``; and the unknown
        categorical values.

    Raises:
        KeyError: a required column is missing.
    """
    probabilities, class_ids, unseen = _scores(model, features)
    post_ids = features.column("post_id")
    order = None if _is_sorted(post_ids) else pc.sort_indices(post_ids)

    def take(values: Any) -> Any:
        return values if order is None else values.take(order)

    labels = pa.DictionaryArray.from_arrays(
        pa.array(class_ids, type=pa.int8()), pa.array(model.classes, type=pa.string())
    )
    columns: dict[str, Any] = {
        "post_id": take(post_ids),
        "label": take(labels),
        **{column: take(pa.array(probabilities[k])) for column, k in _probability_rows(model)},
        **{name: take(features.column(name)) for name in PASSTHROUGH},
    }
    arrays = [
        columns[f.name] if columns[f.name].type == f.type else columns[f.name].cast(f.type)
        for f in PREDICTIONS_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=PREDICTIONS_SCHEMA), unseen


def read_features_table(directory: Path) -> pa.Table:
    """Every ``*.parquet`` part under ``directory``, in name order, as one Arrow table.

    The string features that are not passed through (only ever coded against a
    vocabulary) are read dictionary-encoded, as Parquet stores them.

    Raises:
        FileNotFoundError: no part (the features stage always writes one).
    """
    coded = sorted(STRING_FEATURES.difference(PASSTHROUGH))
    return read_dataset(directory, kind="feature", read_dictionary=coded)


def write_predictions(predictions: pd.DataFrame | pa.Table, path: Path) -> None:
    """Write predictions as Parquet in :data:`PREDICTIONS_SCHEMA`; equal rows give
    equal bytes, from a frame or a table (no pandas metadata, one chunk per column)."""
    if isinstance(predictions, pa.Table):
        table = predictions.select(PREDICTIONS_SCHEMA.names).cast(PREDICTIONS_SCHEMA)
    else:
        table = pa.Table.from_pandas(predictions, schema=PREDICTIONS_SCHEMA, preserve_index=False)
    write_table(table.combine_chunks(), path, PREDICTIONS_OPTIONS)
