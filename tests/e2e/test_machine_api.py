"""The upstream Machine API on a Debian guest running systemd (issue: the whole Machine API)."""

from __future__ import annotations

import datetime
import hashlib
import inspect
import os
import time

import pytest

from test_driver.errors import PollingConditionError, RequestedAssertionFailed, WaitTimeout
from test_driver.machine import BaseMachine, Machine, QemuMachine

# The public methods of upstream's Machine (QemuMachine + BaseMachine) with their parameters
# (name=default, or just name); ours may add optional parameters after them.
UPSTREAM_API = {
    "is_up": "", "start": "allow_reboot=False", "wait_for_shutdown": "", "shutdown": "", "crash": "",
    "reboot": "", "release": "", "connect": "", "switch_root": "",
    "execute": "command check_return=True check_output=True timeout=datetime.timedelta(seconds=900)",
    "succeed": "*commands timeout=None", "fail": "*commands timeout=None",
    "wait_until_succeeds": "command timeout=datetime.timedelta(seconds=900)", "wait_until_fails": "command timeout=datetime.timedelta(seconds=900)",
    "sleep": "secs=None duration=None", "systemctl": "q user=None", "wait_for_unit": "unit user=None timeout=datetime.timedelta(seconds=900)",
    "get_unit_info": "unit user=None", "get_unit_property": "unit property user=None",
    "require_unit_state": "unit require_state='active'", "start_job": "jobname user=None",
    "stop_job": "jobname user=None", "wait_for_job": "jobname",
    "wait_for_file": "filename timeout=datetime.timedelta(seconds=900)", "wait_for_open_port": "port addr='localhost' timeout=datetime.timedelta(seconds=900)",
    "wait_for_closed_port": "port addr='localhost' timeout=datetime.timedelta(seconds=900)",
    "wait_for_open_unix_socket": "addr is_datagram=False timeout=datetime.timedelta(seconds=900)",
    "copy_from_host": "source target", "copy_from_host_via_shell": "source target",
    "copy_from_vm": "source target_dir=''", "copy_from_machine": "source target_dir=''",
    "get_tty_text": "tty", "wait_until_tty_matches": "tty regexp timeout=datetime.timedelta(seconds=900)", "dump_tty_contents": "tty",
    "send_chars": "chars delay=datetime.timedelta(microseconds=10000)", "send_key": "key delay=datetime.timedelta(microseconds=10000) log=True", "send_console": "chars",
    "wait_for_console_text": "regex timeout=None", "get_console_log": "",
    "send_monitor_command": "command", "wait_for_monitor_prompt": "",
    "wait_for_qmp_event": "event_filter timeout=datetime.timedelta(seconds=600)", "screenshot": "filename",
    "get_screen_text_variants": "", "get_screen_text": "", "wait_for_text": "regex timeout=datetime.timedelta(seconds=900)",
    "wait_for_x": "timeout=datetime.timedelta(seconds=900)", "get_window_names": "", "wait_for_window": "regexp timeout=datetime.timedelta(seconds=900)",
    "forward_port": "host_port=8080 guest_port=80", "block": "", "unblock": "",
    "shell_interact": "address=None", "console_interact": "", "ssh_backdoor_command": "index=None",
    "log": "msg", "log_serial": "msg", "nested": "msg attrs={}", "run_callbacks": "",
    "cleanup_statedir": "",
}


def describe(method) -> list[str]:
    parts = []
    for p in list(inspect.signature(method).parameters.values())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            parts.append("*" + p.name)
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            parts.append(f"{p.name}={p.default!r}")
    return parts


@pytest.mark.parametrize("name", sorted(UPSTREAM_API))
def test_upstream_method_exists_with_its_signature(name):
    assert Machine is QemuMachine and issubclass(QemuMachine, BaseMachine)
    method = getattr(QemuMachine, name, None)
    assert callable(method), f"Machine.{name} is missing"
    want = UPSTREAM_API[name].split()
    have = describe(method)
    assert have[: len(want)] == want, f"{name}{tuple(have)} does not start with {want}"
    assert all("=" in extra for extra in have[len(want):]), f"{name}: extra parameters must be optional"
    assert inspect.getdoc(method), f"Machine.{name} has no docstring"


def test_units(debian_vm):
    _, deb, _ = debian_vm
    deb.wait_for_unit("echo-tcp.service")
    assert deb.get_unit_property("echo-tcp.service", "ActiveState") == "active"
    info = deb.get_unit_info("echo-unix.service")
    assert info["ActiveState"] == "active" and info["Id"] == "echo-unix.service"
    deb.require_unit_state("echo-tcp.service")
    with pytest.raises(RequestedAssertionFailed, match="to be in state 'active'.*'inactive'"):
        deb.require_unit_state("late-port.service")
    status, out = deb.systemctl("is-active echo-tcp.service")
    assert (status, out) == (0, "active\n")
    assert deb.stop_job("echo-tcp.service")[0] == 0
    deb.require_unit_state("echo-tcp.service", "inactive")
    assert deb.start_job("echo-tcp.service")[0] == 0
    deb.wait_for_job("echo-tcp.service")
    with pytest.raises(RequestedAssertionFailed):
        deb.get_unit_info("no-such-unit.service\" --bogus")


