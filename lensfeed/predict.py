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
them in ``attrs["unseen_categories"]``, :func:`predict_table` returns them) and
fed as missing: XGBoost itself would route them silently.

Probabilities: the class margins are predicted (``predict_type="margin"``) and
passed through a softmax, which is what ``multi:softprob`` computes and what a
``multi:softmax`` model (class ids only) would give as probabilities. The label
is the arg-max margin, the class ``multi:softmax`` predicts.

Two doors, one computation: :func:`predict` takes and returns pandas frames;
:func:`predict_table` takes the Arrow table :func:`read_features_table` reads
and returns an Arrow table, with no pandas object column on the way (the float32
matrix is filled column by column from the Arrow buffers, the string features
come dictionary-encoded from Parquet). For the same rows both give the same
values, and :func:`write_predictions` writes the same bytes from either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias

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
    category_lookup,
    encode_category,
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
        pa.field("has_error", _BOOL),
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


#: What :func:`encode` reads: a pandas frame or an Arrow table.
Features: TypeAlias = "pd.DataFrame | pa.Table"


def _column_names(features: Features) -> list[str]:
    if isinstance(features, pa.Table):
        return list(features.column_names)
    return list(features.columns)


def _require(features: Features, names: Sequence[str], what: str) -> None:
    present = set(_column_names(features))
    missing = [name for name in names if name not in present]
    if missing:
        raise KeyError(f"{what}: missing column(s) {', '.join(missing)}")


def _nulls(chunk: pa.Array) -> npt.NDArray[np.intp]:
    """The positions of the nulls of ``chunk``, from its validity bitmap."""
    bitmap = chunk.buffers()[0]
    if bitmap is None or not chunk.null_count:
        return np.zeros(0, dtype=np.intp)
    bits = np.frombuffer(bitmap, dtype=np.uint8)
    valid = np.unpackbits(bits, count=chunk.offset + len(chunk), bitorder="little")
    return np.flatnonzero(valid[chunk.offset :] == 0)


def _arrow_numbers_into(out: npt.NDArray[Any], column: pa.ChunkedArray) -> None:
    """Write a numeric, boolean or null Arrow column into ``out`` (a float column of the
    matrix): booleans as 0/1, nulls as NaN, one chunk at a time.

    Numbers come from the values buffer as it is, cast straight to ``out``'s dtype
    in the copy (round to nearest, as NumPy's ``astype`` does; no float64 detour
    for integers), then NaN goes where the validity bitmap says null.
    """
    start = 0
    for chunk in column.chunks:
        target = out[start : start + len(chunk)]
        start += len(chunk)
        kind = chunk.type
        if pa.types.is_null(kind):
            target.fill(np.nan)
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            dtype = np.dtype(kind.to_pandas_dtype())
            offset = chunk.offset * dtype.itemsize
            target[:] = np.frombuffer(chunk.buffers()[1], dtype, len(chunk), offset)
            target[_nulls(chunk)] = np.nan  # a scatter: a masked write is several times slower
        elif pa.types.is_boolean(kind):
            as_float = chunk.cast(pa.from_numpy_dtype(out.dtype))
            target[:] = as_float.to_numpy(zero_copy_only=False)
        else:  # decimals and the like: as the pandas path converts them
            target[:] = chunk.to_pandas().to_numpy(dtype=out.dtype, na_value=np.nan)


def _positions(chunk: pa.Array) -> tuple[list[Any], npt.NDArray[Any]]:
    """The distinct values of ``chunk`` and each row's position among them (nulls: one
    past the last): its dictionary as it is, 0/1 for booleans, else dictionary-encoded."""
    if pa.types.is_boolean(chunk.type):
        positions = chunk.cast(pa.uint8())
        return [False, True], positions.fill_null(2).to_numpy(zero_copy_only=False)
    encoded = chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode()
    uniques = encoded.dictionary.to_pylist()
    indices = encoded.indices
    if indices.null_count:
        indices = indices.fill_null(len(uniques))
    return uniques, indices.to_numpy(zero_copy_only=False)


def _arrow_codes_into(
    out: npt.NDArray[Any],
    column: pa.ChunkedArray,
    feature: str,
    vocabulary: Sequence[str],
    missing: float,
) -> dict[str, int]:
    """:func:`lensfeed.model.encode_category` of an Arrow column, written into ``out``.

    Each distinct value of a chunk (see :func:`_positions`) is spelled by
    :func:`~lensfeed.model.normalise_category` once, and the codes are taken
    through a lookup table: one pass over the rows. Nulls, unknown values and
    values spelled as null become ``missing``.

    Returns:
        The unknown values (as spelled) with their row counts.
    """
    unseen: dict[str, int] = {}
    start = 0
    for chunk in column.chunks:
        uniques, positions = _positions(chunk)
        lookup, unknown = category_lookup(feature, uniques, vocabulary, missing, out.dtype)
        np.take(lookup, positions, out=out[start : start + len(chunk)])
        start += len(chunk)
        if unknown:
            counts = np.bincount(positions, minlength=len(uniques) + 1)
            for i, spelled in unknown.items():
                if counts[i]:
                    unseen[spelled] = unseen.get(spelled, 0) + int(counts[i])
    return dict(sorted(unseen.items()))


