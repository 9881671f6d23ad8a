"""Fixtures for end-to-end tests on real QEMU guests (built by tests/guests/tiny.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import tiny
from conftest_shared import wait_no_processes
from e2e_support import Log

from test_driver.driver import Driver


@pytest.fixture(scope="session")
def guest() -> tiny.Guest:
    return tiny.build()


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
