"""The core of issue 3 on real tiny guests: commands, timeouts, lifecycle, two machines."""

from __future__ import annotations

import time

import pytest

from test_driver.errors import RequestedAssertionFailed, WaitTimeout
from test_driver.script import TestScript


@pytest.fixture
def pair(make_driver):
    driver = make_driver(["alpha", "beta"])
    driver.start_all()
    return driver


def test_script_with_two_machines(pair, log):
    pair.script = TestScript("""
start_all()
assert "Linux alpha" in alpha.succeed("uname -a")
assert beta.succeed("hostname") == "beta\\n"
alpha.fail("false")
status, out = beta.execute("echo out; exit 3")
assert (status, out) == (3, "out\\n"), (status, out)
""")
    pair.run_tests()
    assert "must succeed: uname -a" in log.text


def test_execute_output_shapes(pair):
    alpha = pair.machines[0]
    assert alpha.execute("printf 'no newline'") == (0, "no newline")
    assert alpha.execute("printf 'x\\n\\n'") == (0, "x\n\n")
    status, out = alpha.execute("printf '\\x01\\x7f\\xc3\\xa9\\xff'")
    assert status == 0 and out == "\x01\x7fé\ufffd"  # invalid UTF-8 replaced, as upstream
    status, out = alpha.execute("head -c 10485760 /dev/zero | tr '\\0' a")
    assert status == 0 and len(out) == 10 * 1024 * 1024 and set(out) == {"a"}
    assert alpha.execute("echo hi", check_return=False) == (-1, "hi\n")
    assert alpha.execute("echo hi", check_output=False) == (-2, "")
    assert alpha.succeed("echo a", "echo b") == "a\nb\n"


def test_unread_command_never_touches_the_next_reply(pair):
    """A command run with check_output=False (nobody reads its output) may end while the
    next command runs: neither its output nor its end may cut or join the next reply."""
    alpha = pair.machines[0]
    assert alpha.execute("sleep 1; echo late; printf 'no newline'", check_output=False) == (-2, "")
    assert alpha.succeed("echo early; sleep 3; echo done") == "early\ndone\n"
    assert alpha.execute("echo x", check_output=False, timeout=None) == (-2, "")
    assert alpha.succeed("echo y") == "y\n"
    assert alpha.succeed("sleep 2; cat /proc/loadavg >/dev/null; echo z") == "z\n"


def test_command_exceeding_timeout_is_stopped(pair):
    alpha = pair.machines[0]
    alpha.connect()  # start_all() does not wait for the boot (as upstream's): time the command alone
    start = time.monotonic()
    assert alpha.execute("sleep 100; echo never", timeout=1) == (124, "")
    assert time.monotonic() - start < 30  # stopped, not left to run its 100 s
    assert alpha.fail("sleep 100", timeout=1) == ""
    with pytest.raises(RequestedAssertionFailed, match="exit code 124"):
        alpha.succeed("sleep 100", timeout=1)
    # A command ignoring SIGTERM is killed too, and the shell stays usable.
    assert alpha.execute("trap '' TERM; while :; do sleep 1; done", timeout=1)[0] == 124
    assert alpha.succeed("pgrep -f 'sleep 100' || echo none") == "none\n"


def test_wait_until_succeeds_on_later_condition(pair):
    alpha = pair.machines[0]
    alpha.succeed("(sleep 2; touch /tmp/ready) >/dev/null 2>&1 &")
    start = time.monotonic()
    alpha.wait_until_succeeds("test -e /tmp/ready", timeout=30)
    assert 1.5 < time.monotonic() - start < 10
    alpha.wait_until_fails("test -e /tmp/not-there", timeout=5)
    with pytest.raises(WaitTimeout, match=r"`test -e /nonexistent` to succeed.*exit status 1"):
        alpha.wait_until_succeeds("test -e /nonexistent", timeout=1)


def test_shutdown_and_restart(pair):
    alpha, beta = pair.machines
    beta.shutdown()
    assert not beta.is_up() and not beta.booted
    alpha.succeed("true")  # the other machine is unaffected
    beta.wait_for_shutdown()  # already down: returns at once
    assert beta.succeed("echo again") == "again\n"  # the next command boots it again, like upstream
    beta.execute("poweroff", check_output=False)
    beta.wait_for_shutdown(timeout=60)
    assert "was shut down" in str(beta.stopped)


def test_crash_is_an_expected_death(pair):
    alpha = pair.machines[0]
    alpha.succeed("true")
    alpha.crash()
    assert not alpha.booted
    assert alpha.post_mortem is not None


