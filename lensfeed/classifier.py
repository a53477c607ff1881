"""What the classifier reads and answers, shared by training and scoring.

:mod:`lensfeed.model` trains on these features and :mod:`lensfeed.predict`
scores with them; both code the categorical features here, so that a value
gets the same code in either (training matrices from pandas, scoring input
from pandas or Arrow).

- :data:`FEATURES`: the 2023 production model's features, in its order;
  :data:`LABELS`: the class names by class id (``MAYBE=0, NO=1, YES=2``).
- :data:`CATEGORICAL`: the fixed vocabulary of each categorical feature, in
  code order, never the values of the batch at hand (the original's defect:
  ``astype('category')`` per batch gave a batch with fewer values different
  codes). Booleans are the string categories ``"false"`` and ``"true"``
  (XGBoost 3.2 crashes on a category column of NumPy booleans, and strings sort
  the same way as the 2023 notebook's boolean categories did).
- :func:`normalise_category` spells a raw value as its vocabulary does;
  :func:`encode_category` (pandas) and :func:`arrow_codes_into` (Arrow) code a
  column against a vocabulary. Null and unknown values become missing; unknown
  values are counted so that callers can report them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa

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


def arrow_codes_into(
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
