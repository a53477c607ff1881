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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lensfeed import pfs
from lensfeed.model import read_features
from lensfeed.predict import ModelError, load_model, predict, write_predictions


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
        predictions = predict(model, read_features(args.features / "features"))
    except (ModelError, KeyError, ValueError, FileNotFoundError) as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_predictions(predictions, args.out / "predictions.parquet")
    counts = predictions["label"].value_counts().to_dict()
    unseen = predictions.attrs.get("unseen_categories") or {}
    print(
        f"predict: {len(predictions)} posts labelled with {model_path} {counts}"
        + (f"; unseen categories fed as missing: {unseen}" if unseen else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
