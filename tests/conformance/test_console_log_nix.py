"""nixpkgs' nixos-test-driver/console-log.nix: a VM whose serial console gets the kernel's
messages (console log level 7), the journal (journald forwards to the console) and the
backdoor's stderr.  Our Debian systemd guest with ``loglevel=7
systemd.journald.forward_to_console=1`` does the same.

What it asserts: ``get_console_log()`` is a non-empty ``str`` with "systemd" and the
kernel's first lines in it; a command's stderr shows up in it within a second and a
``/dev/kmsg`` line within two; it keeps growing (two calls, the second no shorter); after
``shutdown()`` and ``start()`` it starts afresh (no marker of the first boot), again with
boot messages, and takes new lines.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
import time

KERNEL = ("Linux version", "Command line:", "Kernel command line")
machine.start()
machine.wait_for_unit("multi-user.target")

with subtest("get_console_log returns console output"):
    console_log = machine.get_console_log()
    assert isinstance(console_log, str), f"Expected string, got {type(console_log)}"
    assert len(console_log) > 0, "Console log should not be empty"

with subtest("console log contains boot messages"):
    assert "systemd" in console_log
    machine.succeed("echo 'DIRECT_TEST_MESSAGE_12345' >&2")
    time.sleep(1)
    assert "DIRECT_TEST_MESSAGE_12345" in machine.get_console_log(), "Console log should capture stderr messages"

with subtest("console log captures command output"):
    machine.succeed("echo 'KERNEL_TEST_MESSAGE_12345' > /dev/kmsg")
    time.sleep(2)

with subtest("console log persists across multiple calls"):
    log1 = machine.get_console_log()
    log2 = machine.get_console_log()
    assert "systemd" in log1 and "systemd" in log2
    assert len(log2) >= len(log1)
    assert "KERNEL_TEST_MESSAGE_12345" in log2

with subtest("console log contains kernel messages"):
    assert any(sign in console_log for sign in KERNEL)

with subtest("console log is cleared on machine restart"):
    pre_shutdown_log = machine.get_console_log()
    assert "KERNEL_TEST_MESSAGE_12345" in pre_shutdown_log and "DIRECT_TEST_MESSAGE_12345" in pre_shutdown_log
    machine.shutdown()
    machine.start()
    machine.wait_for_unit("multi-user.target")
    post_restart_log = machine.get_console_log()
    assert "KERNEL_TEST_MESSAGE_12345" not in post_restart_log
    assert "DIRECT_TEST_MESSAGE_12345" not in post_restart_log
    assert "systemd" in post_restart_log
    assert any(sign in post_restart_log for sign in KERNEL)
    machine.succeed("echo 'POST_RESTART_TEST_MESSAGE_67890' > /dev/kmsg")
    time.sleep(1)
    assert "POST_RESTART_TEST_MESSAGE_67890" in machine.get_console_log()
print("CONSOLE-LOG PASSED")
'''


def test_console_log_nix(nixos_test):
    node = Node("debian", append="loglevel=7 systemd.journald.forward_to_console=1")
    run = nixos_test(SCRIPT, {"machine": node}).check()
    assert "CONSOLE-LOG PASSED" in run.stdout
