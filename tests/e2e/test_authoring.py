"""Writing a test without rebooting: the script read again by ``test_script()`` in the
interactive shell, ``--watch``, and what a machine is doing now (``status()``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import tiny

from conftest_shared import Leftovers
from e2e_support import spawned, wait_no_processes

pytestmark = pytest.mark.serial  # (the kernel-wide leftover check)

PROMPT = r"In \["

# Each run appends "LABEL BOOT-ID" to $RUNS on the host: which text ran, on which boot.
SCRIPT = """\
import os
from helpers import label
boot = machine.succeed("cat /proc/sys/kernel/random/boot_id").strip()
with open(os.environ["RUNS"], "a") as runs:
    runs.write(f"{label} {boot} VERSION\\n")
print(f"ran {label} VERSION")
"""


def write_script(directory: Path, version: str, label: str) -> Path:
    (directory / "helpers.py").write_text(f"label = {label!r}\n")
    test = directory / "t.py"
    test.write_text(SCRIPT.replace("VERSION", version))
    return test


def runs(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def authoring(guest, tmp_path, private_tmp):
    """A directory with a test script and its helper module, a tiny machine's start script,
    and the command line of a driver running it (``*args`` added)."""
    work = tmp_path / "work"
    work.mkdir()
    start = tiny.write_start_script(tmp_path, "machine", guest)
    test = write_script(work, "v1", "one")
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}

    def command(*args: str) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "test_driver.cli_main", "--start-scripts", str(start),
                "-o", str(tmp_path), *args, str(test)], env
    yield command
    assert wait_no_processes(str(private_tmp)) == []


def test_test_script_in_the_shell_runs_the_edited_script_on_the_same_boot(authoring, tmp_path):
    command, env = authoring("--interactive")
    with spawned(command, env=env, dimensions=(40, 200), cwd=str(tmp_path)) as shell:
        shell.expect(PROMPT)
        shell.send("test_script()\r")
        shell.expect("ran one v1")
        shell.expect(PROMPT)
        write_script(tmp_path / "work", "v2", "two")
        shell.send("test_script()\r")
        shell.expect("t.py changed since the last run")
        shell.expect("ran two v2")
        shell.expect(PROMPT)
        shell.send("test_script()\r")  # unchanged now: no word of it
        index = shell.expect(["changed since the last run", "ran two v2"])
        assert index == 1
        shell.expect(PROMPT)
        shell.send("exit()\r")
        shell.expect(pexpect.EOF)
    assert shell.exitstatus == 0
    (one, boot1, v1), (two, boot2, v2), (again, boot3, v3) = runs(tmp_path / "runs")
    assert (one, v1, two, v2, again, v3) == ("one", "v1", "two", "v2", "two", "v2")
    assert boot1 == boot2 == boot3


def save_by_rename(path: Path, text: str) -> None:
    """As many editors save: a new file renamed over the old one."""
    new = path.with_name(f".{path.name}.swp")
    new.write_text(text)
    os.replace(new, path)


def test_watch_runs_each_edit_on_the_same_boot(authoring, tmp_path, private_tmp):
    """A failing script made to pass by an edit of its helper module alone; a syntax error
    in the next edit fails that run and keeps the machine; the fix passes on the same boot;
    Ctrl-C ends with the last run's status and leaves nothing."""
    trace = Leftovers(private_tmp)
    work = tmp_path / "work"
    test = work / "t.py"
    test.write_text(SCRIPT.replace("VERSION", "v1") + "assert label == 'two', f'label is {label}'\n")
    command, env = authoring("--watch")
    with spawned(command, env=env, cwd=str(tmp_path), preexec_fn=trace.enter) as child:
        child.expect(r"watch: run 1 failed in [0-9.]+ s: label is one")
        child.expect(r"watch: waiting for changes to .*t\.py, .*helpers\.py \(Ctrl-C to stop\)")
        (work / "helpers.py").write_text("label = 'two'\n")
        child.expect("helpers changed: the script imports helpers afresh")
        child.expect(r"watch: run 2 passed in [0-9.]+ s")
        child.expect("watch: waiting for changes")
        save_by_rename(test, "machine.succeed('true'\n")
        child.expect(r"watch: run 3 failed in [0-9.]+ s: syntax error in the test script .*t\.py, line 1")
        child.expect("watch: waiting for changes")
        save_by_rename(test, SCRIPT.replace("VERSION", "v2"))
        child.expect(r"watch: run 4 passed in [0-9.]+ s")
        child.expect("watch: waiting for changes")
        child.kill(signal.SIGINT)
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0, child.before
    (one, boot1, v1), (two, boot2, v2), (four, boot4, v4) = runs(tmp_path / "runs")
    assert (one, v1, two, v2, four, v4) == ("one", "v1", "two", "v1", "two", "v2")
    assert boot1 == boot2 == boot4
    assert trace.wait(10) == []


