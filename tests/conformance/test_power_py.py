"""nixpkgs' nixos-test-driver/power.py (common.py first; one minimal VM as ``machine``).
Our Debian systemd guest.

What it asserts, for ``shutdown`` and then ``crash`` (subtests named after the methods):
a wait on the stopped machine boots it again; the method stops it; ``wait_for_shutdown``
returns at once; ``booted`` is false; the method again is a no-op; ``join_all()`` returns.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
with subtest("power off related"):
    for method in [machine.shutdown, machine.crash]:
        with subtest(method.__name__):
            machine.wait_for_unit("multi-user.target")
            method()
            machine.wait_for_shutdown()
            assert not machine.booted
            method()
            join_all()
print("POWER PASSED")
'''


def test_power_py(nixos_test):
    run = nixos_test(SCRIPT, {"basic": Node("debian")}, common=True).check()
    assert "POWER PASSED" in run.stdout
    assert "subtest: shutdown" in run.log and "subtest: crash" in run.log
