"""nixos-test-driver as a subprocess: exit statuses, error messages, signals, no leftovers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny

from e2e_support import driver_running, processes_mentioning, wait_no_processes


def test_passing_script_exits_zero(run, tmp_path):
    result = run("start_all()\nmachine.succeed('true')\nassert machine.succeed('echo hi') == 'hi\\n'\n",
                 env={"LOGFILE": str(tmp_path / "log.xml")})
    assert result.returncode == 0, result.stderr
    assert "test script finished" in result.stderr
    # stderr is a pipe: no live status line (no "booting, N s", no erasures)
    assert "\x1b[K" not in result.stderr and not re.search(r"booting, \d+ s", result.stderr)
    import xml.etree.ElementTree as ET
    root = ET.parse(tmp_path / "log.xml").getroot()
    assert root.tag == "logfile"
    assert any(line.get("type") == "serial" for line in root.iter("line"))


def test_failing_script_shows_the_failing_line(run):
    result = run("start_all()\nmachine.succeed('true')\nmachine.succeed('exit 4')\nprint('not reached')\n")
    assert result.returncode == 1
    assert '!!! File' in result.stderr and "line 3" in result.stderr
    assert "machine.succeed('exit 4')" in result.stderr
    assert "failed (exit code 4)" in result.stderr
    assert "not reached" not in result.stdout


def test_failed_polling_condition_is_a_test_failure_not_caught_as_an_assertion(run):
    result = run("""
from test_driver.errors import RequestedAssertionFailed

@polling_condition
def never():
    return False

with never:
    try:
        machine.succeed("true")
    except RequestedAssertionFailed:
        print("caught as an assertion")
""")
    assert result.returncode == 1
    assert "caught as an assertion" not in result.stdout
    assert "Polling condition failed: never" in result.stderr
    assert "Traceback" not in result.stderr  # a test failure, not a bug of the driver


def test_syntax_error_names_line_before_any_vm(run, tmp_path):
    result = run("start_all()\nmachine.succeed('true'\n")
    assert result.returncode == 2
    assert "syntax error" in result.stderr and "line 2" in result.stderr
    assert "starting vm" not in result.stderr


def test_bad_start_scripts(tmp_path, private_tmp):
    script = tmp_path / "s.py"
    script.write_text("start_all()\n")
    missing = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts",
                              str(tmp_path / "run-nope-vm"), "--", str(script)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    noexec = tmp_path / "run-x-vm"
    noexec.write_text("#!/bin/sh\n")
    noexec.chmod(0o644)
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts",
                             str(noexec), "--", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not an executable file" in result.stderr
    other = tmp_path / "other"
    other.mkdir()
    twin = other / "run-x-vm"
    twin.write_text("#!/bin/sh\n")
    twin.chmod(0o755)
    noexec.chmod(0o755)
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts",
                             str(noexec), str(twin), "--", str(script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "two start scripts for machine 'x'" in result.stderr


@pytest.mark.parametrize("timeout", ["0", "-5"])
def test_a_global_timeout_that_is_not_positive_is_refused(tmp_path, timeout):
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--global-timeout", timeout,
                             "-o", str(tmp_path), "--", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--global-timeout must be a positive number of seconds" in result.stderr


def test_a_driver_error_raised_by_the_script_is_a_test_failure(tmp_path, private_tmp):
    """As upstream: a bad start script handed to create_machine() fails the test (status 1, the
    script's line in the report), it is no bad input to the driver (status 2)."""
    script = tmp_path / "s.py"
    script.write_text("pass\ncreate_machine('/nonexistent/run-x-vm')\n")
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "-o", str(tmp_path), "--", str(script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "does not exist" in result.stderr and "line 2" in result.stderr


def test_output_directory_must_be_writable(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("")
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "-o",
                             str(tmp_path / "missing"), str(script)], capture_output=True, text=True)
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_unknown_machine_name_lists_machines(run):
    result = run("start_all()\nmachne.succeed('true')\n")
    assert result.returncode == 1
    assert "name 'machne' is not defined" in result.stderr
    assert "machine" in result.stderr


def test_guest_without_backdoor_times_out_clearly(run):
    result = run("machine.connect(timeout=8)\n", append={"machine": "td.nobackdoor"})
    assert result.returncode == 1
    assert "(timeout=8.0) waiting for the backdoor greeting" in result.stderr
    assert "last serial line" in result.stderr


def test_env_vars_instead_of_flags(guest, tmp_path, private_tmp):
    script = tiny.write_start_script(tmp_path, "envvm", guest)
    test = tmp_path / "t.py"
    test.write_text("envvm.succeed('true')\n")
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main"], capture_output=True,
                            text=True, timeout=240, cwd=tmp_path,
                            env={**os.environ, "startScripts": str(script), "testScript": str(test),
                                 "globalTimeout": "200"})
    assert result.returncode == 0, result.stderr


