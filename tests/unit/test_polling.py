"""The tests' one way of waiting (tests/polling.py): the value that held is returned; a wait
that fails says what it awaited and what it saw last; every wait is bounded in tries too."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable

import pytest

from tests.polling import until, until_async


def test_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    assert until(lambda: next(counter), "a count of 3", holds=lambda n: n >= 3) == 3
    values = iter([[], [], ["a"]])
    assert until(lambda: next(values), "a non-empty list", interval_s=0.001) == ["a"]


def test_a_failure_names_what_was_awaited_and_the_last_value_seen() -> None:
    counter = itertools.count()
    with pytest.raises(AssertionError) as failure:
        until(
            lambda: next(counter),
            "a negative count",
            holds=lambda n: n < 0,
            timeout_s=0.05,
            interval_s=0.01,
        )
    message = str(failure.value)
    assert "waiting for a negative count" in message
    tries = int(re.search(r"\((\d+) tries\)", message)[1])  # type: ignore[index]
    assert 1 <= tries <= 6  # 0.05 s at 0.01 s: at most 6 tries
    assert message.endswith(f"last seen: {tries - 1}")


def test_exceptions_named_in_retry_on_mean_not_yet_and_are_shown() -> None:
    attempts = iter([ConnectionRefusedError("not listening"), OSError("still not"), "up"])

    def connect() -> str:
        answer = next(attempts)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, str)
        return answer

    assert until(connect, "the server", retry_on=(OSError,), interval_s=0.001) == "up"
    with pytest.raises(AssertionError, match=r"last seen: OSError: down$"):
        until(_raise(OSError("down")), "the server", retry_on=(OSError,), timeout_s=0.02)
    with pytest.raises(KeyError):  # not named: fails at once
        until(_raise(KeyError("k")), "the server", retry_on=(OSError,))


def test_the_number_of_tries_is_bounded_even_when_time_stands_still(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = itertools.count(1)
    monkeypatch.setattr(time, "sleep", lambda _: None)
    with pytest.raises(AssertionError, match=r"\(11 tries\)"):
        until(lambda: next(calls) < 0, "never", timeout_s=60, interval_s=6)
    assert next(calls) == 12
    with pytest.raises(AssertionError, match=r"\(3 tries\)"):
        until(lambda: False, "never", timeout_s=60, interval_s=0, max_tries=3)
    with pytest.raises(ValueError, match="no bound"):
        until(lambda: False, "never", interval_s=0)


def test_the_last_value_seen_is_cut_to_a_readable_length() -> None:
    with pytest.raises(AssertionError) as failure:
        until(lambda: "x" * 10_000, "a short text", holds=lambda t: len(t) < 10, timeout_s=0.01)
    assert str(failure.value).endswith("... (10002 chars)")


async def test_until_async_lets_the_loop_run_between_tries() -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().call_soon(done.set)
    assert await until_async(done.is_set, "the event set") is True

    with pytest.raises(AssertionError, match="waiting for nothing; last seen: ''"):
        await until_async(lambda: "", "nothing", timeout_s=0.02)


def _raise(error: Exception) -> Callable[[], str]:
    def probe() -> str:
        raise error

    return probe


def test_context_adds_to_a_failure() -> None:
    with pytest.raises(AssertionError, match=r"last seen: False\n--- the log ---$"):
        until(lambda: False, "truth", timeout_s=0.01, context=lambda: "--- the log ---")
