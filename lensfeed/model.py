"""Training labels and the XGBoost classifier of the Lens feed (the ``model`` stage).

The rules follow the original notebook (``docs/dag.md``, section model; the
domain reference, section 4): posts are labelled from their score and their
author's trust rank, split 75/25 stratified by label, and a 3-class model is
trained with ``tree_method=hist`` for 100 rounds. Class ids are the positions
in :data:`LABELS`: ``MAYBE=0, NO=1, YES=2``, as in the 2023 production model.

Categorical features are coded against the fixed vocabularies of
:data:`lensfeed.classifier.CATEGORICAL` (see there); null and unknown values
become missing (NaN), which XGBoost sends along each split's learned default
branch. The model is trained with ``enable_categorical=True``, so the
vocabularies are stored in the model JSON and :mod:`lensfeed.predict` re-codes
its input against them.

Determinism: with a fixed seed and no sampling, training is a pure function of
the data. The saved JSON bytes were checked identical across runs and across
``nthread`` 1, 2, 4 and 8 (XGBoost 3.2, CPU ``hist``); ``nthread`` is not part
of the saved model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import xgboost as xgb

from lensfeed.classifier import (
    CATEGORICAL,
    FEATURES,
    LABELS,
    Unseen,
    encode_category,
)
from lensfeed.parquet import read_dataset

Positions = npt.NDArray[np.int64]


class InsufficientLabels(ValueError):
    """Too few labelled rows of some class to train and evaluate a model."""


@dataclass(frozen=True)
class TrainingSettings:
    """Every knob of one training run; all of them are recorded in the model card.

    ``yes_count``, ``top_rank`` and ``no_rank`` are the labelling thresholds of
    :func:`label_posts`; ``min_per_class`` is the fewest labelled rows of each
    class that :func:`fit` accepts.
    """

    yes_count: int = 1000
    top_rank: int = 1000
    no_rank: int = 50_000
    test_fraction: float = 0.25
    seed: int = 0
    rounds: int = 100
    nthread: int = 2
    min_per_class: int = 10

    def __post_init__(self) -> None:
        # two rows per class, so that every class has a training and a held-out row
        if self.min_per_class < 2 or self.rounds < 1 or self.nthread < 1:
            raise ValueError(
                f"need min_per_class >= 2, rounds >= 1 and nthread >= 1, got {self.min_per_class}, "
                f"{self.rounds} and {self.nthread}"
            )


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise KeyError(f"{what}: missing column(s) {', '.join(missing)}")


def label_posts(
    features: pd.DataFrame,
    yes_count: int = 1000,
    top_rank: int = 1000,
    no_rank: int = 50_000,
) -> pd.DataFrame:
    """Label posts as the original notebook did.

    Posts are ordered by ``post_score`` descending (ties by ``post_id``
    ascending, a null score last). ``YES``: the ``yes_count`` first posts whose
    author has ``followship_rank <= top_rank``; ``MAYBE``: the other posts of
    such authors; ``NO``: posts of authors with ``followship_rank >= no_rank``.
    Other posts, and posts whose author has no rank, get no label and are dropped.

    Args:
        features: one row per post, with ``post_id``, ``post_score`` and
            ``followship_rank`` (any other columns are kept).
        yes_count: how many of the best top-author posts are ``YES``.
        top_rank: the worst author rank whose posts are ``YES`` or ``MAYBE``.
        no_rank: the best author rank whose posts are ``NO``; above ``top_rank``.

    Returns:
        The labelled posts with a ``label`` column (``YES|MAYBE|NO``), in the
        order above, on a fresh index.

    Raises:
        KeyError: a required column is missing.
        ValueError: thresholds that overlap or are negative.
    """
    _require_columns(features, ("post_id", "post_score", "followship_rank"), "label_posts")
    if yes_count < 0 or top_rank < 1 or no_rank <= top_rank:
        raise ValueError(
            f"need yes_count >= 0 and 1 <= top_rank < no_rank, got yes_count={yes_count}, "
            f"top_rank={top_rank}, no_rank={no_rank}"
        )
    ordered = features.sort_values(
        ["post_score", "post_id"], ascending=[False, True], na_position="last", kind="mergesort"
    ).reset_index(drop=True)
    rank = ordered["followship_rank"].astype("float64")  # null rank -> NaN: no comparison holds
    top = (rank <= top_rank).to_numpy()
    yes = top & (np.cumsum(top) <= yes_count)
    label = np.select([yes, top, (rank >= no_rank).to_numpy()], ["YES", "MAYBE", "NO"], "")
    return ordered.assign(label=label)[label != ""].reset_index(drop=True)


def label_counts(labels: pd.Series) -> dict[str, int]:
    """Rows per class, every class of :data:`LABELS` present (in class-id order)."""
    counts = labels.value_counts()
    return {name: int(counts.get(name, 0)) for name in LABELS}


def check_label_counts(labels: pd.Series, min_per_class: int, context: str = "") -> None:
    """Refuse to train on too few labels, naming the counts.

    Raises:
        InsufficientLabels: some class has fewer than ``min_per_class`` rows.
    """
    counts = label_counts(labels)
    if min(counts.values()) < min_per_class:
        shown = ", ".join(f"{name}={count}" for name, count in counts.items())
        raise InsufficientLabels(
            f"cannot train: labelled rows {shown}{context}; every class needs at least "
            f"{min_per_class} rows"
        )


def encode_columns(
    features: pd.DataFrame,
    names: Sequence[str],
    vocabularies: Mapping[str, Sequence[str] | None],
    dtype: Any = np.float64,
) -> tuple[dict[str, Any], Unseen]:
    """Encode the named feature columns, in order.

    A feature in ``vocabularies`` with a vocabulary becomes a ``Categorical``
    coded against it; one mapped to None becomes an all-missing float column (a
    categorical feature the model never splits on). Every other feature is
    numeric (booleans 0/1, nulls NaN), as an array of ``dtype`` (float64 by default).

    Returns:
        ``{name: column}`` in ``names`` order, and the unknown categorical
        values per feature (features without any are left out).

    Raises:
        KeyError: a feature column is missing.
    """
    _require_columns(features, names, "features")
    columns: dict[str, Any] = {}
    unseen: Unseen = {}
    for name in names:
        if name in vocabularies:
            vocabulary = vocabularies[name]
            if vocabulary is None:
                columns[name] = np.full(len(features), np.nan, dtype=dtype)
                continue
            columns[name], unknown = encode_category(features[name], name, vocabulary)
            if unknown:
                unseen[name] = unknown
        else:
            columns[name] = features[name].to_numpy(dtype=dtype, na_value=np.nan)
    return columns, unseen


def encode_features(
    features: pd.DataFrame,
    names: Sequence[str],
    vocabularies: Mapping[str, Sequence[str] | None],
) -> tuple[pd.DataFrame, Unseen]:
    """:func:`encode_columns` as a frame (same index as ``features``): a model matrix."""
    columns, unseen = encode_columns(features, names, vocabularies)
    return pd.DataFrame(columns, index=features.index, copy=False), unseen


def prepare_matrix(features: pd.DataFrame) -> pd.DataFrame:
    """The training matrix: :data:`FEATURES` in order, categoricals coded by :data:`CATEGORICAL`.

    Raises:
        KeyError: a feature column is missing.
    """
    matrix, _ = encode_features(features, FEATURES, CATEGORICAL)
    return matrix


def stratified_split(
    labels: pd.Series, test_fraction: float = 0.25, seed: int = 0
) -> tuple[Positions, Positions]:
    """Split rows into train and test positions, class by class.

    Each class puts ``round(n * test_fraction)`` (half up) of its rows, drawn
    by a generator seeded with ``seed``, into the test set. Classes are visited
    in sorted order, so the result depends only on the labels and the seed.

    Returns:
        ``(train, test)``: sorted positions (``iloc``) into ``labels``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    values = labels.to_numpy()
    rng = np.random.default_rng(seed)
    chosen = [np.zeros(0, dtype=np.int64)]
    for name in sorted(set(values.tolist())):
        positions = np.flatnonzero(values == name)
        take = math.floor(len(positions) * test_fraction + 0.5)
        chosen.append(rng.permutation(positions)[:take].astype(np.int64))
    test = np.sort(np.concatenate(chosen))
    train = np.setdiff1d(np.arange(len(values), dtype=np.int64), test)
    return train, test


