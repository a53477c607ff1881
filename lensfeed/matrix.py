"""The model's input from the features, from a pandas frame or an Arrow table.

:func:`encode` builds what :meth:`xgboost.Booster.inplace_predict` takes for a
:class:`~lensfeed.booster.LoadedModel`: a frame of ``category`` columns when the
model stores its categories, else a float32 matrix of raw codes. Values outside
a vocabulary are counted and fed as missing (XGBoost itself would route them
silently).

From Arrow, no pandas object column is made on the way: the float32 matrix is
filled column by column from the Arrow buffers, and string features come
dictionary-encoded from Parquet. For the same rows both doors give the same
values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa

from lensfeed.booster import LoadedModel
from lensfeed.classifier import Unseen, arrow_codes_into, encode_category

#: What :func:`encode` reads: a pandas frame or an Arrow table.
Features: TypeAlias = "pd.DataFrame | pa.Table"


def _column_names(features: Features) -> list[str]:
    if isinstance(features, pa.Table):
        return list(features.column_names)
    return list(features.columns)


def require_columns(features: Features, names: Sequence[str], what: str) -> None:
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
        return arrow_codes_into(out, features.column(name), name, vocabulary, missing)
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
    require_columns(features, model.feature_names, "features")
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
