"""nixpkgs' nixos-test-driver/skip-typecheck.nix: a default VM and ``skipTypeCheck``:
the test runs without the type check of its script.  Our Debian systemd guest, run
straight through the command line (our type check is a separate command,
``nixos-test-driver-typecheck``, that the driver never needs).

What it asserts: start, ``wait_for_unit("multi-user.target")``, ``shutdown()``, and the
run passes.  (The nix side, a derivation built without its type check, is nix wiring:
tests/unit/test_nix_module.py evaluates our module.)
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
start_all()
machine.wait_for_unit("multi-user.target")
machine.shutdown()
'''


def test_skip_typecheck_nix(nixos_test):
    nixos_test(SCRIPT, {"machine": Node("debian")}).check()
