"""A VM that dies is reported at once, with its cause, instead of hanging the test."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time

import pytest

from e2e_support import kill_later, processes_mentioning

from test_driver.errors import MachineCrashed, WaitTimeout
from test_driver.machine import QemuMachine
from test_driver.machine.supervisor import Supervisor
from test_driver.protocol.backdoor import Backdoor


def test_sigkill_during_command_fails_within_a_second(make_driver, tmp_path):
    driver = make_driver(["victim"])
    victim = driver.machines[0]
    victim.succeed("echo booted")
    record: dict[str, float] = {}
    kill_later(victim.pid, 1.0, record)
    with pytest.raises(MachineCrashed) as info:
        victim.succeed("sleep 60")
    latency = time.monotonic() - record["killed"]
    assert latency < 1.0, latency
    error = info.value
    assert isinstance(error, ConnectionError)  # upstream surfaced BrokenPipeError
    assert "'victim'" in str(error) and "SIGKILL" in str(error)
    assert error.post_mortem.running_command == "sleep 60"
    assert error.post_mortem.exit.signal == signal.SIGKILL
    assert (tmp_path / "out" / "victim-post-mortem.txt").read_text().startswith("post-mortem of machine 'victim'")
    # Later calls say the same at once instead of touching a dead socket ...
    with pytest.raises(MachineCrashed):
        victim.succeed("true")
    # ... until the machine is started again.
    victim.start()
    assert victim.succeed("echo back") == "back\n"


def test_crash_while_waiting_for_boot(make_driver):
    driver = make_driver(["early"], append={"early": "td.nobackdoor"})
    early = driver.machines[0]
    early.start()
    record: dict[str, float] = {}
    kill_later(early.pid, 1.0, record)
    with pytest.raises(MachineCrashed):
        early.connect(timeout=60)
    assert time.monotonic() - record["killed"] < 1.0


def test_kernel_panic_is_reported_as_panic(make_driver):
    driver = make_driver(["panicky"])
    panicky = driver.machines[0]
    panicky.succeed("true")
    with pytest.raises(MachineCrashed) as info:
        panicky.succeed("echo c > /proc/sysrq-trigger; sleep 60")
    assert "panicked" in str(info.value)
    assert any("sysrq" in line.lower() or "panic" in line.lower() for line in info.value.post_mortem.serial_tail)


def test_death_awaited_by_wait_for_shutdown_is_no_error(make_driver, log):
    driver = make_driver(["expected"])
    machine = driver.machines[0]
    machine.succeed("true")
    machine.execute("echo c > /proc/sysrq-trigger", check_output=False)
    machine.wait_for_shutdown(timeout=60)
    assert "the awaited shutdown was a crash" in log.text


def test_a_wait_for_shutdown_that_timed_out_leaves_a_later_death_a_crash(make_driver):
    driver = make_driver(["running"])
    machine = driver.machines[0]
    machine.succeed("true")
    with pytest.raises(WaitTimeout):
        machine.wait_for_shutdown(timeout=dt.timedelta(seconds=1))  # nothing shuts it down
    os.kill(machine.pid, signal.SIGKILL)
    with pytest.raises(MachineCrashed, match="SIGKILL"):
        machine.succeed("sleep 30")


def test_panic_post_mortem_has_a_screenshot(make_driver, tmp_path):
    driver = make_driver(["shot"])
    machine = driver.machines[0]
    machine.succeed("true")
    with pytest.raises(MachineCrashed) as info:
        machine.succeed("echo c > /proc/sysrq-trigger; sleep 60")
    shot = info.value.post_mortem.screenshot
    assert shot is not None and shot.read_bytes().startswith(b"\x89PNG")
    from PIL import Image
    with Image.open(shot) as image:
        assert image.size[0] >= 640 and image.size[1] >= 400
    assert "GUEST_PANICKED" in str(info.value)


def test_supervised_machine_restarts_with_backoff(make_driver, log):
    driver = make_driver(["phoenix"])
    machine = driver.machines[0]
    machine.supervise(restart=True, max_restarts=2, backoff=0.2)
    machine.succeed("true")
    for attempt in (1, 2):
        pid = machine.pid
        threading.Timer(0.5, os.kill, [pid, signal.SIGKILL]).start()
        with pytest.raises(MachineCrashed, match=f"restart {attempt} of 2"):
            machine.succeed("sleep 60")
        assert machine.succeed("echo back") == "back\n"  # waits for the restarted machine
        assert machine.pid != pid
    assert len(driver.crashes) == 2
    assert "restarting after crash (restart 2)" in log.text
    # max_restarts is honoured: the third crash is final.
    threading.Timer(0.5, os.kill, [machine.pid, signal.SIGKILL]).start()
    with pytest.raises(MachineCrashed, match="no restart left"):
        machine.succeed("sleep 60")
    with pytest.raises(MachineCrashed):
        machine.succeed("true")


def test_start_all_boots_in_parallel(make_driver):
    """start_all() returns once QEMU runs; the guests boot meanwhile, all at once: each reaches
    its backdoor (its serial console says so) while the script asks nothing of any machine.
    (Not timed against one boot: another test's VM on the same cores skews that.  The exact
    figures are benchmarks/run.py's start_all section.)"""
    driver = make_driver(["p1", "p2", "p3"])
    driver.start_all()
    for machine in driver.machines:
        machine.wait_for_console_text("connecting to host")
    assert not any(m.is_up() for m in driver.machines)  # none was waited for: they booted by themselves
    for machine in driver.machines:
        machine.succeed("true")
    assert all(m.is_up() for m in driver.machines)


def test_crash_and_restart_cycles_leak_no_fds_or_threads(make_driver):
    driver = make_driver(["cycler"])
    machine = driver.machines[0]
    machine.succeed("true")
    fds = len(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    for _ in range(3):
        os.kill(machine.pid, signal.SIGKILL)
        with pytest.raises(MachineCrashed):
            machine.succeed("sleep 30")
        machine.start()
        machine.succeed("true")
    assert len(os.listdir("/proc/self/fd")) == fds
    assert threading.active_count() == threads


def late_exit_handling(monkeypatch, seconds: float) -> None:
    """Widen the moment between QEMU's sockets closing and the supervisor handling its exit
    (small but real on a loaded machine) to ``seconds``."""
    handle = QemuMachine._on_exit

    def late(self, exit):
        time.sleep(seconds)
        handle(self, exit)
    monkeypatch.setattr(QemuMachine, "_on_exit", late)


@pytest.mark.parametrize("where", ["the helpers' installation", "a wait for the monitor's prompt"])
def test_qemu_dying_mid_protocol_is_a_machine_error_never_an_eof(make_driver, monkeypatch, where):
    """A stream's end reached the script as a bare EOFError when QEMU died while the driver
    waited for a protocol reply and the supervisor had not yet handled the exit."""
    late_exit_handling(monkeypatch, 0.5)
    driver = make_driver(["victim"])
    victim = driver.machines[0]
    if where == "the helpers' installation":
        reply = Backdoor.reply

        def dying(self, nonce, deadline, *args):
            os.kill(victim.pid, signal.SIGKILL)
            return reply(self, nonce, deadline, *args)
        monkeypatch.setattr(Backdoor, "reply", dying)  # (its first use is the installation's)
        with pytest.raises(MachineCrashed) as info:
            victim.succeed("true")
    else:
        victim.succeed("true")
        os.kill(victim.pid, signal.SIGKILL)
        with pytest.raises(MachineCrashed) as info:
            victim.wait_for_monitor_prompt()
    assert "SIGKILL" in str(info.value)


def test_a_crash_at_startup_is_told_after_its_post_mortem_is_written(make_driver, monkeypatch, tmp_path):
    write = QemuMachine._write_post_mortem

    def slow_write(self, post_mortem):
        time.sleep(0.5)
        write(self, post_mortem)
    monkeypatch.setattr(QemuMachine, "_write_post_mortem", slow_write)
    driver = make_driver(["victim"])
    victim = driver.machines[0]
    victim.start()
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(MachineCrashed) as info:
        victim.succeed("true")
    assert "victim-post-mortem.txt" in str(info.value)
    assert (tmp_path / "out" / "victim-post-mortem.txt").exists()  # as the error says, when it says it


def test_two_starts_at_once_launch_one_qemu(make_driver, private_tmp, monkeypatch):
    """(A start() racing the restart thread's, say.)"""
    launches = []
    launch = Supervisor.launch

    def counted(self, *args, **kwargs):
        launches.append(self)
        return launch(self, *args, **kwargs)
    monkeypatch.setattr(Supervisor, "launch", counted)
    driver = make_driver(["twice"])
    machine = driver.machines[0]
    together = threading.Barrier(2)

    def start() -> None:
        together.wait()
        machine.start()
    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(launches) == 1
    assert len(processes_mentioning(str(private_tmp))) == 1
    assert machine.succeed("echo one") == "one\n"
