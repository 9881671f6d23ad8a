"""systemd-nspawn containers as test nodes, next to a tiny VM (tests/guests/nspawn.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nspawn
import pytest
import tiny

from conftest import kill_later, processes_mentioning, wait_no_processes
from test_driver.driver import Driver
from test_driver.errors import MachineCrashed, MachineError, RequestedAssertionFailed
from test_driver.machine import NspawnMachine

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="systemd-nspawn needs root")


def leftovers(private_tmp: Path) -> list[str]:
    """Processes, mounts and veth links the run left behind."""
    left = wait_no_processes(str(private_tmp))
    left += [line for line in Path("/proc/mounts").read_text().splitlines() if str(private_tmp) in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left += [line for line in links.splitlines() if " ve-" in line or " vb-" in line]
    return left


@pytest.fixture
def mixed(guest, debian_guest, tmp_path, private_tmp, log):
    """A Driver with a tiny VM "vm1" and a container "box"; checks that nothing is left after it."""
    vm = tiny.write_start_script(tmp_path, "vm1", guest)
    box = nspawn.write_start_script(tmp_path, "box", debian_guest)
    out = tmp_path / "out"
    out.mkdir()
    with Driver([str(vm)], [], "", out, log, container_start_scripts=[str(box)]) as driver:
        yield driver
    assert leftovers(private_tmp) == []


def test_container_and_vm_share_the_machine_api(mixed, tmp_path):
    driver = mixed
    box = driver.machines_nspawn[0]
    assert isinstance(box, NspawnMachine) and driver.machines_qemu[0].name == "vm1"
    assert {"box", "vm1", "machines_nspawn", "machines_qemu", "NspawnMachine"} <= set(driver.test_symbols())
    driver.start_all()
    box.wait_for_unit("multi-user.target", timeout=120)
    box.wait_for_open_port(8000, timeout=60)  # the echo service, inside the container's network
    assert box.succeed("echo hi | nc -N localhost 8000") == "hi\n"
    assert box.succeed("systemctl is-system-running --wait || true").strip() in ("running", "degraded")
    assert box.execute("exit 3") == (3, "")
    assert box.execute("false | true")[0] == 1  # bash with set -euo pipefail, as in the VMs
    assert box.execute("sleep 30", timeout=1)[0] == 124
    host_file = tmp_path / "from-host.txt"
    host_file.write_text("payload")
    box.copy_from_host(str(host_file), "/root/payload.txt")
    assert box.succeed("cat /root/payload.txt") == "payload"
    box.copy_from_machine("/etc/debian_version")
    assert (driver.out_dir / "debian_version").read_text().startswith("12")
    box.start_job("failing.service")
    start = time.monotonic()
    with pytest.raises(RequestedAssertionFailed, match='unit "failing.service" reached state "failed"'):
        box.wait_for_unit("failing.service", timeout=60)
    assert time.monotonic() - start < 10
    with pytest.raises(MachineError, match="screenshot\\(\\) needs a QEMU machine: 'box' is a container"):
        box.screenshot("nope")
    assert driver.machines_qemu[0].succeed("echo vm") == "vm\n"
    box.shutdown()
    assert not box.is_up()
    assert box.succeed("echo again") == "again\n"  # the next command starts it again


def test_killing_the_containers_init_is_detected_within_a_second(mixed):
    box = mixed.machines_nspawn[0]
    box.succeed("true")
    assert box.init_pid is not None
    killed: dict[str, float] = {}
    kill_later(box.init_pid, 1.0, killed)
    with pytest.raises(MachineCrashed) as info:
        box.succeed("sleep 60")
    assert time.monotonic() - killed["killed"] < 1.0
    assert "'box'" in str(info.value) and "init died" in str(info.value)
    assert info.value.post_mortem.running_command == "sleep 60"
    assert info.value.post_mortem.serial_tail  # its last console lines
    assert (mixed.out_dir / "box-post-mortem.txt").read_text().startswith("post-mortem of machine 'box'")
    assert [p.machine for p in mixed.crashes] == ["box"]
    with pytest.raises(MachineCrashed):
        box.succeed("true")


def test_containers_from_the_command_line_and_config(guest, debian_guest, tmp_path, private_tmp):
    vm = tiny.write_start_script(tmp_path, "zzz", guest)
    box = nspawn.write_start_script(tmp_path, "yyy", debian_guest)
    test = tmp_path / "t.py"
    test.write_text("start_all()\nassert [m.name for m in machines_nspawn] == ['box']\n"
                    "box.wait_for_unit('multi-user.target', timeout=120)\nvm1.succeed('true')\n"
                    "assert isinstance(box, NspawnMachine)\n")
    flags = subprocess.run(
        [sys.executable, "-m", "test_driver.cli_main", "--vm-names", "vm1", "--vm-start-scripts", str(vm),
         "--container-names", "box", "--container-start-scripts", str(box), "-o", str(tmp_path), str(test)],
        capture_output=True, text=True, timeout=300)
    assert flags.returncode == 0, flags.stderr[-3000:]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "vms": {"vm1": {"name": "vm1", "start_script": str(vm)}},
        "containers": {"box": {"name": "box", "start_script": str(box)}},
        "vlans": [], "global_timeout": 600, "enable_ssh_backdoor": False, "test_script": str(test)}))
    from_config = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--config", str(config),
                                  "-o", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert from_config.returncode == 0, from_config.stderr[-3000:]
    assert leftovers(private_tmp) == []


def test_sigterm_to_the_driver_stops_containers_too(guest, debian_guest, tmp_path, private_tmp):
    box = nspawn.write_start_script(tmp_path, "box", debian_guest)
    test = tmp_path / "t.py"
    test.write_text("box.succeed('true')\nbox.succeed('sleep 600')\n")
    proc = subprocess.Popen([sys.executable, "-m", "test_driver.cli_main", "--container-start-scripts", str(box),
                             "-o", str(tmp_path), str(test)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "must succeed: sleep 600" in line:
                break
        assert processes_mentioning(str(private_tmp))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
    finally:
        proc.kill()
        proc.wait()
    assert leftovers(private_tmp) == []


def test_the_first_command_waits_for_the_containers_manager(debian_guest, tmp_path, private_tmp, log):
    """As nixpkgs' containers test does: start(), then at once a command that needs systemd's bus."""
    box = nspawn.write_start_script(tmp_path, "box", debian_guest)
    out = tmp_path / "out"
    out.mkdir()
    for run in range(10):
        with Driver([], [], "", out, log, container_start_scripts=[str(box)]) as driver:
            container = driver.machines[0]
            container.start()
            container.succeed("systemctl start echo-tcp.service")
            assert container.succeed("pwd") == "/\n"
    assert "error retrieving current directory" not in log.text
    assert leftovers(private_tmp) == []
