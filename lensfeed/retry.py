"""The one retry loop of the library: a call tried up to ``attempts`` times, waiting
``first_wait * 2**k`` seconds (at most ``max_wait``) after the k-th failure.

PostgreSQL connections (:func:`lensfeed.pg.connect`) and the export bucket
(:class:`lensfeed.gcs.GcsExportStore`) use it; each decides which errors are worth
another try and how the last one is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently to retry."""

    attempts: int = 5
    first_wait: float = 0.5
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")

    def wait(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure (1-based)."""
        return float(min(self.max_wait, self.first_wait * 2 ** (failures - 1)))


def retrying(
    call: Callable[[], T],
    backoff: Backoff,
    retryable: tuple[type[BaseException], ...],
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, float, BaseException], None] = lambda attempt, wait, exc: None,
) -> T:
    """``call()``, again after each ``retryable`` error until the attempts run out; then
    that last error propagates. Any other error propagates at once. ``on_retry`` hears
    of each failure that is retried: ``(attempt, wait, error)``."""
    for attempt in range(1, backoff.attempts + 1):
        try:
            return call()
        except retryable as exc:
            if attempt == backoff.attempts:
                raise
            wait = backoff.wait(attempt)
            on_retry(attempt, wait, exc)
            sleep(wait)
    raise AssertionError("unreachable: attempts >= 1")
