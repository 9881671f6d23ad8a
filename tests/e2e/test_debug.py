"""The interactive shell (through a pseudo-terminal) and remote pdb (over TCP), on real guests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import termios
import threading
from pathlib import Path
from typing import Iterator

import pexpect
import pytest
import tiny

from e2e_support import processes_mentioning, wait_no_processes

PROMPT = r"In \["  # IPython's prompt (coloured: the number sits between colour codes), as upstream's shell


def driver_command(guest, tmp_path: Path, script: str, *args: str) -> list[str]:
    start_script = tiny.write_start_script(tmp_path, "machine", guest)
    test = tmp_path / "t.py"
    test.write_text(script)
    return [sys.executable, "-m", "test_driver.cli_main", "--start-scripts", str(start_script),
            "-o", str(tmp_path), *args, str(test)]


@pytest.fixture
def shell(guest, tmp_path, private_tmp):
    """The driver's --interactive shell on a pty, one tiny machine; killed at the end if still there."""
    command = driver_command(guest, tmp_path, "raise SystemExit('the script must not run')\n", "--interactive")
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    child = pexpect.spawn(command[0], command[1:], env=env, encoding="utf-8", timeout=60,
                          dimensions=(40, 200), cwd=str(tmp_path))  # the history goes to the working directory
    child.expect(PROMPT)
    yield child
    if child.isalive():
        child.kill(9)
    child.close()


@contextlib.contextmanager
def terminal_watch(shell) -> Iterator[list[bool]]:
    """Whether the terminal turned Ctrl-C into SIGINT (ISIG) at any moment in the block: the
    pty's settings read as fast as a thread can (the master reads the terminal's)."""
    seen: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not seen:
            if termios.tcgetattr(shell.child_fd)[3] & termios.ISIG:
                seen.append(True)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def leave_with_exit(shell, private_tmp: Path) -> None:
    """exit(): the driver ends with status 0 and leaves no process behind."""
    shell.send("exit()\r")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0
    assert wait_no_processes(str(private_tmp)) == []


@pytest.mark.parametrize("leave", ["ctrl-d", "exit()", "ctrl-c twice"])
def test_interactive_shell_runs_commands_and_cleans_up(shell, tmp_path, private_tmp, leave):
    shell.send('machine.succeed("echo hi")\r')
    shell.expect("'hi")  # the repr, coloured
    shell.expect(PROMPT)
    assert processes_mentioning(str(private_tmp))
    if leave == "ctrl-d":
        shell.sendcontrol("d")
        shell.expect("really want to exit")
        shell.send("y")
    elif leave == "exit()":
        shell.send("exit()\r")
    else:
        with terminal_watch(shell) as signals_on:
            shell.sendcontrol("c")
            shell.expect("Ctrl-C again")
        # Between the two presses the terminal stays raw: a second Ctrl-C typed while the hint
        # is shown must reach the shell as a key, never as SIGINT (which only gave a fresh
        # prompt: the shell did not end on a busy host)
        assert not signals_on, "the terminal generated signals while the hint was shown"
        shell.sendcontrol("c")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0
    assert wait_no_processes(str(private_tmp)) == []
    assert list(private_tmp.iterdir()) == []
    assert 'machine.succeed("echo hi")' in (tmp_path / ".nixos-test-history").read_text()


def test_ctrl_c_stops_the_command_not_the_shell(shell, private_tmp):
    shell.send('machine.succeed("echo up-$((20+1))")\r')  # booted first: Ctrl-C must meet the sleep
    shell.expect("up-21")
    shell.expect(PROMPT)
    # (the words expected are computed in the guest, so the echo of the typed line cannot match them)
    shell.send('machine.succeed("echo sleeping-$((3*3)) >&2; sleep 300")\r')
    shell.expect("sleeping-9")  # on the serial console: the sleep is about to start
    shell.sendcontrol("c")
    shell.expect("killing `echo sleeping-")
    shell.expect("KeyboardInterrupt")
    shell.expect(PROMPT)
    shell.send('machine.succeed("pidof sleep || echo no-sleep-$((2+2))")\r')
    shell.expect("no-sleep-4")
    shell.expect(PROMPT)
    leave_with_exit(shell, private_tmp)


