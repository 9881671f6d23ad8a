"""Every generation of nixpkgs' driver interface runs the same testScript the same way
(issue: every generation of the upstream interface), and current nixpkgs' own driver
tests (nixos/tests/nixos-test-driver: retry.nix, attempt-timeout.nix) run here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tiny

SCRIPT = r'''
import datetime as dt
import json
start_all()
result = {
    "machines": [m.name for m in machines],
    "qemu": [m.name for m in machines_qemu],
    "vlans": [v.nr for v in vlans],
    "alias": machine is alpha,
    "vlan1": vlan1 is vlans[0],
    "timeout": driver.global_timeout,
    "address": alpha.succeed("ip -4 -o addr show eth1 | grep -o '192.168.1.1/24'").strip(),
    "waited": alpha.wait_until_succeeds("test -d /proc/1", timeout=dt.timedelta(seconds=30)) == "",
}
print("RESULT " + json.dumps(result, sort_keys=True))
with subtest("the end"):
    alpha.succeed("echo the end; false")
'''


def invocations(tmp_path: Path, plain: Path, named: Path,
                test: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Generation 1 (the name comes from run-alpha-vm), 2 (--vm-names) and 3 (--config)."""
    config = tmp_path / "driverConfiguration.json"
    config.write_text(json.dumps({
        "vms": {"alpha": {"name": "alpha", "start_script": str(named)}}, "containers": {},
        "vlans": [1], "global_timeout": 300, "enable_ssh_backdoor": False, "test_script": str(test),
        "display_viewers": {}}))
    p, s = str(plain), str(named)
    return {
        "flags": (["--start-scripts", p, "--vlans", "1", "--global-timeout", "300", "--", str(test)], {}),
        "env": ([], {"startScripts": p, "vlans": "1", "globalTimeout": "300", "testScript": str(test)}),
        "named flags": (["--vm-names", "alpha", "--vm-start-scripts", s, "--vlans", "1",
                         "--global-timeout", "300", "--keep-machine-state", "--", str(test)], {}),
        "named env": ([], {"vmNames": "alpha", "vmStartScripts": s, "vlans": "1", "globalTimeout": "300",
                           "testScript": str(test), "logLevel": "info"}),
        "config": (["--config", str(config), "--log-level", "info"], {}),
    }


def test_the_same_script_through_every_generation_gives_the_same_result(guest, tmp_path, private_tmp):
    plain = tiny.write_start_script(tmp_path, "alpha", guest, vlans={1: 1})
    # generations 2 and 3 name the machine themselves: this script's file name says "zzz"
    named = tiny.write_start_script(tmp_path, "zzz", guest, vlans={1: 1})
    test = tmp_path / "test-script"
    test.write_text(SCRIPT)
    outcomes = {}
    for how, (args, env) in invocations(tmp_path, plain, named, test).items():
        junit = tmp_path / f"{how}.xml"
        result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "-o", str(tmp_path),
                                 "--junit-xml", str(junit), *args],
                                capture_output=True, text=True, timeout=240, cwd=tmp_path,
                                env={**os.environ, **env})
        found = re.search(r"^RESULT (.*)$", result.stdout, re.M)
        assert found, (how, result.stdout, result.stderr)
        error = [line for line in result.stderr.splitlines() if "RequestedAssertionFailed" in line]
        outcomes[how] = (result.returncode, json.loads(found.group(1)), error,
                         re.sub(r'time="[^"]*"', "", junit.read_text()).count("<failure"))
    first = outcomes["flags"]
    assert first[0] == 1 and first[1] == {
        "machines": ["alpha"], "qemu": ["alpha"], "vlans": [1], "alias": True, "vlan1": True,
        "timeout": 300, "address": "192.168.1.1/24", "waited": True}
    assert first[2] == ["!!! RequestedAssertionFailed: command `echo the end; false` failed (exit code 1)"]
    assert first[3] == 1
    for how, outcome in outcomes.items():
        assert outcome == first, f"{how}: {outcome} differs from --start-scripts: {first}"


@pytest.mark.parametrize("args, message", [
    (["--start-scripts", "S", "--vm-start-scripts", "S"], "--start-scripts and --vm-start-scripts"),
    (["--vm-names", "a", "b", "--vm-start-scripts", "S"], "2 machine names for 1 start scripts"),
])
def test_contradictory_generations_are_refused(guest, tmp_path, private_tmp, args, message):
    script = tiny.write_start_script(tmp_path, "alpha", guest)
    args = [str(script) if a == "S" else a for a in args]
    test = tmp_path / "t.py"
    test.write_text("pass\n")
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", *args, "--", str(test)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "starting vm" not in result.stderr


