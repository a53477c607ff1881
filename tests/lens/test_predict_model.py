"""Loading a model for scoring: stored categories, the production model's inferred codes, and the models refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from lensfeed.booster import LEGACY_CODES, ModelError, load_model, split_categories
from lensfeed.classifier import CATEGORICAL, LABELS
from tests.lens.predict_inputs import (
    needs_production_model,
    tiny_model,
)
from tests.lens.test_model import (
    PRODUCTION_MODEL,
)


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


def test_a_model_needing_unknown_features_is_rejected(tmp_path):
    frame = pd.DataFrame({"upvotes": [1.0, 2.0, 3.0] * 10, "likes": 1.0, "shares": 2.0})
    with pytest.raises(ModelError, match="does not produce: likes, shares"):
        load_model(tiny_model(tmp_path, frame))


def test_a_model_with_another_objective_is_rejected(tmp_path):
    frame = pd.DataFrame({"upvotes": [1.0, 2.0, 3.0, 4.0] * 10})
    with pytest.raises(ModelError, match="binary:logistic"):
        load_model(tiny_model(tmp_path, frame, "binary:logistic"))


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
