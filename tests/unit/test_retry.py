"""retry(): nixpkgs' (master's) protocol: fn(False) once a second until the timeout,
then one last fn(True); no timeout means 15 minutes."""

from __future__ import annotations

import datetime as dt
import time

import pytest

import test_driver.machine.base as base
from test_driver.errors import RequestedAssertionFailed, WaitTimeout
from test_driver.machine import retry


def test_false_once_a_second_then_one_last_true_call_then_upstreams_message():
    calls: list[object] = []
    tic = time.monotonic()
    with pytest.raises(RequestedAssertionFailed) as caught:
        retry(lambda last_try: calls.append(last_try), timeout=2.5)
    took = time.monotonic() - tic
    assert calls == [False, False, False, True], calls  # an unannotated parameter gets bools too
    assert 2.5 <= took < 3.0, took
    assert isinstance(caught.value, WaitTimeout)
    assert str(caught.value).startswith("action timed out after 2.5"), str(caught.value)
    assert str(caught.value).endswith("seconds (timeout=2.5)"), str(caught.value)


def test_a_last_try_branch_runs_once_and_can_succeed():
    calls: list[bool] = []

    def check(last_try):  # no annotation, as most nixpkgs tests write it
        calls.append(last_try)
        return last_try

    retry(check, timeout=dt.timedelta(seconds=1.5))
    assert calls == [False, False, True], calls


def test_a_zero_timeout_still_makes_one_call():
    calls: list[bool] = []
    retry(lambda last_try: calls.append(last_try) or True, timeout=0)
    assert calls == [True]
    with pytest.raises(RequestedAssertionFailed):
        retry(lambda last_try: False, timeout=0)


def test_a_true_result_ends_at_once_and_timeout_seconds_is_the_old_spelling():
    calls: list[bool] = []
    retry(lambda last_try: calls.append(last_try) or len(calls) == 2, 30)
    assert calls == [False, False]
    with pytest.raises(TypeError, match="not both"):
        retry(lambda last_try: True, 5, timeout=5)


def test_no_timeout_means_fifteen_minutes(monkeypatch: pytest.MonkeyPatch):
    assert base.DEFAULT_WAIT == 900.0
    monkeypatch.setattr(base, "DEFAULT_WAIT", 0.2)
    calls: list[bool] = []
    with pytest.raises(WaitTimeout):
        retry(lambda last_try: calls.append(last_try), timeout=None)
    assert calls == [False, True]


def test_internal_waits_probe_quickly_at_first_and_make_a_last_probe():
    calls: list[bool] = []
    tic = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        base.wait_until(lambda last_try: calls.append(last_try), 0.5, "the thing", lambda: "still off")
    assert 0.5 <= time.monotonic() - tic < 0.8
    assert 3 <= len(calls) <= 6 and calls[-1] is True and not any(calls[:-1]), calls
    assert "waiting for the thing; last state: still off" in str(caught.value)
