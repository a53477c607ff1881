"""Load ``pipelines/<name>.py`` as a module: the entry points are scripts, not a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_entry_point(name: str) -> ModuleType:
    """``pipelines/<name>.py``, imported under the module name ``pipelines_<name>``."""
    spec = importlib.util.spec_from_file_location(
        f"pipelines_{name}", ROOT / "pipelines" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