def test_wait_for_unit_active_state(debian_vm):
    _, deb, _ = debian_vm
    deb.succeed("systemctl stop --no-block echo-unix.service")
    deb.wait_for_unit_active_state("echo-unix.service", "inactive", timeout=30)
    deb.succeed("systemctl start --no-block echo-unix.service")
    deb.wait_for_unit_active_state("echo-unix.service", "active", timeout=datetime.timedelta(seconds=30))
    with pytest.raises(WaitTimeout, match="unit echo-unix.service in state reloading.*ActiveState=active"):
        deb.wait_for_unit_active_state("echo-unix.service", "reloading", timeout=1)


def test_failing_units_raise_promptly(debian_vm):
    _, deb, _ = debian_vm
    deb.systemctl("start failing.service")
    start = time.monotonic()
    with pytest.raises(RequestedAssertionFailed, match='unit "failing.service" reached state "failed"'):
        deb.wait_for_unit("failing.service", timeout=datetime.timedelta(seconds=900))
    with pytest.raises(RequestedAssertionFailed, match="inactive and there are no pending jobs"):
        deb.wait_for_unit("late-port.service", timeout=datetime.timedelta(seconds=900))
    assert time.monotonic() - start < 30


def test_user_units(debian_vm):
    _, deb, _ = debian_vm
    deb.wait_for_unit("default.target", user="alice", timeout=120)
    status, out = deb.systemctl("is-active default.target", user="alice")
    assert (status, out.strip()) == (0, "active")


def test_ports_and_sockets(debian_vm):
    _, deb, _ = debian_vm
    deb.wait_for_open_port(8000)
    deb.wait_for_open_unix_socket("/run/echo.sock")
    assert deb.succeed("echo ping | nc -N localhost 8000") == "ping\n"
    deb.start_job("late-port.service")
    start = time.monotonic()
    deb.wait_for_open_port(8001, timeout=60)
    assert time.monotonic() - start > 1.5  # it opens 3 s after starting
    deb.stop_job("late-port.service")
    deb.wait_for_closed_port(8001, timeout=30)
    with pytest.raises(WaitTimeout, match="TCP port 8002 on localhost.*still fails"):
        deb.wait_for_open_port(8002, timeout=1)


def test_files(debian_vm, tmp_path):
    driver, deb, _ = debian_vm
    deb.succeed("(sleep 2; touch /tmp/later) >/dev/null 2>&1 &")
    deb.wait_for_file("/tmp/later", timeout=30)
    data = os.urandom(1 << 20)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    deb.copy_from_host(str(src), "/root/in/blob.bin")
    assert deb.succeed("sha256sum /root/in/blob.bin").split()[0] == digest
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("nested")
    deb.copy_from_host(str(tree), "/root/tree")
    assert deb.succeed("cat /root/tree/sub/f") == "nested"
    # as upstream (the target is a Path): a trailing slash of a missing target is dropped
    deb.copy_from_host(str(src), "/root/slashed/")
    assert deb.succeed("sha256sum /root/slashed").split()[0] == digest
    small = tmp_path / "small.bin"
    small.write_bytes(data[:4096])
    deb.copy_from_host_via_shell(str(small), "/root/via/small.bin")
    assert deb.succeed("sha256sum /root/via/small.bin").split()[0] == hashlib.sha256(data[:4096]).hexdigest()
    deb.copy_from_vm("/root/in/blob.bin", "copied")
    assert (driver.out_dir / "copied" / "blob.bin").read_bytes() == data
    deb.copy_from_machine("/root/tree")
    assert (driver.out_dir / "tree" / "sub" / "f").read_text() == "nested"
    # as upstream's newest: the way through the shared directory is a temporary directory, gone
    # afterwards; an absolute target directory is used as it is; a directory is not copied over itself
    deb.fail("test -e /tmp/shared/copied || test -e /tmp/shared/tree")
    deb.copy_from_machine("/root/in/blob.bin", str(tmp_path / "absolute"))
    assert (tmp_path / "absolute" / "blob.bin").read_bytes() == data
    with pytest.raises(FileExistsError):
        deb.copy_from_machine("/root/tree")


def test_ttys_and_keyboard(debian_vm):
    _, deb, log = debian_vm
    deb.wait_until_tty_matches("1", "deb login:", timeout=60)
    deb.stop_job("getty@tty1.service")
    deb.succeed("(cat /dev/tty1 > /tmp/typed) >/dev/null 2>&1 &")  # tty1 is the active VT
    deb.send_chars("Hello, World_1!\n")
    deb.wait_until_succeeds("grep -qx 'Hello, World_1!' /tmp/typed", timeout=30)
    assert "Hello, World_1!" in deb.get_tty_text("1")
    deb.dump_tty_contents("1")
    assert "Hello, World_1!" in log.text
    deb.wait_until_succeeds("journalctl -b --no-pager | grep -q 'Hello, World_1!'", timeout=30)  # as upstream
    with pytest.raises(WaitTimeout, match="tty1"):
        deb.wait_until_tty_matches("1", "never shown", timeout=1)