def _pandas_numbers_into(out: npt.NDArray[Any], column: pd.Series) -> None:
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
        out[:] = column.to_numpy()  # cast in the copy, no temporary
    else:  # nullable and object columns: NaN for nulls
        out[:] = column.to_numpy(dtype=out.dtype, na_value=np.nan)


def _codes_into(
    out: npt.NDArray[Any],
    features: Features,
    name: str,
    vocabulary: Sequence[str],
    missing: float,
) -> dict[str, int]:
    """The codes of one categorical feature into ``out`` (``missing`` where none)."""
    if isinstance(features, pa.Table):
        return _arrow_codes_into(out, features.column(name), name, vocabulary, missing)
    categorical, unknown = encode_category(features[name], name, vocabulary)
    out[:] = categorical.codes
    out[categorical.codes < 0] = missing
    return unknown


def _numbers_into(out: npt.NDArray[Any], features: Features, name: str) -> None:
    if isinstance(features, pa.Table):
        _arrow_numbers_into(out, features.column(name))
    else:
        _pandas_numbers_into(out, features[name])


def _category_frame(model: LoadedModel, features: Features) -> tuple[pd.DataFrame, Unseen]:
    """Numbers as float64 and categories as ``category`` columns of the model's vocabularies."""
    rows = len(features)
    columns: dict[str, Any] = {}
    unseen: Unseen = {}
    for name in model.feature_names:
        if name not in model.vocabularies:
            numbers = np.empty(rows, dtype=np.float64)
            _numbers_into(numbers, features, name)
            columns[name] = numbers
            continue
        vocabulary = model.vocabularies[name]
        if vocabulary is None:
            columns[name] = np.full(rows, np.nan)
            continue
        codes = np.empty(rows, dtype=np.int64)
        unknown = _codes_into(codes, features, name, vocabulary, -1)
        if unknown:
            unseen[name] = unknown
        columns[name] = pd.Categorical.from_codes(codes, categories=pd.Index(list(vocabulary)))
    return pd.DataFrame(columns, copy=False), unseen


def encode(model: LoadedModel, features: Features) -> tuple[Any, Unseen]:
    """The model's input for ``features``: what :meth:`Booster.inplace_predict` takes.

    Args:
        model: from :func:`load_model`.
        features: a pandas frame or an Arrow table holding the model's features.

    Returns:
        A frame with ``category`` columns (categories stored in the model) or a
        float32 array of raw codes (none stored), and the unseen values.

    Raises:
        KeyError: a feature column is missing.
    """
    _require(features, model.feature_names, "features")
    if model.categories_stored:
        return _category_frame(model, features)
    # column-major float32, each column written once, straight from the source's
    # buffers: XGBoost reads the strides, so no row-major copy is needed (float32 is
    # what the booster compares)
    matrix = np.empty((len(features), len(model.feature_names)), dtype=np.float32, order="F")
    unseen: Unseen = {}
    for i, name in enumerate(model.feature_names):
        column = matrix[:, i]
        if name not in model.vocabularies:
            _numbers_into(column, features, name)
            continue
        vocabulary = model.vocabularies[name]
        if vocabulary is None:
            column.fill(np.nan)
            continue
        unknown = _codes_into(column, features, name, vocabulary, np.nan)
        if unknown:
            unseen[name] = unknown
    return matrix, unseen


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
    _require(features, ("post_id", *PASSTHROUGH), "predict")
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
    parts = sorted(directory.glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no *.parquet feature files under {directory}")
    coded = sorted(STRING_FEATURES.difference(PASSTHROUGH))
    tables = [pq.read_table(part, read_dictionary=coded) for part in parts]
    return pa.concat_tables(tables, promote_options="default")


def write_predictions(predictions: pd.DataFrame | pa.Table, path: Path) -> None:
    """Write predictions as Parquet in :data:`PREDICTIONS_SCHEMA`; equal rows give
    equal bytes, from a frame or a table (no pandas metadata, one chunk per column)."""
    if isinstance(predictions, pa.Table):
        table = predictions.select(PREDICTIONS_SCHEMA.names).cast(PREDICTIONS_SCHEMA)
    else:
        table = pa.Table.from_pandas(predictions, schema=PREDICTIONS_SCHEMA, preserve_index=False)
    table = table.combine_chunks().replace_schema_metadata(None)
    pq.write_table(table, path, compression="zstd", compression_level=3, write_statistics=True)
