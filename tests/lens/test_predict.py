"""Tests for lensfeed.predict and pipelines/predict.py: loading any usable XGBoost
JSON model, invariance to row and category order, the 2023 production model's
codes, unseen categories, rejected models and the entry point."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from lensfeed.model import CATEGORICAL, LABELS, fit, read_features
from lensfeed.predict import (
    LEGACY_CODES,
    OUTPUT_COLUMNS,
    PASSTHROUGH,
    PREDICTIONS_SCHEMA,
    ModelError,
    encode,
    load_model,
    predict,
    predict_table,
    read_features_table,
    split_categories,
    write_predictions,
)
from pachlocal.spec import load_spec_documents, parse_pipeline_spec
from tests.lens.entry_points import load_entry_point
from tests.lens.test_model import (
    PRODUCTION_MODEL,
    ROOT,
    SMALL,
    synthetic_features,
    write_features,
)

predict_entry = load_entry_point("predict")
needs_production_model = pytest.mark.skipif(
    not PRODUCTION_MODEL.exists(), reason=f"fixture {PRODUCTION_MODEL} absent (../shared)"
)


@pytest.fixture(scope="module")
def own_model_path(tmp_path_factory) -> Path:
    booster, _ = fit(synthetic_features(1500, seed=11), SMALL)
    path = tmp_path_factory.mktemp("model") / "model.json"
    path.write_bytes(bytes(booster.save_raw("json")))
    return path


@pytest.fixture(scope="module")
def production_features() -> pd.DataFrame:
    """~1000 posts at the production scale (108k peers, rank bands 1000 / 50000)."""
    return synthetic_features(1000, seed=5, n_peers=108_000, top_rank=1000, no_rank=50_000)


@pytest.fixture(scope="module")
def production_model():
    if not PRODUCTION_MODEL.exists():
        pytest.skip(f"fixture {PRODUCTION_MODEL} absent (../shared)")
    return load_model(PRODUCTION_MODEL, nthread=2)


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


# --- loading ---------------------------------------------------------------------


def test_load_model_reads_stored_categories(own_model_path):
    model = load_model(own_model_path)
    assert model.categories_stored
    assert model.classes == LABELS
    assert model.objective == "multi:softprob"
    assert dict(model.vocabularies) == dict(CATEGORICAL)


@needs_production_model
def test_load_model_infers_the_production_models_codes(production_model):
    model = production_model
    assert not model.categories_stored
    assert model.objective == "multi:softmax"
    assert model.classes == ("MAYBE", "NO", "YES")
    # only two categorical features are ever split on; the others are fed as missing
    assert split_categories(json.loads(PRODUCTION_MODEL.read_text())) == {
        "is_original": 0,
        "main_content_focus": 5,
    }
    assert model.vocabularies["main_content_focus"] == LEGACY_CODES["main_content_focus"]
    assert model.vocabularies["is_original"] == ("false", "true")
    assert {name for name, v in model.vocabularies.items() if v is None} == {
        "region",
        "custom_filters_gardener_flagged",
        "content_warning",
        "is_content_warning",
        "language",
    }


def _tiny_model(tmp_path: Path, frame: pd.DataFrame, objective: str = "multi:softmax") -> Path:
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


def test_a_model_needing_unknown_features_is_rejected(tmp_path):
    frame = pd.DataFrame({"upvotes": [1.0, 2.0, 3.0] * 10, "likes": 1.0, "shares": 2.0})
    with pytest.raises(ModelError, match="does not produce: likes, shares"):
        load_model(_tiny_model(tmp_path, frame))


def test_a_model_with_another_objective_is_rejected(tmp_path):
    frame = pd.DataFrame({"upvotes": [1.0, 2.0, 3.0, 4.0] * 10})
    with pytest.raises(ModelError, match="binary:logistic"):
        load_model(_tiny_model(tmp_path, frame, "binary:logistic"))


def test_a_model_without_categories_splitting_on_unknown_codes_is_rejected(tmp_path):
    rng = np.random.default_rng(0)
    languages = pd.Categorical(rng.choice(["en", "es", "fr", "ja", "zh", "de"], 300))
    frame = pd.DataFrame({"upvotes": rng.random(300), "language": languages})
    labels = np.asarray(languages.codes % 3)
    data = xgb.DMatrix(frame, label=labels, enable_categorical=True)
    params = {"objective": "multi:softmax", "num_class": 3, "tree_method": "hist", "nthread": 1}
    document = json.loads(bytes(xgb.train(params, data, 3).save_raw("json")))
    del document["learner"]["gradient_booster"]["model"]["cats"]  # as a 1.7 model is saved
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ModelError, match="splits on language codes up to"):
        load_model(path)


def test_a_file_that_is_no_model_is_rejected(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{"not": "a model"}')
    with pytest.raises(ModelError, match="not an XGBoost JSON model"):
        load_model(path)


# --- predicting ------------------------------------------------------------------


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


# --- Arrow in, Arrow out -----------------------------------------------------------


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


# --- the entry point and the spec ------------------------------------------------


def run_main(tmp_path: Path, out: str, model_dir: Path | None = None) -> int:
    return predict_entry.main(
        [
            "--features",
            str(tmp_path / "features"),
            "--model",
            str(model_dir or tmp_path / "model"),
            "--out",
            str(tmp_path / out),
        ]
    )


def test_main_writes_sorted_deterministic_predictions(tmp_path, own_model_path, capsys):
    features = synthetic_features(400, seed=31)
    write_features(features, tmp_path / "features")
    assert run_main(tmp_path, "one", own_model_path.parent) == 0
    assert run_main(tmp_path, "two", own_model_path.parent) == 0
    first = (tmp_path / "one" / "predictions.parquet").read_bytes()
    assert first == (tmp_path / "two" / "predictions.parquet").read_bytes()
    table = pq.read_table(tmp_path / "one" / "predictions.parquet")
    assert table.schema.equals(PREDICTIONS_SCHEMA)
    assert table.column("post_id").to_pylist() == sorted(features["post_id"])
    assert "400 posts labelled" in capsys.readouterr().out


def test_main_writes_what_the_pandas_path_writes(tmp_path, own_model_path, capsys):
    features = with_nulls_and_strays(synthetic_features(700, seed=32))
    write_parts(features.sample(frac=1.0, random_state=5), tmp_path / "features" / "features")
    assert run_main(tmp_path, "out", own_model_path.parent) == 0
    reference = predict(
        load_model(own_model_path), read_features(tmp_path / "features" / "features")
    )
    write_predictions(reference, tmp_path / "reference.parquet")
    written = (tmp_path / "out" / "predictions.parquet").read_bytes()
    assert written == (tmp_path / "reference.parquet").read_bytes()
    counts = reference["label"].value_counts().to_dict()
    assert f"700 posts labelled with {own_model_path} {counts}" in capsys.readouterr().out


@needs_production_model
def test_main_uses_model_path(tmp_path, monkeypatch, production_features, capsys):
    write_features(production_features, tmp_path / "features")
    monkeypatch.setenv("MODEL_PATH", str(PRODUCTION_MODEL))
    assert run_main(tmp_path, "out") == 0
    predictions = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert len(predictions) == len(production_features)
    assert str(PRODUCTION_MODEL) in capsys.readouterr().out


def test_main_without_a_model_writes_nothing(tmp_path, capsys):
    write_features(synthetic_features(30, seed=1), tmp_path / "features")
    (tmp_path / "model").mkdir()
    assert run_main(tmp_path, "out") == 0
    assert not (tmp_path / "out").exists()
    assert "no model" in capsys.readouterr().out


def test_main_fails_when_model_path_is_missing(tmp_path, monkeypatch, capsys):
    write_features(synthetic_features(30, seed=1), tmp_path / "features")
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "absent.json"))
    assert run_main(tmp_path, "out") == 2
    assert "MODEL_PATH" in capsys.readouterr().err


def test_main_rejects_an_unusable_model(tmp_path, capsys):
    write_features(synthetic_features(30, seed=1), tmp_path / "features")
    frame = pd.DataFrame({"upvotes": [1.0, 2.0, 3.0] * 10, "likes": 1.0})
    (tmp_path / "model").mkdir()
    _tiny_model(tmp_path, frame).rename(tmp_path / "model" / "model.json")
    assert run_main(tmp_path, "out") == 2
    assert "likes" in capsys.readouterr().err


def test_predict_spec_is_valid_and_follows_the_dag():
    path = ROOT / "specs" / "predict.pipeline.json"
    (document,) = load_spec_documents(path.read_text(), str(path))
    spec = parse_pipeline_spec(document)
    assert spec["pipeline"]["name"] == "predict"
    assert spec["description"]
    inputs = {c["pfs"]["name"]: c["pfs"] for c in spec["input"]["cross"]}
    assert {n: (p["repo"], p["glob"]) for n, p in inputs.items()} == {
        "features": ("features", "/"),
        "model": ("model", "/"),
    }
    cmd = spec["transform"]["cmd"]
    assert cmd[:2] == ["python3", "pipelines/predict.py"]
    assert cmd[cmd.index("--model") + 1] == "/pfs/model"


@pytest.mark.integration
def test_features_to_model_to_predict_on_pachlocal(tmp_path):
    """The model and predict specs as written, on the local engine: a slice of the DAG."""
    from pachlocal.engine import Engine

    part = tmp_path / "part-00000.parquet"
    write_features(synthetic_features(800, seed=41), tmp_path)
    (tmp_path / "features" / "part-00000.parquet").rename(part)
    docs = {}
    for name in ("model", "predict"):
        path = ROOT / "specs" / f"{name}.pipeline.json"
        (docs[name],) = load_spec_documents(path.read_text(), str(path))
    # thresholds for 800 posts by ~100 authors ranked up to 2000
    docs["model"]["transform"]["env"].update(
        {"LABEL_YES_COUNT": "30", "LABEL_TOP_RANK": "100", "LABEL_NO_RANK": "1000"}
    )
    with Engine(tmp_path / "state") as engine:
        engine.store.create_repo("features")
        engine.commit_files("features", "master", [("/features/part-00000.parquet", part)])
        for name in ("model", "predict"):
            engine.create_pipeline(docs[name], code_root=ROOT)
        engine.run_pending()
        # the daily trigger branch waits for midnight: the deploy's bootstrap moves it now
        assert engine.empty_trigger_branches() == [("features", "model-trigger-1", "master")]
        engine.create_branch("features", "model-trigger-1", head="master")
        engine.run_pending()
        assert {(j["pipeline"], j["state"]) for j in engine.jobs()} == {
            ("model", "success"),
            ("predict", "success"),
        }
        store = engine.store
        model_files = store.manifest(store.resolve("model@master"))
        assert set(model_files) == {"/model.json", "/model_card.json"}
        card = json.loads(store.objects.read(model_files["/model_card.json"].hash))
        trigger_head = store.resolve("features@model-trigger-1")
        assert card["input_commit"] == trigger_head.id
        assert trigger_head.provenance["alias_of"] == store.resolve("features@master").id
        out = store.manifest(store.resolve("predict@master"))["/predictions.parquet"]
        predictions = pq.read_table(pa.BufferReader(store.objects.read(out.hash)))
    assert predictions.num_rows == 800
    assert predictions.schema.names == list(OUTPUT_COLUMNS)


def test_predicts_from_files_in_the_features_stage_schema(tmp_path, own_model_path):
    pytest.importorskip("pyspark")
    from lensfeed.features import FEATURE_COLUMNS, FEATURES_SCHEMA

    features = synthetic_features(300, seed=51)[list(FEATURE_COLUMNS)]
    table = pa.Table.from_pandas(features, preserve_index=False).cast(FEATURES_SCHEMA)
    (tmp_path / "features").mkdir()
    pq.write_table(table, tmp_path / "features" / "part-00000.parquet")
    predictions = predict(load_model(own_model_path), read_features(tmp_path / "features"))
    written = tmp_path / "predictions.parquet"
    write_predictions(predictions, written)
    schema = pq.read_schema(written)
    for name in PASSTHROUGH:
        assert schema.field(name).type == FEATURES_SCHEMA.field(name).type, name
    assert len(predictions) == 300
