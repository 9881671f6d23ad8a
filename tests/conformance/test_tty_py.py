"""nixpkgs' nixos-test-driver/tty.py (common.py first): a VM ``tty`` (as ``machine``)
with root logged in on tty1 and NixOS's framebuffer console (128 columns).  Our Debian
systemd guest with ``td.autologin td.fb`` does the same.

What it asserts: ``wait_until_tty_matches("1", "root@")`` sees the login; with a 10 s
timeout and ``time.sleep`` doing nothing, a text that never comes fails with "action timed
out"; ``send_chars`` types "cat", then, after ``sleep(2)`` in the guest, every printable
non-space ASCII character, which tty1 shows within 10 s; ``send_key("ctrl-d")``; and
``wait_for_console_text("foobar", timeout=10)`` fails with "action timed out".
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
import re
import string

test_string = "".join(c for c in string.printable if c not in string.whitespace)

with subtest("wait_until_tty_matches"):
    with subtest("success"):
        machine.wait_until_tty_matches("1", "root@")
    with subtest("failure"):
        with no_sleep(), must_raise("action timed out"):
            machine.wait_until_tty_matches("1", "asdfasdf", timeout=10)

with subtest("send_chars"):
    machine.send_chars("cat\n")
    machine.sleep(2)
    machine.send_chars(test_string + "\n")
    machine.wait_until_tty_matches("1", re.escape(test_string), timeout=10)
    machine.send_key("ctrl-d")

with subtest("wait_for_console_text"):
    with subtest("failure"):
        with no_sleep(), must_raise("action timed out"):
            machine.wait_for_console_text("foobar", timeout=10)
print("TTY PASSED")
'''


def test_tty_py(nixos_test):
    run = nixos_test(SCRIPT, {"tty": Node("debian", append="td.autologin td.fb")}, common=True).check()
    assert "TTY PASSED" in run.stdout
