"""A guest that powers itself off while nobody asked for it fails the next command (as
upstream's broken pipe does) instead of being booted again behind the test's back: a test
whose machine went down must not pass on a freshly booted one."""

from __future__ import annotations

import os
import time

import pytest

from test_driver.errors import MachineStopped


def wait_until_down(machine, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while machine.booted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not machine.booted, "the guest did not power off"


def test_a_guest_that_powers_itself_off_fails_the_next_command(make_driver):
    driver = make_driver(["quitter"])
    quitter = driver.machines[0]
    first_boot = quitter.succeed("cat /proc/sys/kernel/random/boot_id")
    quitter.succeed("echo 'SIGN going down' > /dev/ttyS0; (sleep 0.5; poweroff -f) >/dev/null 2>&1 &")
    wait_until_down(quitter)
    tic = time.monotonic()
    with pytest.raises(ConnectionError) as caught:
        quitter.succeed("true")
    assert time.monotonic() - tic < 1.0
    error = caught.value
    assert isinstance(error, MachineStopped)
    message = str(error)
    assert "'quitter'" in message and "shut itself down" in message, message
    assert "guest-shutdown" in message and "SHUTDOWN" in message, message
    assert "SIGN going down" in message, message  # the last console lines
    assert "wait_for_shutdown()" in message, message
    with pytest.raises(ConnectionError):  # it stays down: every later command says so
        quitter.execute("true")
    quitter.wait_for_shutdown()  # the script says the shutdown was expected ...
    assert quitter.succeed("echo back") == "back\n"  # ... so the next command boots it again
    assert quitter.succeed("cat /proc/sys/kernel/random/boot_id") != first_boot


def test_an_awaited_shutdown_still_boots_again(make_driver):
    driver = make_driver(["sleeper"])
    sleeper = driver.machines[0]
    sleeper.succeed("(sleep 0.5; poweroff -f) >/dev/null 2>&1 &")
    sleeper.wait_for_shutdown()
    assert sleeper.succeed("echo again") == "again\n"
    sleeper.shutdown()
    assert sleeper.succeed("echo and again") == "and again\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-nspawn needs root")
def test_a_container_that_halts_itself_fails_the_next_command(debian_guest, tmp_path, private_tmp, log):
    import nspawn

    from test_driver.driver import Driver

    script = nspawn.write_start_script(tmp_path, "box", debian_guest)
    out = tmp_path / "out"
    out.mkdir()
    with Driver([], [], "", out, log, container_start_scripts=[str(script)]) as driver:
        box = driver.machines_nspawn[0]
        box.succeed("true")
        box.succeed("systemctl poweroff --no-block")
        wait_until_down(box)
        with pytest.raises(ConnectionError) as caught:
            box.succeed("true")
        message = str(caught.value)
        assert isinstance(caught.value, MachineStopped) and "'box'" in message, message
        assert "shut itself down" in message and "wait_for_shutdown()" in message, message
        box.wait_for_shutdown()
        assert box.succeed("echo back") == "back\n"
