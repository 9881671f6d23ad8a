"""What the end-to-end tests share besides fixtures (conftest.py has those): a logger into a
buffer, a driver subprocess read up to a line, a delayed SIGKILL.  A module of its own name:
tests import from it, never from a conftest (tests/conformance has one too)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Iterator

import pexpect
import tiny

from conftest_shared import processes_mentioning, wait_no_processes  # noqa: F401  (tests import them from here)
from test_driver.logger import CompositeLogger, TerminalLogger


class Log(CompositeLogger):
    """A terminal logger into a buffer the test can read."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        super().__init__([TerminalLogger(self.buffer, colour=False)])

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


@contextlib.contextmanager
def driver_running(guest, tmp_path, name: str, script: str, until: str, args: list[str] = [],
                   env: dict[str, str] = {}):
    """A driver subprocess running ``script``, read up to the log line ``until``; killed at the end."""
    start_script = tiny.write_start_script(tmp_path, name, guest)
    test = tmp_path / "t.py"
    test.write_text(script)
    proc = subprocess.Popen([sys.executable, "-m", "test_driver.cli_main", "--start-scripts",
                             str(start_script), "-o", str(tmp_path), *args, "--", str(test)],
                            env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if until in line:
                break
        yield proc
    finally:
        proc.kill()
        proc.wait()


def kill_later(pid: int, delay: float, record: dict[str, float]) -> threading.Timer:
    def kill() -> None:
        record["killed"] = time.monotonic()
        os.kill(pid, signal.SIGKILL)

    timer = threading.Timer(delay, kill)
    timer.start()
    return timer


@contextlib.contextmanager
def spawned(command: list[str], **options) -> Iterator[pexpect.spawn]:
    """The command on a pseudo-terminal (pexpect, text, 90 s per expect); killed and closed
    after the block, whatever happened in it (its ``exitstatus`` is then set)."""
    child = pexpect.spawn(command[0], command[1:], encoding="utf-8", timeout=90, **options)
    try:
        yield child
    finally:
        if child.isalive():
            child.kill(9)
        child.close()
