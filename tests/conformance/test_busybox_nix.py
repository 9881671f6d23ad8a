"""nixpkgs' nixos-test-driver/busybox.nix: a VM with busybox in its system packages, so
busybox's applets come first on the backdoor shell's PATH (its cat, base64, timeout...).
Our Debian systemd guest with ``td.busybox`` does the same.

What it asserts: the machine starts, its backdoor works and ``wait_for_unit`` sees
multi-user.target: nothing the driver runs in the guest needs GNU-only options.  We also
check that the applets really come first, and a command, a timeout and a file wait.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
import datetime as dt
start_all()
machine.wait_for_unit("multi-user.target")
assert machine.succeed("readlink -f $(command -v cat)").strip().endswith("busybox")
assert machine.succeed("echo hello | cat") == "hello\n"
status, _ = machine.execute("sleep 30", timeout=dt.timedelta(seconds=2))
assert status == 124, status
machine.wait_for_file("/etc/hostname")
print("BUSYBOX PASSED")
'''


def test_busybox_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian", append="td.busybox")}).check()
    assert "BUSYBOX PASSED" in run.stdout
