"""Training labels and the XGBoost classifier of the Lens feed (the ``model`` stage).

The rules follow the original notebook (``docs/dag.md``, section model; the
domain reference, section 4): posts are labelled from their score and their
author's trust rank, split 75/25 stratified by label, and a 3-class model is
trained with ``tree_method=hist`` for 100 rounds. Class ids are the positions
in :data:`LABELS`: ``MAYBE=0, NO=1, YES=2``, as in the 2023 production model.

Categorical features are coded against the fixed vocabularies of
:data:`CATEGORICAL`, never against the values of the batch at hand (the
original's defect: ``astype('category')`` per batch gave a batch with fewer
values different codes). Booleans become the string categories ``"false"`` and
``"true"``: XGBoost 3.2 crashes on a category column of NumPy booleans, and
strings sort the same way (``false`` before ``true``) as the 2023 notebook's
boolean categories did. Null and unknown values become missing (NaN), which
XGBoost sends along each split's learned default branch; an unknown value is
counted so that callers can report it. The model is trained with
``enable_categorical=True``, so the vocabularies are stored in the model JSON
and :mod:`lensfeed.predict` re-codes its input against them.

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
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

#: Class names by class id (``MAYBE=0, NO=1, YES=2``).
LABELS: tuple[str, ...] = ("MAYBE", "NO", "YES")

#: The 2023 production model's features, in its order.
FEATURES: tuple[str, ...] = (
    "region",
    "collects",
    "followship_score",
    "custom_filters_gardener_flagged",
    "upvotes",
    "content_warning",
    "mirrors",
    "is_original",
    "is_content_warning",
    "age",
    "followship_rank",
    "downvotes",
    "main_content_focus",
    "comments",
    "language",
    "max_age",
    "max_mirrors",
    "max_collects",
    "max_comments",
    "post_score",
)

BOOLEAN_VALUES: tuple[str, ...] = ("false", "true")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: ISO 639-1 codes, lower case (``language`` is reduced to its primary subtag).
LANGUAGES: tuple[str, ...] = _words(
    """aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch
    co cr cs cu cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd
    gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka
    kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi
    mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl
    ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw
    ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo
    za zh zu"""
)
#: ISO 3166-1 alpha-2 codes, upper case.
REGIONS: tuple[str, ...] = _words(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ
    BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU
    CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB
    GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL
    IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI
    LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN
    PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR
    SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US
    UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"""
)

#: The category vocabulary of each categorical feature, in code order. Fixed
#: here, stored in every trained model, and read back from it by the predict step.
CATEGORICAL: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "region": REGIONS,
        "custom_filters_gardener_flagged": BOOLEAN_VALUES,
        "content_warning": ("NSFW", "SENSITIVE", "SPOILER"),
        "is_original": BOOLEAN_VALUES,
        "is_content_warning": BOOLEAN_VALUES,
        "main_content_focus": ("ARTICLE", "AUDIO", "EMBED", "IMAGE", "LINK", "TEXT_ONLY", "VIDEO"),
        "language": LANGUAGES,
    }
)
#: Features whose values are strings: they can only be fed as categories.
STRING_FEATURES: frozenset[str] = frozenset(
    {"region", "content_warning", "main_content_focus", "language"}
)
_BOOLEAN_FEATURES = frozenset(
    name for name, values in CATEGORICAL.items() if values == BOOLEAN_VALUES
) | {"is_hidden", "is_gated"}

#: Counts of unknown categorical values: ``{feature: {value: rows}}``.
Unseen = dict[str, dict[str, int]]
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


def normalise_category(feature: str, value: Any) -> str | None:
    """The vocabulary spelling of one raw value, or None for a null.

    Booleans become ``"false"``/``"true"``; strings are stripped, ``language``
    is reduced to its lower-case primary subtag (``en-US`` -> ``en``), other
    features are upper-cased. An empty string is null.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    text = str(value).strip()
    if not text:
        return None
    if feature == "language":
        return text.replace("_", "-").split("-")[0].lower()
    if feature in _BOOLEAN_FEATURES:
        return text.lower()
    return text.upper()


def category_lookup(
    feature: str, uniques: Any, vocabulary: Sequence[str], missing: Any, dtype: Any
) -> tuple[Any, dict[int, str]]:
    """The code of each distinct raw value, and the values outside the vocabulary.

    Args:
        feature: the feature's name (selects the spelling rules).
        uniques: the distinct raw values of a column.
        vocabulary: the categories in code order.
        missing: the code of a null or unknown value.
        dtype: the codes' NumPy type.

    Returns:
        An array of ``len(uniques) + 1`` codes (the last slot, for a null, is
        ``missing``), and position in ``uniques`` -> spelling for unknown values.
    """
    index = {value: code for code, value in enumerate(vocabulary)}
    lookup = np.full(len(uniques) + 1, missing, dtype=dtype)
    unknown: dict[int, str] = {}
    for i, value in enumerate(uniques):
        spelled = normalise_category(feature, value)
        if spelled is None:
            continue
        if spelled in index:
            lookup[i] = index[spelled]
        else:
            unknown[i] = spelled
    return lookup, unknown


def encode_category(
    column: pd.Series, feature: str, vocabulary: Sequence[str]
) -> tuple[pd.Categorical, dict[str, int]]:
    """Code one column against a fixed vocabulary.

    Args:
        column: raw values (strings, booleans, nulls).
        feature: the feature's name (selects the spelling rules).
        vocabulary: the categories in code order.

    Returns:
        A ``Categorical`` whose categories are exactly ``vocabulary`` (so its
        codes never depend on the batch), and the unknown values with their row
        counts; unknown values and nulls are missing.
    """
    raw_codes, uniques = pd.factorize(column, use_na_sentinel=True)
    lookup, unknown = category_lookup(feature, uniques, vocabulary, -1, np.dtype(np.int64))
    codes = lookup[raw_codes]
    unseen: dict[str, int] = {}
    if unknown:
        counts = np.bincount(raw_codes[raw_codes >= 0], minlength=len(uniques))
        for i, spelled in unknown.items():
            unseen[spelled] = unseen.get(spelled, 0) + int(counts[i])
    categorical = pd.Categorical.from_codes(codes, categories=pd.Index(list(vocabulary)))
    return categorical, dict(sorted(unseen.items()))


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


# --- reading the features repo (used by the model and predict entry points) ---

_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def read_features(directory: Path) -> pd.DataFrame:
    """Every ``*.parquet`` part under ``directory``, in name order, as one frame.

    Integer and boolean columns keep their nulls (pandas ``Int64``/``boolean``),
    so passthrough columns round-trip with their Arrow types.

    Raises:
        FileNotFoundError: no part (the features stage always writes one).
    """
    parts = sorted(directory.glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no *.parquet feature files under {directory}")
    table = pa.concat_tables([pq.read_table(part) for part in parts], promote_options="default")
    return table.to_pandas(types_mapper=_NULLABLE.get)
