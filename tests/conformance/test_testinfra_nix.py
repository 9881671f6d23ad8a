"""nixpkgs' nixos-test-driver/testinfra.nix (from the pull request "test-driver: add
Testinfra support"): one VM, ``machine``, with an empty configuration, and the
pytest-testinfra ``Host`` API on the machine object, every command going through the
machine's backdoor.

What it asserts: after ``start_all()`` and ``wait_for_unit("multi-user.target")``, testinfra's
``User`` says root exists; its ``File`` says /etc/passwd exists and is a regular file;
``machine.run("echo hello")`` returns a ``CommandResult`` (not ``execute``'s tuple) with
status 0 and stdout "hello" once stripped; its ``Service`` says multi-user.target exists,
and the ``Before`` entry of its ``systemd_properties`` (``systemctl show`` parsed into a
dict) is exactly ``shutdown.target``.

Our Debian systemd guest stands for the empty NixOS VM.  It differs in the last fact: its
default target is graphical.target and it has ``systemd-update-utmp-runlevel.service``, so
multi-user.target is ordered before those two as well as shutdown.target
(``Before=shutdown.target graphical.target systemd-update-utmp-runlevel.service``).  The
script asserts the equivalent: shutdown.target is among the words of ``Before``, the words
are exactly that set, and the value is the very string systemd reports
(``systemctl show -p Before --value``).  Beyond upstream's steps it checks what the same API
gives on a failing command: its status, and stdout and stderr kept apart.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
start_all()
machine.wait_for_unit("multi-user.target")

with subtest("users and files, read through testinfra's modules"):
    assert machine.user("root").exists, "root is missing"
    assert not machine.user("no-such-user").exists
    passwd = machine.file("/etc/passwd")
    assert passwd.exists and passwd.is_file, "/etc/passwd is not a regular file"
    assert not machine.file("/etc").is_file

with subtest("run gives testinfra's CommandResult"):
    greeting = machine.run("echo hello")
    assert not isinstance(greeting, tuple), greeting
    assert greeting.rc == 0, greeting
    assert greeting.stdout.strip() == "hello", greeting
    broken = machine.run("echo partial; echo complaint >&2; exit 3")
    assert (broken.rc, broken.stdout, broken.stderr) == (3, "partial\n", "complaint\n"), broken

with subtest("multi-user.target, as testinfra's Service"):
    target = machine.service("multi-user.target")
    assert target.exists, "multi-user.target does not exist"
    assert not machine.service("no-such-unit.service").exists
    before = target.systemd_properties["Before"]
    # NixOS: exactly "shutdown.target"; this Debian guest orders two more units after it
    assert "shutdown.target" in before.split(), before
    assert set(before.split()) == {"shutdown.target", "graphical.target",
                                   "systemd-update-utmp-runlevel.service"}, before
    assert before == machine.succeed("systemctl show -p Before --value multi-user.target").strip()
print("TESTINFRA PASSED")
'''


def test_testinfra_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian")}).check()
    assert "TESTINFRA PASSED" in run.stdout