def test_watch_starts_a_crashed_machine_again_and_ends_by_sigterm(authoring, tmp_path, private_tmp):
    """A machine killed in one run boots again when the next run uses it; SIGTERM while
    waiting ends the session with the last run's status (1 here), nothing left."""
    trace = Leftovers(private_tmp)
    test = tmp_path / "work" / "t.py"
    test.write_text("machine.succeed('true')\nmachine.process.kill()\nmachine.succeed('true')\n")
    command, env = authoring("--watch")
    with spawned(command, env=env, cwd=str(tmp_path), preexec_fn=trace.enter) as child:
        child.expect(r"watch: run 1 failed in [0-9.]+ s: .*machine 'machine' crashed")
        child.expect("watch: waiting for changes")
        test.write_text(SCRIPT.replace("VERSION", "v1") + "assert False, 'still failing'\n")
        child.expect("the awaited shutdown had already happened")
        child.expect(r"watch: run 2 failed in [0-9.]+ s: still failing")
        child.expect("watch: waiting for changes")
        # nothing changed: no run (reading the script, as each run does, is no change)
        assert child.expect([r"watch: run 3", pexpect.TIMEOUT], timeout=3) == 1
        child.kill(signal.SIGTERM)
        child.expect(pexpect.EOF)
    assert child.exitstatus == 1
    assert [label for label, _, _ in runs(tmp_path / "runs")] == ["one"]
    assert trace.wait(10) == []


STATUS = r"""
import threading, time
from pathlib import Path
machine.succeed("true")
go = Path(machine.shared_dir) / "go"
long = threading.Thread(target=machine.succeed,
                        args=("echo first-line; while [ ! -e /tmp/shared/go ]; do sleep 0.1; done",))
long.start()
for _ in range(300):
    seen = machine.status()
    if seen.last_output:
        break
    time.sleep(0.1)
time.sleep(1)
seen = machine.status()
status()
go.touch()
long.join()
assert seen.state.value == "running a command", seen
assert seen.command.startswith("echo first-line"), seen
assert seen.command_seconds >= 1, seen
assert seen.last_output == "first-line", seen
assert seen.kind == "VM" and seen.pid == machine.pid and seen.uptime >= seen.command_seconds, seen
after = machine.status()
assert after.state.value == "ready" and after.command is None and after.last_output is None, after
machine.process.kill()
for _ in range(300):
    if machine.status().state.value == "crashed":
        break
    time.sleep(0.1)
status()
"""


def test_status_shows_a_running_command_and_a_crash(guest, tmp_path, private_tmp):
    start = tiny.write_start_script(tmp_path, "machine", guest)
    test = tmp_path / "t.py"
    test.write_text(STATUS)
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts", str(start),
                             "-o", str(tmp_path), str(test)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    running, crashed = re.findall(r"^machine +kind .*\n(.*(?:\n  .*)?)", result.stdout, re.M)
    assert re.match(r"machine +VM +running a command +\d+ +[\d.]+ s +0 +echo first-line.* +[\d.]+ s +first-line",
                    running), running
    assert re.match(r"machine +VM +crashed +- +- +0 +- +- +- .*\n  machine: crashed: QEMU killed by signal 9 \(SIGKILL\)", crashed), crashed
    assert wait_no_processes(str(private_tmp)) == []


def test_the_global_timeout_ends_a_watched_run_not_the_session(authoring, tmp_path, private_tmp):
    """A run past --global-timeout fails (its command stopped in the guest too) and the session
    goes on (that the driver then does not kill itself 30 s later: unit/test_global_timer.py)."""
    test = tmp_path / "work" / "t.py"
    test.write_text("machine.succeed('true')\nmachine.succeed('sleep 600')\n")
    command, env = authoring("--watch", "--global-timeout", "10")
    with spawned(command, env=env, cwd=str(tmp_path)) as child:
        child.expect(r"watch: run 1 failed in [0-9.]+ s: test timed out after 10s while running: machine: `sleep 600`")
        child.expect("watch: waiting for changes")
        test.write_text("machine.succeed('! pidof sleep')\n")  # at once: the sleep was stopped
        child.expect(r"watch: run 2 passed")
        child.expect("watch: waiting for changes")
        child.kill(signal.SIGINT)
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0