def test_global_timeout_names_what_was_running(run, private_tmp):
    """As upstream: `timeout reached; test terminating...`, then the driver dies by SIGTERM (a
    shell sees 143), which a script's `except Exception` cannot swallow; ours says what was
    running too."""
    result = run("start_all()\nwith subtest('slow part'):\n    try:\n        machine.succeed('sleep 100')\n"
                 "    except Exception:\n        machine.succeed('sleep 100')\n",
                 args=["--global-timeout", "10"])
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "timeout reached; test terminating..." in result.stderr
    assert "test timed out after 10s" in result.stderr
    assert "slow part" in result.stderr and "sleep 100" in result.stderr


def test_global_timeout_during_a_boot_says_so(run, private_tmp):
    result = run("machine.succeed('true')\n", args=["--global-timeout", "8"], append={"machine": "td.nobackdoor"})
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "timeout reached; test terminating..." in result.stderr
    assert "machine: booting (no backdoor yet)" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_driver_leaves_nothing_behind(guest, tmp_path, private_tmp, sig):
    script = "victim.succeed('echo ready > /dev/ttyS0')\nvictim.succeed('sleep 600')\n"
    with driver_running(guest, tmp_path, "victim", script, "must succeed: sleep 600", ["--vlans", "1"]) as proc:
        assert processes_mentioning(str(private_tmp))
        switches = children_named(proc.pid, "vde_switch")
        assert len(switches) == 1
        proc.send_signal(sig)
        start = time.monotonic()
        rest = proc.stdout.read()
        assert proc.wait(10) == -sig  # it dies by the signal, as upstream's (a shell: 143, 130, 129)
        assert wait_no_processes(str(private_tmp), 5) == []
        assert time.monotonic() - start < 5
        assert "interrupted" in rest
        assert list(private_tmp.iterdir()) == []  # private dirs removed
        assert not Path(f"/proc/{switches[0]}").exists()  # the VLAN's vde_switch is gone too


def children_named(parent: int, name: str) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("Name", "").strip() == name and int(fields.get("PPid", "0")) == parent:
            found.append(int(status.parent.name))
    return found


def test_sigkill_of_driver_still_kills_qemu(guest, tmp_path, private_tmp):
    script = "orphan.start()\nimport time\ntime.sleep(600)\n"
    with driver_running(guest, tmp_path, "orphan", script, "QEMU running"):
        assert processes_mentioning(str(private_tmp))
    assert wait_no_processes(str(private_tmp), 5) == []


def nixpkgs_config(tmp_path, guest, script: str, **fields) -> Path:
    """A --config JSON shaped like nixpkgs' driver-configuration.nix writes."""
    start_script = tiny.write_start_script(tmp_path, "zzz", guest)  # the name comes from the JSON
    test = tmp_path / "test-script"
    test.write_text(script)
    config = {"vms": {"alpha": {"name": "alpha", "start_script": str(start_script)}}, "containers": {},
              "vlans": [], "global_timeout": 600, "enable_ssh_backdoor": False, "test_script": str(test),
              **fields}
    path = tmp_path / "driverConfiguration.json"
    path.write_text(json.dumps(config))
    return path


def test_config_json_like_nixpkgs(guest, tmp_path, private_tmp):
    config = nixpkgs_config(tmp_path, guest, "alpha.succeed('true')\nassert machine.machine is alpha\n"
                            "machine.succeed('true')\nassert driver.global_timeout == 600\n"
                            "assert driver.config.global_timeout.total_seconds() == 600\n"
                            "assert driver.config.vms['alpha'].start_script.name == 'run-zzz-vm'\n")
    # As upstream's --config CLI, the older generation's variables are not read: a shell of the
    # driver's derivation (nix develop .#...driver) has $testScript and the others set.
    env = {**os.environ, "testScript": "/nonexistent/test-script", "vlans": "7", "globalTimeout": "5",
           "startScripts": "/nonexistent/run-x-vm", "vmNames": "x"}
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--config", str(config),
                             "--log-level", "info", "-o", str(tmp_path)],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr
    assert "alpha: must succeed: true" in result.stderr
    assert "invoking 'QemuMachine.succeed' is deprecated" in result.stderr  # `machine` is upstream's proxy


