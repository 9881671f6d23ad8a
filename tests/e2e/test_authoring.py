"""Writing a test without rebooting: the script read again by ``test_script()`` in the
interactive shell, ``--watch``, and what a machine is doing now (``status()``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest
import tiny

from e2e_support import wait_no_processes

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
    shell = pexpect.spawn(command[0], command[1:], env=env, encoding="utf-8", timeout=90,
                          dimensions=(40, 200), cwd=str(tmp_path))
    try:
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
    finally:
        if shell.isalive():
            shell.kill(9)
        shell.close()
    assert shell.exitstatus == 0
    (one, boot1, v1), (two, boot2, v2), (again, boot3, v3) = runs(tmp_path / "runs")
    assert (one, v1, two, v2, again, v3) == ("one", "v1", "two", "v2", "two", "v2")
    assert boot1 == boot2 == boot3
