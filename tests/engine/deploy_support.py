"""Shared by the deploy tests (``test_deploy_*.py``): the project's pipelines in
dependency order, the secret values the filled secrets carry (which no output may
show), and writing a spec into a scratch project."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ORDER = [
    "ingest",
    "compact",
    "eigentrust",
    "history",
    "trust",
    "features",
    "model",
    "predict",
    "feed",
]
PG_DSN = "postgresql://feed:pg-s3cret-value@db:5432/lens"
SA_JSON = '{"type": "service_account", "private_key": "sa-s3cret-key"}'
SECRET_VALUES = (PG_DSN, "pg-s3cret-value", "sa-s3cret-key", "lens-bucket-x")


def write_spec(root: Path, name: str, inp: dict[str, Any]) -> None:
    spec = {"pipeline": {"name": name}, "input": inp, "transform": {"cmd": ["true"]}}
    (root / "specs").mkdir(parents=True, exist_ok=True)
    (root / "specs" / f"{name}.pipeline.json").write_text(json.dumps(spec))


def assert_no_values(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text
