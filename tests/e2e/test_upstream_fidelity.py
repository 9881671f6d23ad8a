"""What a testScript sees of a command and of start_all(), as under nixpkgs' driver, on the tiny guest.

Upstream runs each command as `bash -c 'set -euo pipefail; CMD'` with the backdoor's console as its
stdin, and start_all() returns once every QEMU runs; each row here fails on a driver that differs.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time

import pytest

from test_driver.errors import MachineCrashed, MachineError, RequestedAssertionFailed


@pytest.fixture(scope="module")
def vm(guest, tmp_path_factory):
    from e2e_support import Log

    import tiny
    from test_driver.driver import Driver

    base = tmp_path_factory.mktemp("fidelity")
    driver = Driver([str(tiny.write_start_script(base, "m", guest))], [], "", base, Log())
    try:
        machine = driver.machines[0]
        machine.connect()
        yield machine
    finally:
        driver.cleanup()


def test_stdin_is_a_terminal(vm):
    vm.succeed("test -t 0")
    assert vm.succeed("tty") .startswith("/dev/")


@pytest.mark.parametrize("timeout", [None, 900], ids=["no-timeout", "timeout"])
def test_a_command_reading_stdin_gets_nothing_and_eats_nothing(vm, timeout):
    tic = time.monotonic()
    status, out = vm.execute("head -c 5; echo read-ended", timeout=3)
    assert status == 124 and "read-ended" not in out
    assert time.monotonic() - tic >= 3
    # A command that reads stdin in the background cannot swallow the next commands either.
    vm.succeed("(head -c 100 > /tmp/swallowed; echo done >> /tmp/swallowed) >/dev/null 2>&1 &")
    for i in range(3):
        assert vm.succeed(f"echo next-{i}", timeout=timeout) == f"next-{i}\n"
    vm.succeed("pkill -f 'head -c 100' || killall head || true")


def test_dollar_zero_is_bash(vm):
    assert vm.succeed("echo $0") == "bash\n"
    assert vm.execute("echo $0", timeout=10)[1] == "bash\n"


@pytest.mark.parametrize("timeout", [None, 30], ids=["no-timeout", "timeout"])
def test_dollar_dollar_is_the_commands_own_shell(vm, timeout):
    shell = vm.succeed("echo $$", timeout=timeout).strip()
    assert shell != vm.succeed("echo $$", timeout=timeout).strip()  # a new shell each time
    assert vm.succeed("[ $$ = $BASHPID ] && echo same", timeout=timeout) == "same\n"
    assert vm.succeed("tr '\\0' ' ' < /proc/$$/cmdline", timeout=timeout).startswith("bash -c ")
    status, _ = vm.execute("kill -9 $$", timeout=timeout)
    assert status == 137
    assert vm.succeed("echo still-here", timeout=timeout) == "still-here\n"


@pytest.mark.parametrize("timeout", [None, 60], ids=["no-timeout", "timeout"])
def test_output_of_a_background_job_comes_whole(vm, timeout):
    """nixpkgs' succeed-stdout-warning: everything written until stdout closes, newline included."""
    assert vm.succeed("(echo ONE; sleep 2; echo TWO) &", timeout=timeout) == "ONE\nTWO\n"
    assert vm.succeed("(sleep 1; printf 'a\\n\\n\\n') & echo x", timeout=timeout) == "x\na\n\n\n"
    # A background process with its output elsewhere does not hold the reply.
    tic = time.monotonic()
    assert vm.succeed("sleep 30 >/dev/null 2>&1 & echo quick", timeout=timeout) == "quick\n"
    assert time.monotonic() - tic < 10


