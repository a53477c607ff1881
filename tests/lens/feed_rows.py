"""Prediction rows for the feed tests."""

from __future__ import annotations

from typing import Any

import pandas as pd

FT = pd.Timestamp("2024-05-10T00:00:00Z")
HOUR, DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)


def post(
    post_id: str,
    label: str | None = "YES",
    age: pd.Timedelta = 2 * HOUR,
    upvotes: int | None = 1,
    **overrides: Any,
) -> dict[str, Any]:
    row = {
        "post_id": post_id,
        "label": label,
        "p_maybe": 0.1,
        "p_no": 0.1,
        "p_yes": 0.8,
        "block_timestamp": FT - age,
        "feature_time": FT,
        "is_original": True,
        "content_warning": None,
        "is_hidden": False,
        "is_gated": False,
        "custom_filters_gardener_flagged": False,
        "has_error": False,
        "upvotes": upvotes,
        "mirrors": 0,
        "comments": 0,
        "collects": 0,
    }
    row.update(overrides)
    return row


def predictions(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))
