"""nixpkgs' nixos-test-driver/timeout.nix (built by all-tests.nix's driver-timeout as a
build that must fail): a default VM and a 5 s global timeout; the script waits for
multi-user.target, then sleeps 6 s in the guest.  Our Debian systemd guest.

What it asserts: the log says "timeout reached; test terminating" and the driver's exit
status is 143 (ended by SIGTERM).  We also check that nothing of the run is left.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
start_all()
machine.wait_for_unit("multi-user.target")
machine.succeed("sleep 6")
'''


def test_timeout_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian")}, args=["--global-timeout", "5"])
    assert run.returncode in (143, -15), (run.returncode, run.log[-3000:])
    assert "timeout reached; test terminating" in run.log
