"""predict: label every post of the features snapshot with the current model.

Inputs: cross of ``features`` (repo ``features``, glob ``/``: the parts
``/features/part-*.parquet``) and ``model`` (repo ``model``, glob ``/``:
``/model.json``). ``MODEL_PATH`` may name another XGBoost JSON model (e.g. the
2023 production model); it must then exist.
Output (repo ``predict``): ``/predictions.parquet``, one row per post, sorted by
``post_id``: ``post_id, label (YES|MAYBE|NO), p_maybe, p_no, p_yes`` and the
columns the feed needs (``lensfeed.predict.PASSTHROUGH``).

Idempotent: the same features and model give byte-identical files. With no
model yet (the model pipeline has not produced one, or failed) it writes
nothing and says so: an empty output commit leaves the feed as it is, where a
failure would only mark the commit failed. Unknown categorical values are
reported and fed as missing. ``XGB_NTHREAD`` sets the threads (default 2).

The features are read as Arrow and stay Arrow to the written file
(``lensfeed.predict.predict_table``): no pandas object columns on the way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lensfeed import pfs
from lensfeed.booster import ModelError, load_model
from lensfeed.parquet import FEATURES_DIR, PREDICTIONS_FILE
from lensfeed.predict import predict_table, read_features_table, write_predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, required=True, help="e.g. /pfs/features")
    parser.add_argument("--model", type=Path, required=True, help="e.g. /pfs/model")
    parser.add_argument("--out", type=Path, required=True, help="e.g. /pfs/out")
    args = parser.parse_args(argv)

    chosen = pfs.optional_env("MODEL_PATH")
    model_path = Path(chosen) if chosen else args.model / "model.json"
    if not model_path.is_file():
        if chosen:
            print(f"predict: MODEL_PATH={chosen} is not a file", file=sys.stderr)
            return 2
        print(f"predict: no model at {model_path} yet; no predictions written")
        return 0
    try:
        model = load_model(model_path, nthread=int(pfs.optional_env("XGB_NTHREAD", "2")))
        features = read_features_table(args.features / FEATURES_DIR)
        predictions, unseen = predict_table(model, features)
    except (ModelError, KeyError, ValueError, FileNotFoundError, pa.ArrowException) as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_predictions(predictions, args.out / PREDICTIONS_FILE)
    labels = pc.value_counts(predictions.column("label")).to_pylist()
    counts = {c["values"]: c["counts"] for c in sorted(labels, key=lambda c: -c["counts"])}
    print(
        f"predict: {predictions.num_rows} posts labelled with {model_path} {counts}"
        + (f"; unseen categories fed as missing: {unseen}" if unseen else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
