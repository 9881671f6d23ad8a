"""nixpkgs' nixos-test-driver/retry.nix: no machines; the ``retry`` symbol's protocol.

The predicate gets the seconds remaining (``None`` when ``timeout=None``, which has no
limit); a call still running at the deadline is the last one, and its success counts; a
zero timeout makes no call.  Failures are ``RequestedAssertionFailed``, importable from
``test_driver.errors``; ``t.assertRaises`` is unittest's.
"""

from __future__ import annotations

SCRIPT = r'''
import datetime as dt
import time

from test_driver.errors import RequestedAssertionFailed

seen = []
retry(lambda remaining: seen.append(remaining) or True, timeout=None)
assert seen == [None], seen

slow_calls = 0
def slow_failure(remaining):
    global slow_calls
    assert remaining is not None and remaining > 0, remaining
    slow_calls += 1
    time.sleep(0.05)
    return False

with t.assertRaises(RequestedAssertionFailed):
    retry(slow_failure, timeout=dt.timedelta(seconds=0.01))
assert slow_calls == 1, slow_calls

late_calls = 0
def late_success(remaining):
    global late_calls
    assert remaining is not None and remaining > 0, remaining
    late_calls += 1
    time.sleep(0.02)
    return True

retry(late_success, timeout=dt.timedelta(seconds=0.01))
assert late_calls == 1, late_calls

zero_calls = 0
def counted(_remaining):
    global zero_calls
    zero_calls += 1
    return True

with t.assertRaises(RequestedAssertionFailed):
    retry(counted, timeout=dt.timedelta(0))
assert zero_calls == 0, zero_calls
print("RETRY-NIX PASSED")
'''


def test_retry_nix(nixos_test):
    run = nixos_test(SCRIPT).check()
    assert "RETRY-NIX PASSED" in run.stdout
