"""nixpkgs' nixos-test-driver/succeed-stdout-warning.nix (from open PR #471141): a default
VM; its script fails on purpose at the end so that the nix wrapper can read the log.  Our
Debian systemd guest.

What it asserts: a quick ``succeed`` returns its output and warns of nothing; a command
whose background job keeps stdout open 15 s returns everything ("ONE\\nTWO\\n"), and the
log warns about it between the markers around it; a failing command's error says "exit
code 42"; a command's stderr reaches the log; the run fails with the script's exception.
(The PR's wrapper is not in nixpkgs; the warning's words are ours: "... exited, but a
process it started still holds its stdout open".)
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
start_all()
machine.wait_for_unit("multi-user.target")
with subtest("Fast command should NOT produce warning"):
    machine.succeed("echo 'MARKER: before fast command' >&2")
    output = machine.succeed("echo HELLO")
    assert output == "HELLO\n", repr(output)
    machine.succeed("echo 'MARKER: after fast command' >&2")
with subtest("Background process keeps stdout open - should produce warning"):
    machine.succeed("echo 'MARKER: before slow command' >&2")
    output = machine.succeed("(echo ONE; sleep 15; echo TWO) &")
    assert output == "ONE\nTWO\n", repr(output)
    machine.succeed("echo 'MARKER: after slow command' >&2")
with subtest("Exit status should be preserved (non-zero)"):
    try:
        machine.succeed("exit 42")
    except Exception as e:
        assert "exit code 42" in str(e), str(e)
    else:
        raise AssertionError("succeed('exit 42') did not raise")
with subtest("User Command stderr should go to console"):
    machine.succeed("echo 'STDERR_TEST_MARKER: user command stderr output' >&2")
raise Exception("Test script done and successful so far. Intentionally failing so that the log can be checked")
'''

WARNING = "still holds its stdout open"


def test_succeed_stdout_warning_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian")})
    log = run.log
    assert run.returncode == 1, (run.returncode, log[-3000:])
    assert "Intentionally failing so that the log can be checked" in log
    fast = log[log.index("MARKER: before fast command"):log.index("MARKER: after fast command")]
    slow = log[log.index("MARKER: before slow command"):log.index("MARKER: after slow command")]
    assert WARNING not in fast and WARNING in slow, slow
    assert "STDERR_TEST_MARKER: user command stderr output" in log