def test_ctrl_c_during_boot_then_boot_again(shell, private_tmp):
    """Ctrl-C while QEMU starts and the guest boots stops the boot; the next command boots
    it again.  (Before interrupts waited for a safe point, an interrupt inside
    threading's lock handling could leave a lock held and hang the next boot.)"""
    for attempt in range(3):
        shell.send('machine.succeed("echo booted-$((40+2))")\r')
        shell.expect("starting vm")
        shell.sendcontrol("c")
        shell.expect("KeyboardInterrupt")
        shell.expect(PROMPT)
    shell.send('machine.succeed("echo booted-$((40+2))")\r')
    shell.expect("booted-42")
    shell.expect(PROMPT)
    leave_with_exit(shell, private_tmp)


def test_interactive_without_a_terminal_reads_stdin(guest, tmp_path, private_tmp):
    """As upstream's shell: without a terminal it takes its lines from stdin (IPython's magics
    too), then ends at EOF and stops the machines."""
    lines = "machine.succeed('echo piped-$((40+2)) >&2')\nx = !echo shell-escape\nprint(x[0].upper())\n"
    result = subprocess.run(driver_command(guest, tmp_path, "raise SystemExit('not run')\n", "-I"), input=lines,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "piped-42" in result.stdout + result.stderr and "SHELL-ESCAPE" in result.stdout
    assert wait_no_processes(str(private_tmp)) == []


class Output:
    """A subprocess's merged output, read by a thread; ``wait_for`` a regex with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.text = ""
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.cond:
                self.text += line
                self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        with self.cond:
            self.cond.wait_for(lambda: re.search(pattern, self.text), timeout)
            match = re.search(pattern, self.text)
        assert match, f"{pattern!r} not in output:\n{self.text}"
        return match


class PdbClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.read_prompt()

    def read_prompt(self) -> str:
        data = b""
        while not data.endswith(b"(Pdb) "):
            chunk = self.sock.recv(4096)
            assert chunk, f"pdb hung up; got {data!r}"
            data += chunk
        return data.decode()

    def ask(self, command: str) -> str:
        self.sock.sendall(command.encode() + b"\n")
        return self.read_prompt()

    def finish(self, command: str) -> str:
        """Send a command that ends the session; return what pdb said until it hung up."""
        self.sock.sendall(command.encode() + b"\n")
        data = b""
        while chunk := self.sock.recv(4096):
            data += chunk
        self.sock.close()
        return data.decode()


def debugged_driver(command: list[str], env: dict[str, str] = {}) -> tuple[subprocess.Popen[str], Output]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env})
    return proc, Output(proc)


def test_breakpoint_serves_pdb_and_the_script_goes_on(guest, tmp_path, private_tmp):
    script = ("value = 'inspect-me'\nbreakpoint()\nmachine.succeed('echo after the breakpoint >&2')\n"
              "log.info('script end reached')\n")
    proc, out = debugged_driver(driver_command(guest, tmp_path, script), {"REMOTE_PDB_PORT": "0"})
    try:
        port = int(out.wait_for(r"breakpoint\(\) at \S+ line 2: pdb waits on 127\.0\.0\.1:(\d+)")[1])
        out.wait_for(r"attach with `telnet 127\.0\.0\.1 \d+`")
        pdb = PdbClient(port)
        assert "'inspect-me'" in pdb.ask("p value")
        assert "continuing" in pdb.finish("c")
        assert proc.wait(60) == 0, out.text
        out.thread.join(10)
        assert "script end reached" in out.text
    finally:
        proc.kill()
        proc.wait()
    assert wait_no_processes(str(private_tmp)) == []


def test_debug_hook_waits_before_teardown(guest, tmp_path, private_tmp):
    script = "answer = 6 * 7\nmachine.succeed('true')\nmachine.succeed('exit 7')\n"
    command = driver_command(guest, tmp_path, script, "--debug-hook-attach", "/run/attach-helper")
    proc, out = debugged_driver(command)
    try:
        pattern = out.wait_for(r"Breakpoint reached, run 'sudo /run/attach-helper (\d+)'")[1]
        port = int(out.wait_for(r"pdb post mortem: pdb waits on 127\.0\.0\.1:(\d+)")[1])
        out.wait_for(r"`c` continues the test")
        marker = subprocess.run(["pgrep", "-fx", f"sleep {pattern}"], capture_output=True, text=True)
        assert marker.returncode == 0  # what the attach command looks for
        pdb = PdbClient(port)
        assert "42" in pdb.ask("p answer")  # the failing line's frame
        assert "'alive\\n'" in pdb.ask("p machine.succeed('echo alive')")  # the VM is still up
        assert processes_mentioning(str(private_tmp))
        pdb.finish("c")
        assert proc.wait(60) == 1
        out.thread.join(10)
        assert "failed (exit code 7)" in out.text
    finally:
        proc.kill()
        proc.wait()
    assert subprocess.run(["pgrep", "-fx", f"sleep {pattern}"]).returncode == 1
    assert wait_no_processes(str(private_tmp)) == []


def test_a_machine_error_ends_the_test_without_the_debug_hook(guest, tmp_path, private_tmp):
    """As upstream: a MachineError (a machine or a tool failed) fails at once, hook or not."""
    script = "from test_driver.errors import MachineError\nraise MachineError('the tool is missing')\n"
    command = driver_command(guest, tmp_path, script, "--debug-hook-attach", "/run/attach-helper")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "the tool is missing" in result.stderr and "Breakpoint reached" not in result.stderr


def test_debug_breakpoint_is_a_no_op_without_the_hook(guest, tmp_path, private_tmp):
    command = driver_command(guest, tmp_path, "debug.breakpoint()\nmachine.succeed('true')\n")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pdb waits" not in result.stderr


def test_sigterm_ends_the_interactive_shell_and_its_machines(shell, private_tmp):
    shell.send('machine.succeed("echo up")\r')
    shell.expect("'up")
    assert processes_mentioning(str(private_tmp))
    shell.kill(signal.SIGTERM)
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.signalstatus == signal.SIGTERM
    assert wait_no_processes(str(private_tmp)) == []


def hang_up_after(command: bytes, port: int) -> None:
    """What ``echo CMD | nc 127.0.0.1 PORT`` does: send the command (if any) and close at once."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
        client.sendall(command)


@pytest.mark.parametrize("command, status", [(b"c\n", 0), (b"q\n", 1), (b"", 0)],
                         ids=["continue", "quit", "hang-up"])
def test_a_pdb_client_that_leaves_at_once_never_breaks_the_test(tmp_path, command, status):
    """No VM: the script only stops at breakpoint().  Nothing pdb writes to a client that has
    gone may fail the test: `c` and a bare hang-up continue, `q` fails it with BdbQuit."""
    test = tmp_path / "t.py"
    test.write_text("value = 1\nbreakpoint()\nlog.info('script end reached')\n")
    proc, out = debugged_driver([sys.executable, "-m", "test_driver.cli_main", "-o", str(tmp_path), str(test)],
                                {"PYTHONBREAKPOINT": "remote_pdb.set_trace", "REMOTE_PDB_PORT": "0"})
    try:
        hang_up_after(command, int(out.wait_for(r"pdb waits on 127\.0\.0\.1:(\d+)")[1]))
        assert proc.wait(60) == status, out.text
        out.thread.join(10)
    finally:
        proc.kill()
        proc.wait()
    assert "BrokenPipe" not in out.text and "ConnectionReset" not in out.text, out.text
    assert bool(re.search(r"^ *script end reached$", out.text, re.M)) == (status == 0), out.text
    if status == 1:
        assert "BdbQuit" in out.text, out.text
