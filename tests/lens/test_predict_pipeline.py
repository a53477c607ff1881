"""The ``predict`` entry point and spec: deterministic files, ``MODEL_PATH``, no model yet, and a run on pachlocal."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensfeed.booster import load_model
from lensfeed.model import read_features
from lensfeed.predict import (
    OUTPUT_COLUMNS,
    PASSTHROUGH,
    PREDICTIONS_SCHEMA,
    predict,
    write_predictions,
)
from pachlocal.spec import load_spec_documents, parse_pipeline_spec
from tests.lens.entry_points import load_entry_point
from tests.lens.predict_inputs import (
    needs_production_model,
    tiny_model,
    with_nulls_and_strays,
    write_parts,
)
from tests.lens.test_model import (
    PRODUCTION_MODEL,
    ROOT,
    synthetic_features,
    write_features,
)

predict_entry = load_entry_point("predict")


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
    tiny_model(tmp_path, frame).rename(tmp_path / "model" / "model.json")
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
