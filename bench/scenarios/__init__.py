"""The comparisons of ``bench/run.py``, one module each: its inputs, both sides, and
the check that they agree."""

from __future__ import annotations

from datetime import UTC, datetime

#: The time the posts' ages are measured at (post_score and predict inputs).
FEATURE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
