"""nixpkgs' nixos-test-driver/systemd.py (common.py first; one minimal VM as
``machine``).  Our Debian systemd guest.

What it asserts: ``require_unit_state("multi-user.target", "active")`` passes, and
asking for state 'borked' raises with upstream's words "to to be in state 'borked'".
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
machine.wait_for_unit("multi-user.target")
with subtest("require_unit_state"):
    with subtest("success"):
        machine.require_unit_state("multi-user.target", "active")
    with subtest("failure"):
        with must_raise("to to be in state 'borked'"):
            machine.require_unit_state("multi-user.target", "borked")
print("SYSTEMD PASSED")
'''


def test_systemd_py(nixos_test):
    run = nixos_test(SCRIPT, {"basic": Node("debian")}, common=True).check()
    assert "SYSTEMD PASSED" in run.stdout
