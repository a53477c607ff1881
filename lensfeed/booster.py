"""An XGBoost JSON model for scoring, and how to feed its categorical features.

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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import xgboost as xgb

from lensfeed.classifier import BOOLEAN_VALUES, FEATURES, LABELS, STRING_FEATURES

#: Feature columns a model may use: what the features stage writes.
PRODUCIBLE: frozenset[str] = frozenset(FEATURES) | {"is_hidden", "is_gated"}


OBJECTIVES = ("multi:softmax", "multi:softprob")


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