def test_serial_console_and_monitor(pair):
    alpha = pair.machines[0]
    alpha.succeed("echo hello-serial > /dev/ttyS0")
    alpha.wait_for_console_text("hello-serial", timeout=10)
    assert "hello-serial" in alpha.get_console_log()
    with pytest.raises(WaitTimeout, match="never-printed.*last serial line"):
        alpha.wait_for_console_text("never-printed", timeout=0.5)
    assert "running" in alpha.send_monitor_command("info status")
    assert alpha.qmp_client.command("query-status")["status"] == "running"


def test_unknown_machine_attribute_is_clear(pair):
    with pytest.raises(AttributeError, match="'alpha'.*'suceed'.*did you mean succeed"):
        pair.machines[0].suceed("true")


def test_wait_for_qmp_event(pair):
    alpha = pair.machines[0]
    alpha.send_monitor_command("stop")
    event = alpha.wait_for_qmp_event(lambda e: e["event"] == "STOP", timeout=10)
    assert "timestamp" in event
    alpha.send_monitor_command("cont")
    assert alpha.succeed("echo resumed") == "resumed\n"
    # upstream's attributes: QEMU's Popen, and the client's queue of events not taken yet
    assert alpha.process is not None and alpha.process.pid == alpha.pid and alpha.process.poll() is None
    alpha.qmp_client.read_pending_messages()
    assert "STOP" in [e["event"] for e in alpha.qmp_client.events()]
    with pytest.raises(WaitTimeout, match="QMP event"):
        alpha.wait_for_qmp_event(lambda e: e["event"] == "NEVER", timeout=0.5)


def test_create_machine_and_symbols(pair, guest, tmp_path):
    import tiny

    script = tiny.write_start_script(tmp_path, "extra", guest)
    extra = pair.create_machine(str(script))
    # As upstream: not one of `machines` (nor a symbol), not started, no polling conditions
    assert extra.name == "extra" and extra not in pair.machines and not extra.booted
    legacy = pair.create_machine({"startCommand": str(script), "name": "legacy"})
    assert legacy.name == "legacy"
    symbols = pair.test_symbols()
    for name in ("start_all", "join_all", "subtest", "retry", "polling_condition", "create_machine",
                 "serial_stdout_on", "serial_stdout_off", "driver", "machines", "vlans", "log",
                 "Machine", "alpha", "beta"):
        assert name in symbols
    assert "extra" not in symbols and [m.name for m in symbols["machines"]] == ["alpha", "beta"]

    @pair.polling_condition
    def never() -> bool:
        return False

    with never:
        assert extra.succeed("hostname") == "extra\n"
        with pytest.raises(Exception, match="Polling condition failed"):
            pair.machines[0].succeed("true")
    # the driver's cleanup still stops it (the fixture checks no QEMU is left)


def test_block_without_a_second_nic_is_ignored_with_a_warning(pair, log):
    """Upstream ignores the monitor's error answer: the script goes on; we also say why."""
    pair.machines[0].block()
    pair.machines[0].unblock()
    assert "cannot block: no second network interface" in log.text
    assert "cannot unblock: no second network interface" in log.text
    assert pair.machines[0].succeed("echo still") == "still\n"


def test_generate_driver_symbols(tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "import test_driver; test_driver.generate_driver_symbols()"],
                   cwd=tmp_path, check=True, timeout=60)
    symbols = (tmp_path / "driver-symbols").read_text().split(",")
    assert {"start_all", "subtest", "polling_condition", "create_machine", "Machine"} <= set(symbols)


def test_qmp_send_of_an_unknown_command_raises_upstreams_api_error(run):
    """nixpkgs' qmp-api-error test, through the CLI: upstream's send (no id, the whole answer)."""
    result = run("""
from test_driver.machine.qmp import QMPAPIError
machine.start()
assert machine.qmp_client.send("query-status")["return"]["status"] == "running"
try:
    machine.qmp_client.send("this-command-does-not-exist")
    raise SystemExit("send did not raise")
except QMPAPIError as e:
    log.info(f"QMP error: {e.class_name} {e.transaction_id} {bool(e.description)} {isinstance(e, RuntimeError)}")
""")
    assert result.returncode == 0, result.stderr
    assert "QMP error: CommandNotFound None True True" in result.stderr


def test_monitor_answers_end_with_the_prompt_as_upstreams(make_driver):
    """nixpkgs' low_level test: `help` is over 10 kB, and the answer ends with the prompt."""
    machine = make_driver(["alpha"]).machines[0]
    machine.start()
    answer = machine.send_monitor_command("help")
    assert "balloon" in answer and answer.endswith("(qemu) ")
    assert machine.send_monitor_command("info status").endswith("VM status: running\r\n(qemu) ")