@pytest.mark.parametrize("timeout", [None, 60], ids=["no-timeout", "timeout"])
def test_output_of_a_detached_process_comes_whole(vm, timeout):
    """A process that left the command's process tree (a double fork: init adopts it) and keeps
    its stdout is waited for too, as upstream's pipe to base64 waits for every holder."""
    tic = time.monotonic()
    assert vm.succeed("( (sleep 2; echo LATE) & ); echo EARLY", timeout=timeout) == "EARLY\nLATE\n"
    assert time.monotonic() - tic >= 2
    assert vm.succeed("sh -c '(sleep 1; echo DAEMON) &'", timeout=timeout) == "DAEMON\n"
    # one that leaves the tree while it is waited for: its parent job forks it, then exits
    assert vm.succeed("(sleep 1; ( (sleep 1; echo LEFT-LATER) & )) & echo FIRST",
                      timeout=timeout) == "FIRST\nLEFT-LATER\n"
    # one that closed its stdout is not waited for, and cannot reach the next reply
    tic = time.monotonic()
    assert vm.succeed("( (sleep 3; echo GONE) >/dev/null & ); echo NOW", timeout=timeout) == "NOW\n"
    assert vm.succeed("echo NEXT", timeout=timeout) == "NEXT\n"
    assert time.monotonic() - tic < 2.5


@pytest.mark.parametrize("timeout", [None, 60], ids=["no-timeout", "timeout"])
@pytest.mark.parametrize("command", [
    ": >(sleep 1; echo LATE); echo EARLY",  # a process substitution
    "{ coproc { sleep 1; echo LATE >/proc/self/fd/3; }; } 3>/proc/self/fd/1; echo EARLY",  # a coprocess
    "j=$(printf '\\x26'); eval \"(sleep 1; echo LATE) $j echo EARLY\"",  # evaluated text
    "printf '(sleep 1; echo LATE) \\x26 echo EARLY' > /tmp/job.sh; . /tmp/job.sh",  # a sourced file
    "printf '(sleep 1; echo LATE) \\x26 echo EARLY' > /tmp/job.sh; source /tmp/job.sh",
    # a coprocess that ends when its input does: the shell's exit closes it, as upstream's does
    "{ coproc { while read -r; do :; done; sleep 1; echo LATE >/proc/self/fd/3; }; } 3>/proc/self/fd/1; echo EARLY",
], ids=["process-substitution", "coproc", "eval", "dot", "source", "coproc-reading-its-input"])
def test_a_job_started_without_an_ampersand_in_the_text_comes_whole(vm, timeout, command):
    """A command whose text has no `&` can still leave a job of its shell holding stdout: the
    reply holds everything it writes, as upstream's pipe to base64 waits for it, and the next
    command's output has none of it."""
    assert "&" not in command
    outcome: list[object] = []
    call = threading.Thread(target=lambda: outcome.append(vm.succeed(command, timeout=timeout)), daemon=True)
    call.start()
    call.join(30)
    assert outcome == ["EARLY\nLATE\n"], "the command hung" if call.is_alive() else outcome
    assert vm.succeed("sleep 1.5; echo NEXT", timeout=timeout) == "NEXT\n"


def test_console_text_is_searched_as_upstream_joins_it(vm):
    """Upstream appends each console line (without its end) to what it already read, with nothing
    between, and searches after each line."""
    vm.succeed("echo FIRSTPART >&2; echo SECONDPART >&2")
    vm.wait_for_console_text("FIRSTPARTSECONDPART", timeout=10)
    # `$` is the end of the newest line: found even when more lines came in the same burst
    vm.succeed("echo ANCHORED-LINE >&2; echo later >&2; echo later >&2")
    vm.wait_for_console_text("ANCHORED-LINE$", timeout=10)
    # the lines up to the match are consumed: a second wait sees only what came after
    vm.succeed("echo ONCE-ONLY >&2; echo AFTER-IT >&2")
    vm.wait_for_console_text("ONCE-ONLY", timeout=10)
    vm.wait_for_console_text("AFTER-IT", timeout=10)
    with pytest.raises(RequestedAssertionFailed, match="action timed out after"):
        vm.wait_for_console_text("ONCE-ONLY", timeout=1)


@pytest.mark.parametrize("timeout", [None, 30], ids=["no-timeout", "timeout"])
def test_nul_bytes_and_trailing_newlines_of_the_output_are_kept(vm, timeout):
    assert vm.succeed("printf 'a\\0b\\0\\n\\n'", timeout=timeout) == "a\0b\0\n\n"
    assert vm.succeed("head -c 1000 /dev/zero | wc -c", timeout=timeout).strip() == "1000"
    assert len(vm.succeed("head -c 100000 /dev/zero", timeout=timeout)) == 100000