@pytest.mark.parametrize("change, args, message", [
    ({}, ["some-script.py"], "--config names the machines, VLANs and test script: drop a test script"),
    ({"containers": {"c1": {"name": "c1", "start_script": "/nonexistent/run-c1-nspawn"}}}, [],
     "container start script '/nonexistent/run-c1-nspawn' is not an executable file"),
    ({"vms": {"alpha": {"name": "alpha"}}}, [], 'vms.alpha needs a "start_script" string'),
    ({"vlans": "1"}, [], '"vlans" must be a list of numbers'),
    ({"global_timeout": -5}, [], '"global_timeout" must be a positive number'),
])
def test_bad_config_is_refused_before_any_vm(guest, tmp_path, private_tmp, change, args, message):
    config = nixpkgs_config(tmp_path, guest, "alpha.succeed('true')\n", **change)
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "-c", str(config),
                             "-o", str(tmp_path), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert "starting vm" not in result.stderr


def test_config_that_is_not_json(tmp_path, private_tmp):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--config", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "is not JSON" in result.stderr


def test_t_assertions_fail_like_succeed(run):
    result = run("t.assertEqual(machine.succeed('echo 1'), '1\\n')\n"
                 "t.assertIn('x', machine.succeed('echo abc'))\n")
    assert result.returncode == 1
    assert "!!! RequestedAssertionFailed: 'x' not found in 'abc\\n'" in result.stderr
    assert "line 2" in result.stderr


def test_dump_vsocks_lists_each_machines_ssh_command(run):
    result = run("try:\n    alpha.ssh_backdoor_command()\nexcept AssertionError:\n    print('NO-BACKDOOR')\n",
                 names=["beta", "alpha"], args=["--dump-vsocks", "2"])
    assert result.returncode == 0, result.stderr
    assert "NO-BACKDOOR" in result.stdout  # upstream's call without argument, its backdoor off
    assert "alpha  ssh -o User=root vsock/3" in result.stderr  # in name order from OFFSET + 1
    assert "beta   ssh -o User=root vsock/4" in result.stderr


def test_keep_vm_state_between_runs(guest, tmp_path, private_tmp):
    """-K keeps the machine's state directory (its disk) for the next run; without it the
    state is reset when the machine is made, before any start, as upstream."""
    inner = tiny.write_start_script(tmp_path, "inner", guest)
    script = tmp_path / "run-keeper-vm"  # a disk in the state directory, as NixOS's start scripts make
    script.write_text(f"""#!/bin/sh
disk="${{TMPDIR:?}}/keeper.qcow2"
[ -e "$disk" ] || qemu-img create -q -f qcow2 "$disk" 1M
exec {inner} -drive file="$disk",if=virtio,format=qcow2 "$@"
""")
    script.chmod(0o755)

    def run(test: str, *flags: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "t.py"
        path.write_text(test)
        return subprocess.run([sys.executable, "-m", "test_driver.cli_main", *flags, "--start-scripts",
                               str(script), "-o", str(tmp_path), "--", str(path)],
                              capture_output=True, text=True, timeout=300)

    first = run("keeper.succeed('echo kept | dd of=/dev/vda conv=fsync 2>/dev/null')\n"
                "keeper.shutdown()\n", "-K")
    assert first.returncode == 0, first.stderr[-2000:]
    assert (private_tmp / "vm-state-keeper" / "keeper.qcow2").exists()
    again = run("assert keeper.succeed('head -n 1 /dev/vda') == 'kept\\n'\nkeeper.shutdown()\n", "-K")
    assert again.returncode == 0, again.stderr[-2000:]
    fresh = run("assert not keeper.booted\n")
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "Machine state will be reset" in fresh.stderr
    assert not (private_tmp / "vm-state-keeper").exists()
