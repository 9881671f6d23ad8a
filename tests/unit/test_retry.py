"""retry(): nixpkgs' current protocol (the seconds left) and its older one (last_try)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from test_driver.errors import RequestedAssertionFailed, WaitTimeout
from test_driver.machine import retry


def test_each_call_gets_the_seconds_left_and_the_deadline_is_kept():
    seen: list[float | None] = []
    tic = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        retry(lambda left: seen.append(left), timeout=0.5)
    took = time.monotonic() - tic
    assert isinstance(caught.value, RequestedAssertionFailed)
    assert 0.5 <= took < 0.8 and 3 <= len(seen) <= 6, (took, seen)
    assert all(isinstance(left, float) and 0 < left <= 0.5 for left in seen)
    assert seen == sorted(seen, reverse=True)


def test_a_true_result_ends_at_once_and_timeout_seconds_is_the_old_spelling():
    calls = []
    retry(lambda left: calls.append(left) or len(calls) == 2, 30)
    assert len(calls) == 2 and calls[0] is not None and calls[0] > 29


def test_the_old_last_try_protocol_for_functions_that_ask_for_a_bool():
    calls: list[bool] = []

    def check(last_try: bool) -> bool:
        calls.append(last_try)
        return last_try

    retry(check, timeout=dt.timedelta(seconds=0.3))
    assert calls[-1] is True and set(calls[:-1]) == {False}


def test_no_limit_means_none_left():
    calls = []
    retry(lambda left: calls.append(left) or len(calls) == 3, timeout=None)
    assert calls == [None, None, None]
