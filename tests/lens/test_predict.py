"""Predicting labels from pandas and from Arrow: order-independent, thread-independent, unseen categories reported, both doors equal."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xgboost as xgb

from lensfeed.booster import load_model
from lensfeed.classifier import CATEGORICAL, LABELS
from lensfeed.matrix import encode
from lensfeed.model import read_features
from lensfeed.predict import (
    OUTPUT_COLUMNS,
    PREDICTIONS_SCHEMA,
    predict,
    predict_table,
    read_features_table,
    write_predictions,
)
from tests.lens.predict_inputs import (
    as_plain,
    check_predictions,
    needs_production_model,
    shuffled_with_other_category_order,
    with_nulls_and_strays,
    write_parts,
)
from tests.lens.test_model import (
    PRODUCTION_MODEL,
    synthetic_features,
)


def test_own_model_predictions_ignore_row_and_category_order(own_model_path):
    model = load_model(own_model_path)
    features = synthetic_features(600, seed=21)
    predictions = predict(model, features)
    check_predictions(predictions, features)
    assert set(predictions["label"]) == {"YES", "MAYBE", "NO"}
    other = predict(model, shuffled_with_other_category_order(features))
    pd.testing.assert_frame_equal(as_plain(other), predictions)


def test_predictions_do_not_depend_on_threads(own_model_path):
    features = synthetic_features(600, seed=22)
    one = predict(load_model(own_model_path, nthread=1), features)
    two = predict(load_model(own_model_path, nthread=2), features)
    pd.testing.assert_frame_equal(one, two)


@needs_production_model
def test_production_predictions_ignore_row_and_category_order(
    production_model, production_features
):
    predictions = predict(production_model, production_features)
    other = predict(production_model, shuffled_with_other_category_order(production_features))
    pd.testing.assert_frame_equal(as_plain(other), predictions)


@needs_production_model
def test_production_model_gives_a_sane_label_distribution(production_model, production_features):
    predictions = predict(production_model, production_features)
    check_predictions(predictions, production_features)
    labels = predictions.set_index("post_id")["label"]
    rank = production_features.set_index("post_id").loc[labels.index, "followship_rank"]
    shares = labels.value_counts(normalize=True)
    assert set(shares.index) == {"YES", "MAYBE", "NO"}
    assert 0.3 < shares["NO"] < 0.9
    # it mostly relearned the rules: low-trust authors NO, top authors never NO
    assert (labels[rank >= 50_000] == "NO").mean() > 0.95
    assert (labels[rank <= 1000] != "NO").all()


@needs_production_model
def test_labels_are_what_multi_softmax_itself_predicts(production_model, production_features):
    features = production_features.sort_values("post_id").reset_index(drop=True)
    codes, _ = encode(production_model, features)  # raw codes: no categories stored
    data = xgb.DMatrix(
        codes,
        feature_names=list(production_model.feature_names),
        feature_types=list(production_model.feature_types),
        enable_categorical=True,
    )
    class_ids = production_model.booster.predict(data).astype(int)
    expected = np.array(LABELS, dtype=object)[class_ids]
    assert (predict(production_model, features)["label"].to_numpy() == expected).all()


@needs_production_model
def test_unseen_categories_are_reported_and_fed_as_missing(production_model, production_features):
    features = production_features.copy()
    features.loc[:4, "main_content_focus"] = "EMBED"  # absent from the 2023 training frame
    features.loc[5:6, "main_content_focus"] = "hologram"
    predictions = predict(production_model, features)
    assert predictions.attrs["unseen_categories"] == {
        "main_content_focus": {"EMBED": 5, "HOLOGRAM": 2}
    }
    missing = features.copy()
    missing.loc[:6, "main_content_focus"] = None
    as_missing = predict(production_model, missing)
    assert as_missing.attrs["unseen_categories"] == {}
    columns = ["post_id", "label", "p_maybe", "p_no", "p_yes"]
    pd.testing.assert_frame_equal(predictions[columns], as_missing[columns])


def test_unseen_categories_of_own_model_are_reported(own_model_path):
    features = synthetic_features(50, seed=23)
    features.loc[:2, "language"] = ["xx", "xx", "und"]
    predictions = predict(load_model(own_model_path), features)
    assert predictions.attrs["unseen_categories"] == {"language": {"und": 1, "xx": 2}}


@needs_production_model
def test_the_inferred_codes_matter(production_model):
    # Guard against a no-op mapping: moving main_content_focus codes changes labels.
    features = synthetic_features(5000, seed=6, n_peers=108_000, top_rank=1000, no_rank=50_000)
    shifted = dict(production_model.vocabularies)
    shifted["main_content_focus"] = CATEGORICAL["main_content_focus"]  # 7 values, EMBED=2
    other = replace(production_model, vocabularies=MappingProxyType(shifted))
    assert (predict(other, features)["label"] != predict(production_model, features)["label"]).any()


def test_predict_handles_no_posts(own_model_path):
    features = synthetic_features(30, seed=1).iloc[0:0]
    predictions = predict(load_model(own_model_path), features)
    assert len(predictions) == 0
    assert tuple(predictions.columns) == OUTPUT_COLUMNS


def test_predict_names_a_missing_column(own_model_path):
    features = synthetic_features(30, seed=1)
    with pytest.raises(KeyError, match="is_gated"):
        predict(load_model(own_model_path), features.drop(columns="is_gated"))
    with pytest.raises(KeyError, match="post_score"):
        predict(load_model(own_model_path), features.drop(columns="post_score"))


@pytest.fixture(params=["own", "production"])
def any_model(request, own_model_path):
    if request.param == "own":
        return load_model(own_model_path)
    if not PRODUCTION_MODEL.exists():
        pytest.skip(f"fixture {PRODUCTION_MODEL} absent (../shared)")
    return load_model(PRODUCTION_MODEL, nthread=2)


@pytest.mark.parametrize("shuffled", [False, True])
def test_arrow_predictions_are_the_pandas_predictions(tmp_path, any_model, shuffled):
    features = with_nulls_and_strays(synthetic_features(900, seed=61))
    if shuffled:
        features = features.sample(frac=1.0, random_state=4).reset_index(drop=True)
    else:
        features = features.sort_values("post_id").reset_index(drop=True)
    directory = write_parts(features, tmp_path / "features")
    table = read_features_table(directory)
    assert table.column("main_content_focus").num_chunks > 3
    assert pa.types.is_dictionary(table.column("main_content_focus").type)
    expected = predict(any_model, read_features(directory))
    got, unseen = predict_table(any_model, table)
    assert got.schema.equals(PREDICTIONS_SCHEMA)
    assert unseen == expected.attrs["unseen_categories"]
    assert unseen["main_content_focus"]["HOLOGRAM"] == 1
    write_predictions(got, tmp_path / "arrow.parquet")
    write_predictions(expected, tmp_path / "pandas.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "arrow.parquet"), pd.read_parquet(tmp_path / "pandas.parquet")
    )
    assert (tmp_path / "arrow.parquet").read_bytes() == (tmp_path / "pandas.parquet").read_bytes()


def test_encode_reads_arrow_as_it_reads_pandas(tmp_path, any_model):
    features = with_nulls_and_strays(synthetic_features(500, seed=62))
    table = read_features_table(write_parts(features, tmp_path / "features"))
    from_arrow, unseen_arrow = encode(any_model, table)
    from_pandas, unseen_pandas = encode(any_model, features)
    assert unseen_arrow == unseen_pandas
    if any_model.categories_stored:
        pd.testing.assert_frame_equal(from_arrow, from_pandas, check_exact=True)
    else:
        assert from_arrow.dtype == np.float32 and from_arrow.flags.f_contiguous
        np.testing.assert_array_equal(from_arrow, from_pandas)
        assert np.isnan(from_arrow).any()  # the nulls are there, as NaN


class FixedMargins:
    """A booster that predicts the given margins, whatever the input."""

    def __init__(self, margins: np.ndarray) -> None:
        self.margins = margins

    def inplace_predict(self, data, predict_type):
        assert predict_type == "margin" and data.shape[0] == len(self.margins)
        return self.margins


def test_labels_are_the_first_largest_margin_and_probabilities_its_softmax(own_model_path):
    margins = np.array(
        [[1, 2, 3], [3, 2, 1], [2, 2, 1], [1, 2, 2], [2, 1, 2], [0, 0, 0], [-50, 40, 39.5]],
        dtype=np.float32,
    )
    features = synthetic_features(len(margins), seed=63).sort_values("post_id")
    model = replace(load_model(own_model_path), booster=FixedMargins(margins))
    # ties go to the first class, as argmax and multi:softmax have it
    expected_labels = [model.classes[k] for k in (2, 0, 0, 1, 0, 0, 1)]
    shifted = np.exp(margins.astype(np.float64) - margins.max(axis=1, keepdims=True))
    expected_p = shifted / shifted.sum(axis=1, keepdims=True)
    table = pa.Table.from_pandas(features, preserve_index=False)
    for got in (predict(model, features), predict_table(model, table)[0].to_pandas()):
        assert got["label"].tolist() == expected_labels
        for k, name in enumerate(model.classes):
            np.testing.assert_allclose(got[f"p_{name.lower()}"], expected_p[:, k], rtol=1e-15)


def test_read_features_table_needs_a_part(tmp_path):
    (tmp_path / "features").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*\.parquet feature files"):
        read_features_table(tmp_path / "features")


def test_predict_table_handles_no_posts(tmp_path, own_model_path):
    features = synthetic_features(30, seed=1).iloc[0:0]
    table = pa.Table.from_pandas(features, preserve_index=False)
    predictions, unseen = predict_table(load_model(own_model_path), table)
    assert predictions.num_rows == 0 and unseen == {}
    assert predictions.schema.equals(PREDICTIONS_SCHEMA)
    write_predictions(predictions, tmp_path / "arrow.parquet")
    write_predictions(predict(load_model(own_model_path), features), tmp_path / "pandas.parquet")
    assert (tmp_path / "arrow.parquet").read_bytes() == (tmp_path / "pandas.parquet").read_bytes()


def test_predict_table_names_a_missing_column(own_model_path):
    table = pa.Table.from_pandas(synthetic_features(30, seed=1), preserve_index=False)
    with pytest.raises(KeyError, match="is_gated"):
        predict_table(load_model(own_model_path), table.drop_columns(["is_gated"]))
    with pytest.raises(KeyError, match="post_score"):
        predict_table(load_model(own_model_path), table.drop_columns(["post_score"]))