def training_params(seed: int = 0, nthread: int = 2) -> dict[str, Any]:
    """The booster parameters: the notebook's (hist, defaults) with probabilities out."""
    return {
        "objective": "multi:softprob",
        "num_class": len(LABELS),
        "tree_method": "hist",
        "eval_metric": "mlogloss",
        "seed": seed,
        "nthread": nthread,
    }


def class_ids(labels: pd.Series) -> npt.NDArray[np.int64]:
    """``YES|MAYBE|NO`` as class ids (positions in :data:`LABELS`)."""
    ids = labels.map({name: i for i, name in enumerate(LABELS)})
    if ids.isna().any():
        bad = sorted(set(labels[ids.isna()].astype(str)))
        raise ValueError(f"unknown label(s) {bad}; expected {list(LABELS)}")
    result: npt.NDArray[np.int64] = ids.to_numpy(dtype=np.int64)
    return result


def train(
    matrix: pd.DataFrame,
    labels: pd.Series,
    *,
    rounds: int = 100,
    seed: int = 0,
    nthread: int = 2,
) -> xgb.Booster:
    """Train the classifier; its categories and class names are stored in the model.

    Args:
        matrix: from :func:`prepare_matrix` (category columns with fixed vocabularies).
        labels: ``YES|MAYBE|NO`` per row of ``matrix``.
        rounds: boosting rounds.
        seed: the booster's seed (nothing is sampled with the defaults).
        nthread: CPU threads; the result does not depend on it.

    Returns:
        The booster (``multi:softprob``), attribute ``classes`` = ``MAYBE,NO,YES``.
    """
    data = xgb.DMatrix(matrix, label=class_ids(labels), enable_categorical=True, nthread=nthread)
    booster = xgb.train(training_params(seed, nthread), data, num_boost_round=rounds)
    booster.set_attr(classes=",".join(LABELS))
    return booster


