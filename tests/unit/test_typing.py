"""Test scripts type-check against our Machine (py.typed), as nixpkgs checks them against upstream's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_driver import typecheck

ROOT = Path(__file__).resolve().parents[2]

# Shaped like the prelude nixpkgs writes before a testScript for its mypy check.
PRELUDE = """\
from typing import Any, Callable, ContextManager, Dict, List, Protocol
from test_driver.driver import Driver
from test_driver.logger import AbstractLogger, Logger
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


def mypy(tmp_path: Path, script: str, prelude: str = PRELUDE) -> subprocess.CompletedProcess[str]:
    """mypy as nixpkgs runs it on a prelude and a script, against this package."""
    path = tmp_path / "testScriptWithTypes"
    path.write_text(prelude + script)
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


def test_our_prelude_accepts_a_correct_script_and_maps_lines(tmp_path):
    pytest.importorskip("mypy")
    status, messages = typecheck.check(GOOD + "vlan1.stop()\nt.assertEqual(1, 1)\n", ["server", "client"], [1],
                                       cache_dir=tmp_path / "cache")
    assert status == 0, messages
    status, messages = typecheck.check("machine.succeed('true')\nmachine.wait_for_unit(1)\n", ["only-one"],
                                       script_name="t.py", cache_dir=tmp_path / "cache")
    assert status == 1
    assert 't.py:2: error: Argument 1 to "wait_for_unit"' in messages  # the script's own line
    assert "only_one" in typecheck.prelude(["only-one"]) and "machine: QemuMachine" in typecheck.prelude(["x"])


def test_our_prelude_rejects_missing_methods_and_wrong_types(tmp_path):
    pytest.importorskip("mypy")
    status, messages = typecheck.check(BAD, ["server", "client"], cache_dir=tmp_path / "cache")
    assert status == 1
    text = " ".join(messages.split())
    assert 'testScript:1: error: Argument 1 to "succeed" of "BaseMachine" has incompatible type "int"' in text
    assert 'testScript:3: error: "QemuMachine" has no attribute "no_such_method"' in text


def test_typecheck_command_line(tmp_path):
    pytest.importorskip("mypy")
    script = tmp_path / "t.py"
    script.write_text("alpha.succeed('true')\nbeta.succeed('true')\n")
    ok = subprocess.run([sys.executable, "-c", "from test_driver.typecheck import main; main()",
                         str(script), "--machines", "alpha", "beta"], capture_output=True, text=True)
    assert ok.returncode == 0 and "type check passed" in ok.stderr, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-c", "from test_driver.typecheck import main; main()",
                          str(script), "--machines", "alpha"], capture_output=True, text=True)
    assert bad.returncode == 1 and 'Name "beta" is not defined' in bad.stdout


def test_containers_are_typed_as_nspawn_machines(tmp_path):
    pytest.importorskip("mypy")
    script = "box.wait_for_unit('multi-user.target')\nbox.succeed('true')\nbox.screenshot('x')\nparallel(lambda: box.succeed('true'))\n"
    status, messages = typecheck.check(script, ["vm1"], containers=["box"], cache_dir=tmp_path / "cache")
    assert status == 1
    assert 'testScript:3: error: "NspawnMachine" has no attribute "screenshot"' in messages
    assert messages.count("error:") == 1, messages


def test_a_tty_is_a_number_or_a_string(tmp_path):
    """nixpkgs' shadow test passes the tty as a number."""
    pytest.importorskip("mypy")
    script = ('machine.wait_until_tty_matches(1, "login: ")\nmachine.wait_until_tty_matches("2", "x", timeout=5)\n'
              'text: str = machine.get_tty_text(1)\nmachine.dump_tty_contents(1)\n')
    status, messages = typecheck.check(script, ["machine"], cache_dir=tmp_path / "cache")
    assert status == 0, messages


def test_the_prelude_declares_pythonized_machine_names(tmp_path):
    pytest.importorskip("mypy")
    status, messages = typecheck.check("a_b.succeed('true')\n_node.succeed('true')\n", ["a-b", "1node"],
                                       cache_dir=tmp_path / "cache")
    assert status == 0, messages
    assert "a_b: QemuMachine" in typecheck.prelude(["a-b"]) and "_node: QemuMachine" in typecheck.prelude(["1node"])


def test_the_prelude_takes_upstreams_polling_interval_and_dump_machine_ssh(tmp_path):
    pytest.importorskip("mypy")
    script = ("import datetime as dt\n"
              "@polling_condition(interval=dt.timedelta(seconds=5), description='up')\n"
              "def up() -> bool:\n    return True\n"
              "@polling_condition(seconds_interval=dt.timedelta(seconds=1))\n"
              "def up2() -> None:\n    machine.succeed('true')\n"
              "polling_condition(up, seconds_interval=0.5)\n"
              "dump_machine_ssh()\n")
    status, messages = typecheck.check(script, ["machine"], cache_dir=tmp_path / "cache")
    assert status == 0, messages
