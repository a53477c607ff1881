"""The library's one retry loop (:mod:`lensfeed.retry`): how often, how long, and which
errors it gives another try."""

from __future__ import annotations

import pytest

from lensfeed.retry import Backoff, retrying


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_waits_double_up_to_the_cap_and_the_call_succeeds_in_the_end() -> None:
    waits: list[float] = []
    heard: list[tuple[int, float, str]] = []
    call = Flaky(*[ConnectionError(f"e{i}") for i in range(4)])
    result = retrying(
        call,
        Backoff(attempts=5, first_wait=0.5, max_wait=3.0),
        (ConnectionError,),
        sleep=waits.append,
        on_retry=lambda n, wait, exc: heard.append((n, wait, str(exc))),
    )
    assert (result, call.calls, waits) == ("ok", 5, [0.5, 1.0, 2.0, 3.0])
    assert heard == [(1, 0.5, "e0"), (2, 1.0, "e1"), (3, 2.0, "e2"), (4, 3.0, "e3")]


def test_the_last_retryable_error_propagates_when_the_attempts_run_out() -> None:
    waits: list[float] = []
    call = Flaky(TimeoutError("t1"), TimeoutError("t2"), TimeoutError("t3"))
    with pytest.raises(TimeoutError, match="t3"):
        retrying(call, Backoff(attempts=3), (TimeoutError,), sleep=waits.append)
    assert (call.calls, waits) == (3, [0.5, 1.0])


def test_an_error_not_worth_a_retry_propagates_at_once() -> None:
    call = Flaky(ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        retrying(call, Backoff(), (ConnectionError,), sleep=lambda _: pytest.fail("slept"))
    assert call.calls == 1


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        Backoff(attempts=0)