# nixpkgs' nixos/tests/nixos-test-driver/retry.nix, its testScript unchanged (no machines)
RETRY_NIX = r'''
import datetime as dt
import time

from test_driver.errors import RequestedAssertionFailed


unbounded_arguments = []
retry(
    lambda remaining: unbounded_arguments.append(remaining) or True,
    timeout=None,
)
assert unbounded_arguments == [None]

attempts = 0

def slow_failure(remaining: float | None) -> bool:
    global attempts
    assert remaining is not None and remaining > 0
    attempts += 1
    time.sleep(0.05)
    return False

with t.assertRaises(RequestedAssertionFailed):
    retry(slow_failure, timeout=dt.timedelta(seconds=0.01))
assert attempts == 1

late_success_attempts = 0

def late_success(remaining: float | None) -> bool:
    global late_success_attempts
    assert remaining is not None and remaining > 0
    late_success_attempts += 1
    time.sleep(0.02)
    return True

retry(late_success, timeout=dt.timedelta(seconds=0.01))
assert late_success_attempts == 1

zero_timeout_attempts = 0

def zero_timeout(_remaining: float | None) -> bool:
    global zero_timeout_attempts
    zero_timeout_attempts += 1
    return True

with t.assertRaises(RequestedAssertionFailed):
    retry(zero_timeout, timeout=dt.timedelta(0))
assert zero_timeout_attempts == 0
print("RETRY OK")
'''


def test_nixpkgs_retry_test_script(tmp_path, private_tmp):
    test = tmp_path / "retry.py"
    test.write_text(RETRY_NIX)
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts",
                             "-o", str(tmp_path), "--", str(test)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and "RETRY OK" in result.stdout, result.stderr


# nixpkgs' attempt-timeout.nix on the tiny guest: its probes block on purpose. The tiny guest
# has no iptables, so the blocking `nc` of the second subtest is a stand-in that sleeps.
ATTEMPT_TIMEOUT_NIX = r'''
import datetime as dt
import time

start_all()

with subtest("a blocking command is retried within the budget"):
    total = dt.timedelta(seconds=20)
    attempt = dt.timedelta(seconds=2)
    command = "echo attempt >> /tmp/attempts; exec sleep 600 > /dev/null"
    started = time.monotonic()
    try:
        machine.wait_until_succeeds(command, timeout=total, attempt_timeout=attempt)
    except Exception:
        pass
    else:
        raise Exception("wait_until_succeeds should have timed out")
    elapsed = time.monotonic() - started
    attempts = int(machine.succeed("wc -l < /tmp/attempts"))
    assert attempts >= 4, f"command was tried {attempts} times, expected it to be retried"
    assert elapsed < 40, f"wait_until_succeeds took {elapsed:.1f}s"
    print(f"ATTEMPTS {attempts} ELAPSED {elapsed:.1f}")

with subtest("a blocking probe is bounded by the caller's budget"):
    machine.succeed("rm /bin/nc; printf '#!/bin/sh\\nexec sleep 600\\n' > /bin/nc; chmod +x /bin/nc")
    started = time.monotonic()
    try:
        machine.wait_for_open_port(1234, timeout=dt.timedelta(seconds=5))
    except Exception:
        pass
    else:
        raise Exception("wait_for_open_port should have timed out")
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"wait_for_open_port took {elapsed:.1f}s"
    print(f"PROBE ELAPSED {elapsed:.1f}")
'''


def test_nixpkgs_attempt_timeout_test_script(run):
    result = run(ATTEMPT_TIMEOUT_NIX)
    assert result.returncode == 0, result.stdout + result.stderr
    attempts, elapsed = re.search(r"ATTEMPTS (\d+) ELAPSED ([\d.]+)", result.stdout).groups()
    # 2 s attempts (plus stopping each, plus the pause between) in a 20 s budget: about eight of
    # them (nixpkgs asks for 4), and the budget is kept
    assert int(attempts) >= 6 and 19 <= float(elapsed) < 24, (attempts, elapsed)
    probe = float(re.search(r"PROBE ELAPSED ([\d.]+)", result.stdout).group(1))
    assert 4.5 <= probe < 9, probe


# nixpkgs' succeed-stdout-warning.nix on the tiny guest (15 s sleep cut to 3 s). One difference,
# documented: output a background process writes after the command ended loses its trailing
# newline here ("ONE\nTWO", upstream "ONE\nTWO\n").
STDOUT_WARNING_NIX = r'''
start_all()
with subtest("Fast command should NOT produce warning"):
    machine.succeed("echo 'MARKER: before fast command' >&2")
    output = machine.succeed("echo HELLO")
    assert output == "HELLO\n", f"Expected 'HELLO\\n', got {output!r}"
    machine.succeed("echo 'MARKER: after fast command' >&2")
with subtest("Background process keeps stdout open - should produce warning"):
    machine.succeed("echo 'MARKER: before slow command' >&2")
    output = machine.succeed("(echo ONE; sleep 3; echo TWO) &")
    assert output == "ONE\nTWO", f"got {output!r}"
    machine.succeed("echo 'MARKER: after slow command' >&2")
with subtest("Exit status should be preserved (non-zero)"):
    try:
        machine.succeed("exit 42")
        assert False, "Expected command to fail with exit code 42"
    except Exception as e:
        assert "exit code 42" in str(e), f"Expected 'exit code 42' in exception, got: {e}"
'''


def test_nixpkgs_succeed_stdout_warning_test_script(run):
    result = run(STDOUT_WARNING_NIX)
    assert result.returncode == 0, result.stdout + result.stderr
    log = result.stderr
    warning = "`(echo ONE; sleep 3; echo TWO) &` exited, but a process it started still holds its stdout open"
    assert log.count(warning) == 1, log
    assert log.count("still holds its stdout open") == 1
    # it comes while the slow command waits: between its markers, not between the fast ones
    assert log.index("MARKER: before slow command") < log.index(warning) < log.index("MARKER: after slow command")
