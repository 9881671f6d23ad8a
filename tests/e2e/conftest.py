"""Fixtures for end-to-end tests on real QEMU guests (built by tests/guests/tiny.py)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import tiny
from conftest_shared import processes_mentioning, wait_no_processes  # noqa: F401  (tests import them from here)

from test_driver.driver import Driver
from test_driver.logger import CompositeLogger, TerminalLogger


@pytest.fixture(scope="session")
def guest() -> tiny.Guest:
    return tiny.build()


class Log(CompositeLogger):
    """A terminal logger into a buffer the test can read."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        super().__init__([TerminalLogger(self.buffer, colour=False)])

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def make_driver(guest: tiny.Guest, tmp_path: Path, private_tmp: Path, log: Log):
    """make_driver(["a", "b"], script="", append={"a": "td.nobackdoor"}) -> Driver (cleaned up)."""
    drivers: list[Driver] = []

    def make(names: list[str], script: str = "", append: dict[str, str] | None = None,
             **kwargs) -> Driver:
        scripts = [str(tiny.write_start_script(tmp_path, name, guest, (append or {}).get(name, "")))
                   for name in names]
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        driver = Driver(scripts, [], script, out, log, **kwargs)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.cleanup()


@pytest.fixture(scope="session")
def debian_guest():
    import debian

    return debian.build()


@pytest.fixture(scope="module")
def debian_vm(debian_guest, tmp_path_factory):
    """One Debian systemd machine ("deb"), booted to multi-user.target, shared by a module."""
    import debian

    base = tmp_path_factory.mktemp("debian")
    tmp = base / "tmp"
    tmp.mkdir()
    out = base / "out"
    out.mkdir()
    script = debian.write_start_script(base, "deb", debian_guest)
    log = Log()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmp))
        mp.setattr(tempfile, "tempdir", None)
        driver = Driver([str(script)], [], "", out, log)
        try:
            machine = driver.machines[0]
            machine.wait_for_unit("multi-user.target", timeout=300)
            yield driver, machine, log
        finally:
            driver.cleanup()
    assert not wait_no_processes(str(tmp))


@pytest.fixture
def run(guest, tmp_path, private_tmp):
    """run(script, names=[...], args=[...], env={...}, efi=False) -> CompletedProcess of the CLI
    (``efi``: the machines boot OVMF with a UEFI variable store)."""

    def go(script: str, names: list[str] = ["machine"], args: list[str] = [],
           append: dict[str, str] = {}, env: dict[str, str] = {}, timeout: float = 240,
           efi: bool = False) -> subprocess.CompletedProcess[str]:
        scripts = [str(tiny.write_start_script(tmp_path, n, guest, append.get(n, ""), efi=efi))
                   for n in names]
        path = tmp_path / "script.py"
        path.write_text(script)
        return subprocess.run(
            [sys.executable, "-m", "test_driver.cli_main", "--start-scripts", *scripts,
             "-o", str(tmp_path), *args, "--", str(path)],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})

    return go


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