def test_undecodable_console_bytes_are_dropped(vm):
    vm.succeed("printf 'BAD\\377BYTES\\n' >&2")
    vm.wait_for_console_text("BADBYTES", timeout=10)


def test_qemus_stderr_is_part_of_the_console_log(make_driver, tmp_path):
    """Upstream's QEMU writes its stderr into the serial stream (stderr=STDOUT)."""
    driver = make_driver(["noisy"])
    script = tmp_path / "run-noisy-vm"
    script.write_text(script.read_text().replace("exec ", "echo 'NOISE-ON-STDERR' >&2; exec ", 1))
    machine = driver.machines[0]
    machine.start()
    machine.wait_for_console_text("NOISE-ON-STDERR", timeout=30)
    assert "NOISE-ON-STDERR" in machine.get_console_log()


def test_failed_requests_are_assertion_errors_and_machine_errors_are_not(vm):
    """Upstream's RequestedAssertionFailed is an AssertionError, MachineError a plain Exception:
    a script's `except AssertionError` catches a failed succeed(), wait or t.assert*."""
    with pytest.raises(AssertionError, match="exit code 3"):
        vm.succeed("exit 3")
    with pytest.raises(AssertionError, match="unexpectedly succeeded"):
        vm.fail("true")
    with pytest.raises(AssertionError, match="timed out"):
        vm.wait_until_succeeds("false", timeout=1)
    assert not issubclass(MachineError, AssertionError)


def test_a_zero_timeout_is_no_limit(vm):
    """Upstream runs `timeout 0 ...`, which coreutils takes as no limit."""
    assert vm.execute("sleep 1; echo done", timeout=0) == (0, "done\n")
    assert vm.succeed("echo fine", timeout=dt.timedelta(0)) == "fine\n"


def test_durations_may_be_timedeltas(vm):
    vm.sleep(duration=dt.timedelta(milliseconds=200))
    vm.send_key("a", delay=dt.timedelta(milliseconds=5))
    vm.send_chars("bc", delay=dt.timedelta(milliseconds=5))
    assert vm.succeed("echo ok") == "ok\n"


def test_start_all_returns_while_the_guests_still_boot(make_driver, log):
    """A stage-1 prompt answered on the console before any backdoor exists (as for a LUKS passphrase)."""
    driver = make_driver(["a", "b"], append={"a": "td.askpass", "b": "td.askpass"})
    tic = time.monotonic()
    driver.start_all()
    assert time.monotonic() - tic < 2.5, "start_all waited for the guests to boot"
    assert not any(m.connected for m in driver.machines)
    a, b = driver.machines
    for machine in (a, b):
        machine.wait_for_console_text("passphrase:")
        machine.send_console(f"secret-{machine.name}\n")
    assert a.succeed("cat /run/passphrase") == "secret-a\n"
    assert b.succeed("cat /run/passphrase") == "secret-b\n"


def test_a_qemu_dying_during_boot_fails_the_first_command_at_once(make_driver):
    driver = make_driver(["m"])
    driver.start_all()
    machine = driver.machines[0]
    assert machine.pid is not None
    died: dict[str, float] = {}

    def kill() -> None:
        died["at"] = time.monotonic()
        os.kill(machine.pid, signal.SIGKILL)

    timer = threading.Timer(1.0, kill)
    timer.start()
    with pytest.raises(MachineCrashed) as raised:
        machine.succeed("true")
    timer.join()
    assert time.monotonic() - died["at"] < 1.0
    assert "SIGKILL" in str(raised.value)


def test_reboot_after_start_with_allow_reboot_reconnects(make_driver):
    """nixpkgs' login test: start(allow_reboot=True), reboot(), then a command on the same QEMU."""
    machine = make_driver(["m"]).machines[0]
    machine.start(allow_reboot=True)
    boot_id = machine.succeed("cat /proc/sys/kernel/random/boot_id")
    pid = machine.pid
    machine.reboot()
    assert machine.succeed("cat /proc/sys/kernel/random/boot_id", timeout=120) != boot_id
    assert machine.pid == pid  # the guest reset; QEMU went on
