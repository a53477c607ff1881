"""The one error a spec check raises, and how values are shown in its messages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class SpecError(ValueError):
    """An invalid pipeline spec; the message names the offending key path."""

    def __init__(self, path: str, detail: str, source: str = "") -> None:
        self.path, self.detail, self.source = path, detail, source
        where = ": ".join(p for p in (source, path) if p)
        super().__init__(f"{where}: {detail}" if where else detail)

    def with_source(self, source: str) -> SpecError:
        """Return the same error labelled with a file/document ``source``."""
        return SpecError(self.path, self.detail, source)


def require(ok: bool, path: str, message: str) -> None:
    """Raise ``SpecError(path, message)`` unless ``ok``."""
    if not ok:
        raise SpecError(path, message)


def show(value: Any) -> str:
    """A value as an error message quotes it: JSON, cut to 60 characters."""
    if isinstance(value, Mapping | list):
        return "an object" if isinstance(value, Mapping) else "a list"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