def test_serial_console(debian_vm):
    _, deb, _ = debian_vm
    deb.succeed("echo console-marker-42 > /dev/ttyS0")
    deb.wait_for_console_text("console-marker-4[0-9]", timeout=30)
    deb.succeed("stty -F /dev/ttyS0 -echo; (head -n1 /dev/ttyS0 > /tmp/serial-in) >/dev/null 2>&1 &")
    time.sleep(0.5)
    deb.send_console("typed on serial\n")
    deb.wait_until_succeeds("grep -qx 'typed on serial' /tmp/serial-in", timeout=30)


def test_x_and_switch_root_fail_clearly_without_support(debian_vm):
    _, deb, _ = debian_vm
    with pytest.raises(WaitTimeout, match="X11 server"):
        deb.wait_for_x(timeout=2)
    with pytest.raises(RequestedAssertionFailed, match="xwininfo"):
        deb.get_window_names()
    # switch_root needs a backdoor in a systemd initrd (NixOS testing.initrdBackdoor); this guest
    # boots a busybox stage 1 without one, so initrd.target is never reached: a prompt clear error.
    with pytest.raises(RequestedAssertionFailed, match='unit "initrd.target" is inactive'):
        deb.switch_root()


def test_polling_condition(debian_vm):
    driver, deb, _ = debian_vm
    calls = []

    @driver.polling_condition
    def echo_still_up():
        calls.append(1)
        deb.succeed("systemctl is-active echo-tcp.service")

    with echo_still_up:
        deb.succeed("true")
        assert calls
    deb.succeed("systemctl stop echo-tcp.service")

    @driver.polling_condition(seconds_interval=0.0, description="echo service answers")
    def echo_answers():
        deb.succeed("systemctl is-active echo-tcp.service")

    with echo_answers:
        with pytest.raises(PollingConditionError, match="Polling condition failed: echo service answers"):
            deb.succeed("true")
    deb.succeed("(sleep 2; systemctl start echo-tcp.service) >/dev/null 2>&1 &")
    echo_answers.wait(timeout=60)


def test_reboot_with_allow_reboot(debian_vm):
    _, deb, _ = debian_vm
    deb.succeed("touch /root/persist")
    deb.allow_reboot = True  # also applies to the QEMU started next
    deb.shutdown()
    deb.start()
    deb.succeed("test -e /root/persist")  # the disk overlay lives in the state dir
    boot_id = deb.succeed("cat /proc/sys/kernel/random/boot_id")
    deb.reboot()
    assert deb.succeed("cat /proc/sys/kernel/random/boot_id") != boot_id
    assert deb.is_up()
    deb.wait_for_unit("multi-user.target", timeout=300)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_forward_port_reaches_the_guest_service(debian_vm):
    import socket

    _, deb, _ = debian_vm
    deb.wait_for_open_port(8000)
    port = free_port()
    deb.forward_port(port, 8000)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"through the forward\n")
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    assert reply == b"through the forward\n"


def test_block_and_unblock_take_the_link_down_and_up(debian_vm):
    _, deb, _ = debian_vm
    deb.wait_until_succeeds("test $(cat /sys/class/net/eth1/carrier) = 1", timeout=30)
    deb.block()
    deb.wait_until_succeeds("test $(cat /sys/class/net/eth1/carrier) = 0", timeout=30)
    assert deb.succeed("cat /sys/class/net/eth0/carrier") == "1\n"  # eth0 stays up
    deb.unblock()
    deb.wait_until_succeeds("test $(cat /sys/class/net/eth1/carrier) = 1", timeout=30)


def test_retry(debian_vm):
    from test_driver.machine import retry

    _, deb, _ = debian_vm
    seen: list[float | None] = []
    deb.succeed("rm -f /tmp/flag; (sleep 1.5; touch /tmp/flag) >/dev/null 2>&1 &")
    retry(lambda remaining: seen.append(remaining) or deb.execute("test -e /tmp/flag")[0] == 0,
          timeout=datetime.timedelta(seconds=30))
    assert len(seen) >= 2 and all(r is not None and 0 < r <= 30 for r in seen), seen
    told: list[float | None] = []

    def never(remaining: float | None) -> bool:  # each call may use the guest until its remaining seconds
        told.append(remaining)
        return deb.execute("false", timeout=datetime.timedelta(seconds=remaining or 1))[0] == 0

    with pytest.raises(RequestedAssertionFailed):
        retry(never, timeout=datetime.timedelta(seconds=1.5))
    assert len(told) == 2 and all(r is not None and 0 < r <= 1.5 for r in told), told
