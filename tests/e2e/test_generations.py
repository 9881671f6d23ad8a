"""Every generation of nixpkgs' driver interface runs the same testScript the same way
(issue: every generation of the upstream interface), and the behaviours current nixpkgs
checks in its own driver tests hold here."""

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
    "alias": machine.machine is alpha,  # upstream's proxy for the only machine's old name
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


# Probes that block on purpose: a command that never ends (cut by attempt_timeout), and an `nc`
# that never ends (the tiny guest's nc is replaced by a sleeping script), cut by the deadline.
BLOCKING_PROBES = r'''
import datetime as dt
import time

def seconds_until_it_gives_up(call):
    tic = time.monotonic()
    try:
        call()
    except Exception:
        return time.monotonic() - tic
    raise AssertionError("the wait should have ended in a timeout")

start_all()
machine.succeed("true")  # booted: the budget below is the attempts' alone, not the boot's too
with subtest("attempts of a blocking command are cut and retried"):
    took = seconds_until_it_gives_up(lambda: machine.wait_until_succeeds(
        "echo try >> /tmp/tries; exec sleep 1000 >/dev/null",
        timeout=dt.timedelta(seconds=20), attempt_timeout=dt.timedelta(seconds=2)))
    tries = int(machine.succeed("wc -l < /tmp/tries"))
    print(f"ATTEMPTS {tries} ELAPSED {took:.1f}")

with subtest("a probe that outlasts the wait is cut at its deadline"):
    machine.succeed("rm /bin/nc && printf '#!/bin/sh\\necho probe >> /tmp/probes\\nexec sleep 600\\n' > /bin/nc"
                    " && chmod +x /bin/nc")
    took = seconds_until_it_gives_up(lambda: machine.wait_for_open_port(4321, timeout=dt.timedelta(seconds=3)))
    probes = int(machine.succeed("wc -l < /tmp/probes"))
    print(f"PROBES {probes} ELAPSED {took:.1f}")
    # an attempt of wait_until_succeeds gets what is left of the budget, no more
    took = seconds_until_it_gives_up(lambda: machine.wait_until_succeeds("sleep 600", timeout=dt.timedelta(seconds=2)))
    print(f"LAST ELAPSED {took:.1f}")
'''


def test_attempts_are_cut_by_attempt_timeout_and_probes_by_the_deadline(run):
    result = run(BLOCKING_PROBES)
    assert result.returncode == 0, result.stdout + result.stderr
    attempts, elapsed = re.search(r"ATTEMPTS (\d+) ELAPSED ([\d.]+)", result.stdout).groups()
    # 2 s attempts, each starting a second after the one before at the earliest, in a 20 s budget:
    # about ten of them, and none after the deadline
    assert int(attempts) >= 8 and 19.5 <= float(elapsed) < 23, (attempts, elapsed)
    probes, probe = re.search(r"PROBES (\d+) ELAPSED ([\d.]+)", result.stdout).groups()
    assert probes == "1" and 2.9 <= float(probe) < 6, (probes, probe)  # cut at the deadline
    last = float(re.search(r"LAST ELAPSED ([\d.]+)", result.stdout).group(1))
    assert 1.9 <= last < 5, last


# A background job holding stdout after its command ended: the reply waits for it, whole, as
# upstream's; the log says why, once; a quick command says nothing.  The tiny guest has no
# /dev/fd: the backdoor's helpers must not need it (they once did, and spun printing errors).
LINGERING_STDOUT = r'''
start_all()
with subtest("quick"):
    machine.succeed("echo 'SIGN quick begins' >&2")
    assert machine.succeed("echo quick") == "quick\n"
    machine.succeed("echo 'SIGN quick ends' >&2")
with subtest("lingering"):
    machine.succeed("echo 'SIGN lingering begins' >&2")
    out = machine.succeed("(echo early; sleep 3; echo late) &")
    assert out == "early\nlate\n", repr(out)
    machine.succeed("echo 'SIGN lingering ends' >&2")
with subtest("status"):
    status, _ = machine.execute("exit 42")
    assert status == 42, status
'''


def test_a_command_whose_stdout_outlives_it_is_reported(run):
    result = run(LINGERING_STDOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    log = result.stderr
    warning = "`(echo early; sleep 3; echo late) &` exited, but a process it started still holds its stdout open"
    assert log.count(warning) == 1, log
    assert log.count("still holds its stdout open") == 1
    assert "/dev/hvc0: line" not in log, log  # no error from the backdoor shell
    assert log.index("SIGN lingering begins") < log.index(warning) < log.index("SIGN lingering ends")