def evaluate(booster: xgb.Booster, matrix: pd.DataFrame, labels: pd.Series) -> dict[str, Any]:
    """Accuracy and confusion matrix (rows actual, columns predicted, class-id order)."""
    actual = class_ids(labels)
    if len(actual) == 0:
        predicted = np.zeros(0, dtype=np.int64)
    else:
        scores = np.asarray(booster.inplace_predict(matrix)).reshape(len(actual), len(LABELS))
        predicted = scores.argmax(axis=1)
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    np.add.at(confusion, (actual, predicted), 1)
    return {
        "rows": len(actual),
        "accuracy": float((actual == predicted).mean()) if len(actual) else None,
        "confusion_matrix": {
            "labels": list(LABELS),
            "rows": "actual",
            "columns": "predicted",
            "counts": confusion.tolist(),
        },
    }


def model_card(
    booster: xgb.Booster,
    test_matrix: pd.DataFrame,
    test_labels: pd.Series,
    *,
    counts: Mapping[str, int],
    rows: Mapping[str, int],
    settings: TrainingSettings,
    input_commit: str,
) -> dict[str, Any]:
    """What a trained model is and how well it does on held-out rows.

    Args:
        booster: the trained model.
        test_matrix, test_labels: the held-out rows.
        counts: labelled rows per class (:func:`label_counts`).
        rows: row counts of the run (features, labelled, train, test).
        settings: the run's thresholds and parameters.
        input_commit: the features commit trained on (``lensfeed.pfs.input_commit``).

    Returns:
        A JSON-able dict with no clock or host in it: equal inputs give equal cards.
    """
    knobs = asdict(settings)
    return {
        "model": "model.json",
        "features": list(booster.feature_names or []),
        "feature_types": list(booster.feature_types or []),
        "categorical": {name: len(values) for name, values in CATEGORICAL.items()},
        "labels": list(LABELS),
        "label_counts": dict(counts),
        "rows": dict(rows),
        "thresholds": {key: knobs[key] for key in ("yes_count", "top_rank", "no_rank")},
        "split": {
            "stratified": True,
            "test_fraction": settings.test_fraction,
            "seed": settings.seed,
        },
        "parameters": {
            **training_params(settings.seed, settings.nthread),
            "num_boost_round": settings.rounds,
        },
        "held_out": evaluate(booster, test_matrix, test_labels),
        "input_commit": input_commit,
        "xgboost_version": xgb.__version__,
    }


def fit(
    features: pd.DataFrame, settings: TrainingSettings, *, input_commit: str = ""
) -> tuple[xgb.Booster, dict[str, Any]]:
    """Label, split, train and describe: the whole model stage on one frame.

    Returns:
        The booster and its model card.

    Raises:
        KeyError: a column the labels or the features need is missing.
        InsufficientLabels: some class has fewer than ``settings.min_per_class`` rows.
    """
    labelled = label_posts(features, settings.yes_count, settings.top_rank, settings.no_rank)
    thresholds = (
        f" (yes_count={settings.yes_count}, top_rank={settings.top_rank}, "
        f"no_rank={settings.no_rank}, {len(features)} posts)"
    )
    check_label_counts(labelled["label"], settings.min_per_class, thresholds)
    matrix = prepare_matrix(labelled)
    train_at, test_at = stratified_split(labelled["label"], settings.test_fraction, settings.seed)
    booster = train(
        matrix.iloc[train_at],
        labelled["label"].iloc[train_at],
        rounds=settings.rounds,
        seed=settings.seed,
        nthread=settings.nthread,
    )
    card = model_card(
        booster,
        matrix.iloc[test_at],
        labelled["label"].iloc[test_at],
        counts=label_counts(labelled["label"]),
        rows={
            "features": len(features),
            "labelled": len(labelled),
            "train": len(train_at),
            "test": len(test_at),
        },
        settings=settings,
        input_commit=input_commit,
    )
    return booster, card


# --- reading the features repo (the model entry point) ---

_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def read_features(directory: Path) -> pd.DataFrame:
    """Every ``*.parquet`` part under ``directory``, in name order, as one frame.

    Integer and boolean columns keep their nulls (pandas ``Int64``/``boolean``),
    so passthrough columns round-trip with their Arrow types.

    Raises:
        FileNotFoundError: no part (the features stage always writes one).
    """
    table = read_dataset(directory, kind="feature")
    return table.to_pandas(types_mapper=_NULLABLE.get)
