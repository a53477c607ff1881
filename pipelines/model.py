"""model: train the post classifier (YES / MAYBE / NO) on the features snapshot.

Input: ``features`` (repo ``features``, glob ``/``, trigger ``@daily``): the
parts ``/features/part-*.parquet``, one row per post.
Output (repo ``model``): ``/model.json``, an XGBoost JSON model (``multi:softprob``,
classes ``MAYBE=0, NO=1, YES=2``, category vocabularies stored), and
``/model_card.json`` (features, label counts, thresholds, held-out accuracy and
confusion matrix, parameters, input commit, XGBoost version).

Idempotent: the same features give byte-identical files (fixed seed; the result
does not depend on the thread count). Knobs (``transform.env``):
``LABEL_YES_COUNT``, ``LABEL_TOP_RANK``, ``LABEL_NO_RANK`` (labelling
thresholds, default 1000, 1000, 50000), ``LABEL_MIN_PER_CLASS`` (default 10)
and ``XGB_NTHREAD`` (default 2). Fewer than ``LABEL_MIN_PER_CLASS`` labelled
rows of some class is a job failure whose message names the counts: no model
is better than a model that never saw a class.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lensfeed import pfs
from lensfeed.model import InsufficientLabels, TrainingSettings, fit, read_features
from lensfeed.parquet import FEATURES_DIR


def settings_from_env() -> TrainingSettings:
    """The run's settings from ``transform.env`` (ValueError on a non-integer)."""
    return TrainingSettings(
        yes_count=int(pfs.optional_env("LABEL_YES_COUNT", "1000")),
        top_rank=int(pfs.optional_env("LABEL_TOP_RANK", "1000")),
        no_rank=int(pfs.optional_env("LABEL_NO_RANK", "50000")),
        nthread=int(pfs.optional_env("XGB_NTHREAD", "2")),
        min_per_class=int(pfs.optional_env("LABEL_MIN_PER_CLASS", "10")),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, required=True, help="e.g. /pfs/features")
    parser.add_argument("--out", type=Path, required=True, help="e.g. /pfs/out")
    args = parser.parse_args(argv)

    try:
        settings = settings_from_env()
        features = read_features(args.features / FEATURES_DIR)
        booster, card = fit(features, settings, input_commit=pfs.input_commit("features"))
    except InsufficientLabels as exc:
        print(f"model: {exc} (see LABEL_* in transform.env)", file=sys.stderr)
        return 1
    except (KeyError, ValueError, FileNotFoundError) as exc:
        print(f"model: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.json").write_bytes(bytes(booster.save_raw("json")))
    (args.out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    held_out = card["held_out"]
    print(
        f"model: trained on {card['rows']['train']} of {card['rows']['labelled']} labelled posts "
        f"{card['label_counts']}; held-out accuracy {held_out['accuracy']:.4f} "
        f"on {held_out['rows']} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
