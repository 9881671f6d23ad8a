"""Test scripts type-check against our Machine (py.typed), as nixpkgs checks them against upstream's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Shaped like the prelude nixpkgs writes before a testScript for its mypy check.
PRELUDE = """\
from typing import Any, Callable, ContextManager, Dict, List, Protocol
from test_driver.driver import Driver
from test_driver.logger import AbstractLogger
from test_driver.machine import Machine
from test_driver.vlan import VLan

class RetryProtocol(Protocol):
    def __call__(self, fn: Callable[[bool], Any], timeout_seconds: int = 900) -> None: ...

class PollingConditionProtocol(Protocol):
    def __call__(self, fun_: Callable[..., Any] | None = None, *, seconds_interval: float = 2.0,
                 description: str | None = None) -> Any: ...

start_all: Callable[[], None]
subtest: Callable[[str], ContextManager[None]]
retry: RetryProtocol
test_script: Callable[[], None]
machines: List[Machine]
vlans: List[VLan]
driver: Driver
log: AbstractLogger
create_machine: Callable[[Dict[str, Any]], Machine]
run_tests: Callable[[], None]
join_all: Callable[[], None]
serial_stdout_off: Callable[[], None]
serial_stdout_on: Callable[[], None]
polling_condition: PollingConditionProtocol
server: Machine
client: Machine
"""

GOOD = """\
import datetime
start_all()
server.wait_for_unit("multi-user.target")
with subtest("web"):
    server.wait_for_open_port(80, timeout=30)
    out: str = client.succeed("curl -f http://server/", timeout=10)
    status, text = client.execute("true")
    assert status == 0 and out.startswith(text)
client.wait_until_succeeds("true", timeout=datetime.timedelta(seconds=30))
server.send_chars("hi\\n")
server.shutdown()
"""

BAD = """\
server.succeed(42)
client.wait_for_unit()
server.no_such_method()
"""


def mypy(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.py"
    path.write_text(PRELUDE + script)
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mypy", "--no-implicit-optional", "--pretty",
                           "--no-color-output", "--cache-dir", str(tmp_path / "cache"), str(path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)


def test_a_test_script_type_checks(tmp_path):
    pytest.importorskip("mypy")
    result = mypy(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout


def test_type_errors_are_found(tmp_path):
    pytest.importorskip("mypy")
    result = mypy(tmp_path, BAD)
    assert result.returncode == 1
    text = " ".join(result.stdout.split())  # --pretty wraps long messages
    assert 'Argument 1 to "succeed" of "BaseMachine" has incompatible type "int"' in text
    assert 'Missing positional argument "unit"' in text
    assert '"QemuMachine" has no attribute "no_such_method"' in text
