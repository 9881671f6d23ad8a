"""Faults on real guests: a misbehaving backdoor, huge output, drivers side by side, a soak."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import tiny

from e2e_support import wait_no_processes
from test_driver.errors import WaitTimeout
from test_driver.machine.session import KILL_GRACE


def test_garbage_on_the_backdoor_channel_is_skipped(make_driver, log):
    machine = make_driver(["alpha"]).machines[0]
    # A forged reply header (a nonce never issued, a huge length) and text without a newline,
    # written by the guest onto the backdoor's own channel.
    machine.succeed("printf 'TD1 abcdef 0 99999\\nnoise without newline' > /dev/hvc0")
    assert machine.succeed("echo ok", timeout=10) == "ok\n"
    assert "unexpected output on the backdoor shell" in log.text and "TD1 abcdef" in log.text


# The backdoor shell itself: the one process whose stdin is hvc0 (a command's is hvc1).
BACKDOOR = "$(for f in /proc/[0-9]*/fd/0; do [[ $f -ef /dev/hvc0 ]] && { f=${f%/fd/0}; echo ${f#/proc/}; }; done)"


def test_backdoor_that_stops_answering_is_a_clear_timeout(make_driver):
    machine = make_driver(["alpha"]).machines[0]
    machine.succeed("true")
    start = time.monotonic()
    # The guest's backdoor shell stops (a shell that dies is test_output_channel's): the first call
    # that gets no reply ends by its timeout, with what was awaited and the last state.
    with pytest.raises(WaitTimeout, match="still running after SIGTERM and SIGKILL to its processes"):
        machine.execute(f"kill -STOP {BACKDOOR}", timeout=3)
        machine.execute("true", timeout=2)
    assert time.monotonic() - start < 3 + 2 + 4 * KILL_GRACE + 3


def test_two_drivers_side_by_side_do_not_interfere(guest, tmp_path, private_tmp):
    """Same machine name, same VLAN number, same TMPDIR: private dirs (0700) keep them apart."""
    script = """\
import stat, time
from pathlib import Path
for path in (driver.tmp_dir, driver.socket_root, machine.state_dir):
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, (path, oct(os.stat(path).st_mode))
machine.succeed("ip link show eth1 | grep -q UP")
rendezvous = Path(os.environ["RENDEZVOUS"])
(rendezvous / os.environ["ME"]).write_text(str(driver.tmp_dir))
deadline = time.monotonic() + 60
while len(list(rendezvous.iterdir())) < 2:  # both drivers are running now
    assert time.monotonic() < deadline, "the other driver never came"
    time.sleep(0.1)
machine.succeed("echo still fine")
"""
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    procs = []
    for me in ("first", "second"):
        run_dir = tmp_path / me
        run_dir.mkdir()
        (run_dir / "t.py").write_text(script)
        start_script = tiny.write_start_script(run_dir, "machine", guest, vlans={1: 1})
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "test_driver.cli_main", "--start-scripts", str(start_script),
             "--vlans", "1", "-o", str(run_dir), str(run_dir / "t.py")],
            env={**os.environ, "RENDEZVOUS": str(rendezvous), "ME": me},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    results = [proc.communicate(timeout=180) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in results]
    dirs = {path.read_text() for path in rendezvous.iterdir()}
    assert len(dirs) == 2  # each driver had its own private directory
    assert wait_no_processes(str(private_tmp)) == []
    assert list(private_tmp.iterdir()) == []


def process_counts() -> tuple[int, int, float]:
    with open("/proc/self/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    return threading.active_count(), len(os.listdir("/proc/self/fd")), rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_soak_commands_and_reboots_leak_nothing(make_driver):
    """Cycles of 100 commands and a reboot: 2 in the suite, TD_SOAK_CYCLES=20 for the long soak."""
    machine = make_driver(["soak"]).machines[0]
    for _ in range(100):  # warm up: first-use allocations are not leaks
        machine.succeed("true")
    machine.reboot()
    machine.succeed("true")
    threads, fds, rss = process_counts()
    for cycle in range(int(os.environ.get("TD_SOAK_CYCLES", "2"))):
        for _ in range(100):
            assert machine.succeed("echo $((6 * 7))") == "42\n"
        machine.reboot()
        assert machine.succeed(f"echo cycle {cycle}") == f"cycle {cycle}\n"
    after_threads, after_fds, after_rss = process_counts()
    assert (after_threads, after_fds) == (threads, fds)
    assert after_rss - rss < 20, f"RSS grew from {rss:.0f} MB to {after_rss:.0f} MB"
