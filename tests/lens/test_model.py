"""Tests for lensfeed.model and pipelines/model.py: labels, stable category codes,
the stratified split, deterministic training, the model card and the entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from lensfeed.classifier import BOOLEAN_VALUES, CATEGORICAL, FEATURES, LABELS, encode_category
from lensfeed.model import (
    InsufficientLabels,
    TrainingSettings,
    check_label_counts,
    fit,
    label_posts,
    prepare_matrix,
    read_features,
    stratified_split,
    train,
)
from pachlocal.spec import load_spec_documents, parse_pipeline_spec
from tests.lens.entry_points import load_entry_point

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
PRODUCTION_MODEL = SHARED / "fixtures" / "lens-production-model-20230522053757.json"


model_entry = load_entry_point("model")
#: Thresholds for the small synthetic sets (2,000 ranked authors at most).
SMALL = TrainingSettings(yes_count=30, top_rank=100, no_rank=1000, rounds=20, min_per_class=5)


def synthetic_features(
    n: int,
    seed: int = 0,
    *,
    n_peers: int = 2000,
    top_rank: int = 100,
    no_rank: int = 1000,
) -> pd.DataFrame:
    """Plausible rows of the features snapshot (``docs/dag.md``), built directly.

    Authors fall in three rank bands (``<= top_rank``, between, ``>= no_rank``)
    and 5 % have no rank; scores follow Zipf's law over ``n_peers`` (with the
    production scale, 108k peers, rank 1000 scores about 8e-5, where the 2023
    model's first split lies); counters are heavy-tailed, mirrors have none;
    per-author maxima and ``post_score`` follow the reference's formulas.
    """
    rng = np.random.default_rng(seed)
    n_authors = max(n // 8, 20)
    band = rng.choice(3, size=n_authors, p=[0.3, 0.4, 0.3])
    low = np.array([1, top_rank + 1, no_rank])[band]
    high = np.array([top_rank, no_rank - 1, n_peers])[band]
    author_rank = rng.integers(low, high + 1).astype("float64")
    author_rank[rng.random(n_authors) < 0.05] = np.nan
    author = rng.integers(0, n_authors, n)
    rank = author_rank[author]
    feature_time = pd.Timestamp("2023-05-22T05:00:00Z")
    posted = (feature_time - pd.to_timedelta(rng.random(n) * 60 * 86400, unit="s")).floor("us")
    original = rng.random(n) >= 0.15
    rate = np.exp(rng.normal(0.0, 1.8, n)) * original
    warning = rng.choice(np.array([None, "NSFW"], dtype=object), n, p=[0.995, 0.005])
    frame = pd.DataFrame(
        {
            "post_id": [f"0x{a:05x}-0x{i:05x}" for i, a in enumerate(author)],
            "profile_id": [f"0x{a:05x}" for a in author],
            "block_timestamp": posted,
            "feature_time": feature_time,
            "region": rng.choice(
                np.array([None, "US", "GB"], dtype=object), n, p=[0.99, 0.005, 0.005]
            ),
            "language": rng.choice(
                np.array([None, "en", "es", "zh", "fr", "EN", "en-US"], dtype=object),
                n,
                p=[0.06, 0.7, 0.08, 0.06, 0.06, 0.02, 0.02],
            ),
            "main_content_focus": rng.choice(
                np.array(["TEXT_ONLY", "IMAGE", "VIDEO", "ARTICLE", "LINK", "AUDIO"], dtype=object),
                n,
                p=[0.55, 0.3, 0.07, 0.04, 0.025, 0.015],
            ),
            "content_warning": warning,
            "is_content_warning": pd.notna(warning),
            "is_original": original,
            "custom_filters_gardener_flagged": rng.random(n) < 0.005,
            "is_hidden": rng.random(n) < 0.01,
            "is_gated": rng.random(n) < 0.02,
            "has_error": rng.random(n) < 0.003,
            "collects": rng.poisson(0.25 * rate),
            "mirrors": rng.poisson(0.4 * rate),
            "comments": rng.poisson(0.6 * rate),
            "upvotes": rng.poisson(1.5 * rate),
            "downvotes": rng.poisson(0.05 * rate),
            "age": ((feature_time - posted) // pd.Timedelta(days=1)).astype("int64"),
            "followship_rank": pd.array(rank, dtype="Int64"),
            "followship_score": 1.0 / (rank * (np.log(n_peers) + 0.5772)),
        }
    )
    by_author = frame.groupby("profile_id")
    for name in ("age", "mirrors", "collects", "comments"):
        frame[f"max_{name}"] = by_author[name].transform("max")

    def ratio(name: str) -> pd.Series:
        return frame[name] / frame[f"max_{name}"].astype("float64").replace(0, 1e10)

    frame["post_score"] = (
        ratio("mirrors") + ratio("collects") + 3 * ratio("comments") - 5 * ratio("age")
    )
    return frame


def write_features(frame: pd.DataFrame, features_dir: Path) -> None:
    """Lay ``frame`` out as the features repo does: ``/features/part-00000.parquet``."""
    (features_dir / "features").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, features_dir / "features" / "part-00000.parquet")


# --- label_posts ---------------------------------------------------------------


@pytest.fixture
def scored() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "post_id": ["a", "b2", "b1", "c", "d", "e", "f", "g"],
            "post_score": [5.0, 4.0, 4.0, 3.0, 9.0, 8.0, 2.0, 1.0],
            "followship_rank": pd.array([1, 10, 3, 50, 100, None, 11, 99], dtype="Int64"),
        }
    )


def test_label_posts_applies_each_rule(scored):
    labelled = label_posts(scored, yes_count=2, top_rank=10, no_rank=100)
    expected = pd.DataFrame(
        {
            # by score desc; b1 and b2 tie at 4.0 and b1 wins the last YES by post_id;
            # e (null rank), c, f (rank 11) and g (rank 99) are unlabelled
            "post_id": ["d", "a", "b1", "b2"],
            "post_score": [9.0, 5.0, 4.0, 4.0],
            "followship_rank": pd.array([100, 1, 3, 10], dtype="Int64"),
            "label": ["NO", "YES", "YES", "MAYBE"],
        }
    )
    pd.testing.assert_frame_equal(labelled, expected)


def test_label_posts_thresholds_are_configurable(scored):
    labelled = label_posts(scored, yes_count=0, top_rank=11, no_rank=99)
    expected = pd.DataFrame(
        {
            "post_id": ["d", "a", "b1", "b2", "f", "g"],
            "post_score": [9.0, 5.0, 4.0, 4.0, 2.0, 1.0],
            "followship_rank": pd.array([100, 1, 3, 10, 11, 99], dtype="Int64"),
            "label": ["NO", "MAYBE", "MAYBE", "MAYBE", "MAYBE", "NO"],
        }
    )
    pd.testing.assert_frame_equal(labelled, expected)


def test_label_posts_puts_a_null_score_last_and_keeps_extra_columns():
    frame = pd.DataFrame(
        {
            "post_id": ["x", "y", "z"],
            "post_score": [np.nan, 0.5, 0.1],
            "followship_rank": pd.array([1, 2, 3], dtype="Int64"),
            "mirrors": [7, 8, 9],
        }
    )
    labelled = label_posts(frame, yes_count=1, top_rank=5, no_rank=10)
    expected = pd.DataFrame(
        {
            "post_id": ["y", "z", "x"],
            "post_score": [0.5, 0.1, np.nan],
            "followship_rank": pd.array([2, 3, 1], dtype="Int64"),
            "mirrors": [8, 9, 7],
            "label": ["YES", "MAYBE", "MAYBE"],
        }
    )
    pd.testing.assert_frame_equal(labelled, expected)


def test_label_posts_does_not_mutate_its_input(scored):
    before = scored.copy()
    label_posts(scored, yes_count=2, top_rank=10, no_rank=100)
    pd.testing.assert_frame_equal(scored, before)


def test_label_posts_names_a_missing_column(scored):
    with pytest.raises(KeyError, match="followship_rank"):
        label_posts(scored.drop(columns="followship_rank"))


@pytest.mark.parametrize(
    ("yes_count", "top_rank", "no_rank"), [(-1, 10, 100), (1, 0, 100), (1, 100, 100)]
)
def test_label_posts_rejects_overlapping_thresholds(scored, yes_count, top_rank, no_rank):
    with pytest.raises(ValueError, match="top_rank"):
        label_posts(scored, yes_count, top_rank, no_rank)


def test_check_label_counts_names_every_count():
    labels = pd.Series(["YES", "MAYBE", "MAYBE"])
    with pytest.raises(InsufficientLabels, match=r"MAYBE=2, NO=0, YES=1"):
        check_label_counts(labels, min_per_class=1)
    check_label_counts(pd.Series(["YES", "MAYBE", "NO"]), min_per_class=1)


# --- category coding -------------------------------------------------------------


@pytest.fixture
def mixed() -> pd.DataFrame:
    frame = synthetic_features(40, seed=3)
    frame.loc[0:5, "main_content_focus"] = ["VIDEO", "ARTICLE", "AUDIO", "LINK", "IMAGE", "EMBED"]
    frame.loc[0:3, "language"] = ["de", "EN", " ja ", "pt-BR"]
    return frame


def test_prepare_matrix_has_the_production_features_and_fixed_vocabularies(mixed):
    matrix = prepare_matrix(mixed)
    assert tuple(matrix.columns) == FEATURES
    for name, vocabulary in CATEGORICAL.items():
        assert list(matrix[name].cat.categories) == list(vocabulary), name
    numeric = [name for name in FEATURES if name not in CATEGORICAL]
    assert all(matrix[name].dtype == np.float64 for name in numeric)
    assert list(CATEGORICAL["is_original"]) == list(BOOLEAN_VALUES)


def test_prepare_matrix_codes_do_not_depend_on_the_batch(mixed):
    whole = prepare_matrix(mixed).set_index(mixed["post_id"])
    reordered = mixed.iloc[::-1].reset_index(drop=True)
    # a batch without VIDEO, ARTICLE, AUDIO, LINK or EMBED posts, nor originals
    small = mixed[mixed["main_content_focus"].isin(["TEXT_ONLY", "IMAGE"]) & ~mixed["is_original"]]
    assert 0 < len(small) < len(mixed)
    for batch in (reordered, small):
        coded = prepare_matrix(batch).set_index(batch["post_id"])
        for name in CATEGORICAL:
            expected = whole.loc[coded.index, name].cat.codes
            pd.testing.assert_series_equal(coded[name].cat.codes, expected, check_names=False)
    # what the original did per batch gives other codes to the same values
    naive = small["main_content_focus"].astype("category").cat.codes.to_numpy()
    fixed = whole.loc[small["post_id"], "main_content_focus"].cat.codes.to_numpy()
    assert not np.array_equal(naive, fixed)


def test_prepare_matrix_spells_values_and_drops_unknown_ones_to_missing(mixed):
    matrix = prepare_matrix(mixed)
    assert list(matrix.loc[0:3, "language"].astype(object)) == ["de", "en", "ja", "pt"]
    assert matrix.loc[5, "main_content_focus"] == "EMBED"
    codes, unseen = encode_category(
        pd.Series(["en", "xx", None, "xx", "EN-gb"]), "language", CATEGORICAL["language"]
    )
    assert list(codes.astype(object)) == ["en", np.nan, np.nan, np.nan, "en"]
    assert unseen == {"xx": 2}


def test_booleans_become_string_categories_with_nulls_missing():
    column = pd.Series(pd.array([True, False, None, True], dtype="boolean"))
    codes, unseen = encode_category(column, "is_original", BOOLEAN_VALUES)
    assert list(codes.codes) == [1, 0, -1, 1]
    assert unseen == {}
    plain, _ = encode_category(pd.Series([False, True]), "is_original", BOOLEAN_VALUES)
    assert list(plain.codes) == [0, 1]


def test_prepare_matrix_names_a_missing_feature(mixed):
    with pytest.raises(KeyError, match="main_content_focus"):
        prepare_matrix(mixed.drop(columns="main_content_focus"))


# --- split, training, card -------------------------------------------------------


def test_stratified_split_is_deterministic_and_stratified():
    labels = pd.Series(["YES"] * 8 + ["NO"] * 40 + ["MAYBE"] * 12)
    train_at, test_at = stratified_split(labels, 0.25, seed=7)
    again = stratified_split(labels, 0.25, seed=7)
    assert np.array_equal(train_at, again[0]) and np.array_equal(test_at, again[1])
    assert sorted([*train_at, *test_at]) == list(range(60))
    assert labels.iloc[test_at].value_counts().to_dict() == {"NO": 10, "MAYBE": 3, "YES": 2}
    other = stratified_split(labels, 0.25, seed=8)[1]
    assert not np.array_equal(test_at, other)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(labels, 1.0)


@pytest.fixture(scope="module")
def training_set() -> pd.DataFrame:
    return synthetic_features(1500, seed=11)


def test_training_is_byte_deterministic_across_runs_and_threads(training_set):
    labelled = label_posts(training_set, SMALL.yes_count, SMALL.top_rank, SMALL.no_rank)
    matrix = prepare_matrix(labelled)
    models = [
        bytes(train(matrix, labelled["label"], rounds=10, nthread=n).save_raw("json"))
        for n in (2, 2, 1)
    ]
    assert models[0] == models[1] == models[2]


def test_the_model_stores_its_categories_and_classes(training_set):
    booster, _ = fit(training_set, SMALL)
    document = json.loads(bytes(booster.save_raw("json")))
    assert "cats" in document["learner"]["gradient_booster"]["model"]
    assert document["learner"]["attributes"]["classes"] == "MAYBE,NO,YES"
    assert document["learner"]["objective"]["name"] == "multi:softprob"
    stored = dict(booster.get_categories(export_to_arrow=True).to_arrow())
    for name, vocabulary in CATEGORICAL.items():
        assert stored[name].to_pylist() == list(vocabulary), name
    assert booster.feature_names == list(FEATURES)


def test_model_card_describes_the_run(training_set):
    _, card = fit(training_set, SMALL, input_commit="c0ffee")
    labelled = label_posts(training_set, SMALL.yes_count, SMALL.top_rank, SMALL.no_rank)
    counts = labelled["label"].value_counts().to_dict()
    assert card["features"] == list(FEATURES)
    assert card["labels"] == list(LABELS)
    assert card["label_counts"] == {name: counts[name] for name in LABELS}
    assert card["thresholds"] == {"yes_count": 30, "top_rank": 100, "no_rank": 1000}
    assert card["rows"]["features"] == 1500
    assert card["rows"]["train"] + card["rows"]["test"] == card["rows"]["labelled"] == len(labelled)
    confusion = card["held_out"]["confusion_matrix"]
    assert confusion["labels"] == ["MAYBE", "NO", "YES"]
    counts_matrix = np.array(confusion["counts"])
    assert counts_matrix.shape == (3, 3)
    assert counts_matrix.sum() == card["held_out"]["rows"] == card["rows"]["test"]
    assert card["held_out"]["accuracy"] == pytest.approx(
        np.trace(counts_matrix) / counts_matrix.sum()
    )
    assert card["held_out"]["accuracy"] > 0.9  # the labels are a function of two features
    assert card["parameters"]["tree_method"] == "hist"
    assert card["parameters"]["objective"] == "multi:softprob"
    assert card["parameters"]["num_boost_round"] == 20
    assert card["input_commit"] == "c0ffee"
    assert card["xgboost_version"] == xgb.__version__
    json.dumps(card)  # JSON-able


def test_settings_refuse_a_class_without_held_out_rows():
    with pytest.raises(ValueError, match="min_per_class >= 2"):
        TrainingSettings(min_per_class=1)


def test_fit_refuses_a_missing_class(training_set):
    ranked_high = training_set[training_set["followship_rank"].fillna(0) < 1000]
    with pytest.raises(InsufficientLabels, match=r"NO=0"):
        fit(ranked_high, SMALL)


def test_read_features_keeps_nullable_types(tmp_path, training_set):
    write_features(training_set, tmp_path)
    frame = read_features(tmp_path / "features")
    assert frame["followship_rank"].dtype == pd.Int64Dtype()
    assert frame["is_original"].dtype == pd.BooleanDtype()
    assert frame["followship_rank"].isna().sum() == training_set["followship_rank"].isna().sum()
    with pytest.raises(FileNotFoundError, match="parquet"):
        read_features(tmp_path / "nothing")


# --- the entry point and the spec ------------------------------------------------


@pytest.fixture
def small_env(monkeypatch):
    monkeypatch.setenv("LABEL_YES_COUNT", "30")
    monkeypatch.setenv("LABEL_TOP_RANK", "100")
    monkeypatch.setenv("LABEL_NO_RANK", "1000")
    monkeypatch.setenv("features_COMMIT", "feedbeef")


def test_main_writes_the_same_bytes_twice(tmp_path, training_set, small_env, capsys):
    write_features(training_set, tmp_path / "features")
    outputs = []
    for run in ("one", "two"):
        out = tmp_path / run
        assert model_entry.main(["--features", str(tmp_path / "features"), "--out", str(out)]) == 0
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert list(outputs[0]) == ["model.json", "model_card.json"]
    assert outputs[0] == outputs[1]
    card = json.loads(outputs[0]["model_card.json"])
    assert card["input_commit"] == "feedbeef"
    assert card["thresholds"] == {"yes_count": 30, "top_rank": 100, "no_rank": 1000}
    assert card["parameters"]["num_boost_round"] == 100
    assert "held-out accuracy" in capsys.readouterr().out


def test_main_fails_readably_when_a_class_is_missing(tmp_path, training_set, capsys):
    write_features(training_set, tmp_path / "features")  # production thresholds: no NO
    out = tmp_path / "out"
    assert model_entry.main(["--features", str(tmp_path / "features"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "NO=0" in err and "no_rank=50000" in err and "LABEL_" in err
    assert not out.exists()


def test_main_fails_readably_without_feature_files(tmp_path, capsys):
    assert model_entry.main(["--features", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no *.parquet feature files" in capsys.readouterr().err


def test_model_spec_is_valid_and_follows_the_dag():
    path = ROOT / "specs" / "model.pipeline.json"
    (document,) = load_spec_documents(path.read_text(), str(path))
    spec = parse_pipeline_spec(document)
    assert spec["pipeline"]["name"] == "model"
    assert spec["description"]
    pfs = spec["input"]["pfs"]
    assert (pfs["repo"], pfs["glob"], pfs["trigger"]["cronSpec"]) == ("features", "/", "@daily")
    transform = spec["transform"]
    assert transform["image"] == "ghcr.io/lens-feed/pipelines:0.1.0"
    assert transform["cmd"][:2] == ["python3", "pipelines/model.py"]
    assert {"LABEL_YES_COUNT", "LABEL_TOP_RANK", "LABEL_NO_RANK"} <= set(transform["env"])


@pytest.mark.skipif(not PRODUCTION_MODEL.exists(), reason=f"fixture {PRODUCTION_MODEL} absent")
def test_features_are_the_production_models():
    document = json.loads(PRODUCTION_MODEL.read_text())
    learner = document["learner"]
    assert tuple(learner["feature_names"]) == FEATURES
    categorical = {n for n, t in zip(FEATURES, learner["feature_types"], strict=True) if t == "c"}
    assert categorical == set(CATEGORICAL)
