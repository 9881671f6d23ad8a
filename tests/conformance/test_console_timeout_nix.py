"""nixpkgs' nixos-test-driver/console-timeout.nix: a VM with a ``generate-output``
service (not started at boot) that prints "match that", a second later 15 lines, then
"match this", to the console.  Our Debian systemd guest has that unit.

What it asserts: after starting the service, ``wait_for_console_text("match that")`` and
then ``wait_for_console_text("match this", timeout=10)`` (a bare number) both return: the
second wait sees the lines that came after the first match, within its 10 s.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
machine.start()
machine.wait_for_unit("multi-user.target")
machine.systemctl("start generate-output")
machine.wait_for_console_text("match that")
machine.wait_for_console_text("match this", timeout=10)
print("CONSOLE-TIMEOUT PASSED")
'''


def test_console_timeout_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian")}).check()
    assert "CONSOLE-TIMEOUT PASSED" in run.stdout
