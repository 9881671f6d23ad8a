"""retry(): the protocol nixpkgs' newest driver test (nixos-test-driver/retry.nix) pins:
the predicate gets the seconds remaining (None when there is no limit), no call starts
after the deadline, and a zero timeout makes none."""

from __future__ import annotations

import datetime as dt
import time

import pytest

import test_driver.machine.base as base
from test_driver.errors import RequestedAssertionFailed, WaitTimeout
from test_driver.machine import retry


def test_no_timeout_means_no_limit_and_the_predicate_gets_none():
    seen: list[object] = []
    retry(lambda remaining: seen.append(remaining) or len(seen) == 3, timeout=None)
    assert seen == [None, None, None]


def test_an_attempt_running_past_the_deadline_is_the_last():
    seen: list[float | None] = []

    def slow_failure(remaining: float | None) -> bool:
        seen.append(remaining)
        time.sleep(0.05)
        return False

    with pytest.raises(RequestedAssertionFailed) as caught:
        retry(slow_failure, timeout=dt.timedelta(seconds=0.01))
    assert len(seen) == 1 and seen[0] is not None and 0 < seen[0] <= 0.01, seen
    assert isinstance(caught.value, WaitTimeout)
    assert str(caught.value).startswith("action timed out after 0.0"), str(caught.value)
    assert str(caught.value).endswith("(timeout=0.01)"), str(caught.value)


def test_a_late_success_counts():
    calls = 0

    def late_success(remaining: float | None) -> bool:
        nonlocal calls
        assert remaining is not None and remaining > 0
        calls += 1
        time.sleep(0.02)
        return True

    retry(late_success, timeout=dt.timedelta(seconds=0.01))
    assert calls == 1


def test_a_zero_timeout_makes_no_attempt():
    calls: list[object] = []
    with pytest.raises(RequestedAssertionFailed):
        retry(lambda remaining: calls.append(remaining) or True, timeout=dt.timedelta(0))
    assert calls == []


def test_attempts_start_a_second_apart_and_remaining_shrinks():
    seen: list[float] = []
    tic = time.monotonic()
    with pytest.raises(WaitTimeout):
        retry(lambda remaining: seen.append(remaining), timeout=dt.timedelta(seconds=2.5))
    took = time.monotonic() - tic
    assert len(seen) == 3, seen
    assert seen == sorted(seen, reverse=True) and seen[0] <= 2.5 and 0 < seen[-1] <= 0.6, seen
    assert 2.5 <= took < 2.9, took


def test_a_slow_attempt_is_followed_at_once():
    starts: list[float] = []

    def slow(_remaining: float | None) -> bool:
        starts.append(time.monotonic())
        time.sleep(0.6)
        return len(starts) == 3

    retry(slow, timeout=dt.timedelta(seconds=10))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(0.95 <= gap < 1.2 for gap in gaps), gaps


def test_the_default_is_fifteen_minutes_and_timeout_seconds_is_the_old_spelling():
    seen: list[float | None] = []
    retry(lambda remaining: seen.append(remaining) or True)
    assert seen[0] is not None and 899 < seen[0] <= 900
    retry(lambda remaining: seen.append(remaining) or True, 30)
    assert 29 < seen[1] <= 30  # type: ignore[operator]
    with pytest.raises(TypeError, match="not both"):
        retry(lambda remaining: True, 5, timeout=dt.timedelta(seconds=5))


def test_internal_waits_probe_quickly_at_first_and_never_after_the_deadline():
    seen: list[float | None] = []
    tic = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        base.wait_until(lambda remaining: seen.append(remaining), 0.5, "the thing", lambda: "still off")
    assert 0.5 <= time.monotonic() - tic < 0.7
    assert 3 <= len(seen) <= 6 and all(r is not None and r > 0 for r in seen), seen
    assert "waiting for the thing; last state: still off" in str(caught.value)


def test_a_probe_is_bounded_by_what_is_left_or_the_cap():
    assert base.probe_timeout(None) is None
    assert base.probe_timeout(3.0) == dt.timedelta(seconds=3)
    assert base.probe_timeout(3.0, dt.timedelta(seconds=2)) == dt.timedelta(seconds=2)
    assert base.probe_timeout(None, 2) == dt.timedelta(seconds=2)
    assert base.probe_timeout(1.5, 2) == dt.timedelta(seconds=1.5)
