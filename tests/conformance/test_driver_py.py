"""nixpkgs' nixos-test-driver/driver.py (run by its default.nix after common.py, with no
machines): ``start_all()`` with no machine, the ``must_raise`` symbol, the logger's
``sanitise``, and what a failing subtest raises.

Where it disagrees with newer nixpkgs, the newer decides.  This script comes from the open
pull request that added these tests (#157161, 2022-23), whose driver ended the test with
``SystemExit`` when a subtest failed (``Logger.error`` called ``sys.exit``).  nixpkgs'
driver since then, and its JUnit tests (PR #556413, 2026), re-raise the subtest's own
exception, so a script can catch it; that is what we assert instead (and ours).
"""

from __future__ import annotations

SCRIPT = r'''
import string
from test_driver import logger

with subtest("subtest"):
    # nixpkgs' newest driver re-raises the failure itself (the PR's old driver exited)
    with must_raise("Oops.", Exception):
        with subtest("foobar"):
            raise Exception("Oops.")

with subtest("Logger"):
    with subtest("sanitise"):
        assert logger.rootlog.sanitise("foobar") == "foobar"
        for c in map(chr, range(128)):
            if logger.rootlog.sanitise(c) == c:
                assert c in string.printable, repr(c)

with subtest("must_raise"):
    with subtest("success"):
        with must_raise("Oops."):
            raise Exception("Oops.")
    with subtest("failures"):
        with must_raise("string .* did not match"):
            with must_raise("Something"):
                raise Exception("Another thing")
        with must_raise(".* is not an instance of .*"):
            with must_raise("Oops.", ValueError):
                raise IndexError("Oops.")
        with must_raise("no exception was raised"):
            with must_raise("Oops."):
                pass
print("DRIVER-PY PASSED")
'''


def test_driver_py(nixos_test):
    run = nixos_test(SCRIPT, common=True).check()
    assert "DRIVER-PY PASSED" in run.stdout
