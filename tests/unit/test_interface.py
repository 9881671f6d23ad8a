"""The module paths, class names and typing of nixpkgs' driver contract (2026): every name its
typing prelude and its driver tests import, and a script using the newest API type-checked
with a prelude shaped like the one nixpkgs' driver.nix writes."""

from __future__ import annotations

import importlib

import pytest

from test_typing import mypy

from test_driver.driver import Driver
from test_driver.logger import CompositeLogger

NAMES = {
    "test_driver.driver": ["Driver"],
    "test_driver.vlan": ["VLan"],
    "test_driver.machine": ["BaseMachine", "QemuMachine", "NspawnMachine", "Machine", "retry"],
    "test_driver.machine.qmp": ["QMPAPIError", "QMPSession"],
    "test_driver.logger": ["AbstractLogger", "Logger", "CompositeLogger", "TerminalLogger", "XMLLogger",
                           "JunitXMLLogger", "rootlog"],
    "test_driver.errors": ["TestScriptError", "RequestedAssertionFailed", "MachineError"],
    "test_driver.efi": ["EfiVariable", "EfiVars", "EfiGuid"],
    "test_driver.debug": ["DebugAbstract", "DebugNop", "Debug"],
    "test_driver.polling_condition": ["PollingCondition", "PollingConditionError"],
    "test_driver.duration": ["Duration", "as_timedelta", "as_seconds"],
    "test_driver": ["main", "generate_driver_symbols"],
}

SYMBOLS = ["start_all", "test_script", "run_tests", "machines", "machines_qemu", "machines_nspawn", "vlans",
           "driver", "log", "os", "create_machine", "subtest", "join_all", "retry", "serial_stdout_off",
           "serial_stdout_on", "polling_condition", "BaseMachine", "QemuMachine", "NspawnMachine", "Machine",
           "t", "debug", "dump_machine_ssh"]


@pytest.mark.parametrize("module", sorted(NAMES))
def test_every_name_imports_from_its_module(module):
    loaded = importlib.import_module(module)
    missing = [name for name in NAMES[module] if not hasattr(loaded, name)]
    assert not missing, f"{module} lacks {missing}"


def test_the_names_mean_what_they_mean_upstream():
    from test_driver import errors, machine
    from test_driver.machine import qmp

    assert machine.Machine is machine.QemuMachine
    assert issubclass(machine.QemuMachine, machine.BaseMachine)
    assert issubclass(machine.NspawnMachine, machine.BaseMachine)
    assert issubclass(errors.RequestedAssertionFailed, errors.TestScriptError)
    assert issubclass(qmp.QMPAPIError, errors.MachineError)


def test_every_test_symbol_and_one_per_vlan(tmp_path):
    driver = Driver([], [2, 1, 2], "", tmp_path, CompositeLogger([]))
    try:
        symbols = driver.test_symbols()
        assert not [s for s in SYMBOLS if s not in symbols]
        assert [v.nr for v in symbols["vlans"]] == [2, 1]  # as upstream: as given, each once
        # upstream's attributes of the `driver` symbol
        assert symbols["driver"].keep_machine_state is False and symbols["driver"].interactive is False
        assert symbols["driver"].race_timer is None  # started by run_tests
        config = symbols["driver"].config
        assert config.vlans == [2, 1] and config.vms == {} and config.global_timeout.total_seconds() == 86400
        assert symbols["vlan1"] is driver.vlans[1] and symbols["vlan2"] is driver.vlans[0]
        with pytest.raises(Exception) as caught:
            symbols["t"].assertEqual(1, 2)
        assert type(caught.value).__name__ == "RequestedAssertionFailed"
    finally:
        driver.cleanup()



def test_machine_symbols_are_pythonized_names(tmp_path):
    """As upstream's pythonize_name (nixpkgs' node-name test): every character other than a
    letter, digit or underscore becomes `_`, and so does a leading digit; the machine keeps its name."""
    scripts = []
    for name in ["a-b", "1node", "web.example"]:
        script = tmp_path / f"run-{name}-vm"
        script.write_text("#!/bin/sh\nexit 1\n")  # never started: machines start when used
        script.chmod(0o755)
        scripts.append(str(script))
    driver = Driver(scripts, [], "", tmp_path, CompositeLogger([]))
    try:
        symbols = driver.test_symbols()
        assert [symbols[name].name for name in ["a_b", "_node", "web_example"]] == ["a-b", "1node", "web.example"]
        assert "a-b" not in symbols
    finally:
        driver.cleanup()

# The shape nixpkgs' driver.nix gives the file it type-checks: a typing prelude (imports from
# the driver's modules, protocols for the callable symbols, one annotation per symbol), then one
# line of `name: QemuMachine;` hints, one of `name: NspawnMachine;` hints, then `vlanN: VLan`.
PRELUDE = """\
import datetime
import unittest
from typing import Any, Callable, ContextManager, Optional, Union

from typing_extensions import Protocol

from test_driver.debug import DebugAbstract
from test_driver.driver import Driver
from test_driver.logger import AbstractLogger
from test_driver.machine import BaseMachine, NspawnMachine, QemuMachine
from test_driver.vlan import VLan

Seconds = Union[datetime.timedelta, int, float]

class Retry(Protocol):
    def __call__(self, fn: Callable[..., Any], timeout: Optional[Seconds] = 900) -> None: ...

class PollingCondition(Protocol):
    def __call__(self, fun_: Optional[Callable[..., Any]] = None, *, seconds_interval: float = 2.0,
                 description: Optional[str] = None) -> Any: ...

class CreateMachine(Protocol):
    def __call__(self, start_command: Union[str, dict[str, Any]], *, name: Optional[str] = None,
                 keep_vm_state: bool = False) -> QemuMachine: ...

driver: Driver
log: AbstractLogger
debug: DebugAbstract
t: unittest.TestCase
machines: list[BaseMachine]
machines_qemu: list[QemuMachine]
machines_nspawn: list[NspawnMachine]
vlans: list[VLan]
start_all: Callable[[], None]
join_all: Callable[[], None]
test_script: Callable[[], None]
run_tests: Callable[[], None]
serial_stdout_on: Callable[[], None]
serial_stdout_off: Callable[[], None]
subtest: Callable[[str], ContextManager[None]]
retry: Retry
polling_condition: PollingCondition
create_machine: CreateMachine
alpha: QemuMachine; beta: QemuMachine;
box: NspawnMachine;
vlan1: VLan
"""

NEW_API = """\
import datetime as dt
import uuid
from test_driver.efi import EfiVariable
from test_driver.errors import RequestedAssertionFailed
from test_driver.machine.qmp import QMPAPIError

start_all()
alpha.wait_for_unit_active_state("sshd.service", "active", timeout=dt.timedelta(seconds=30))
out: str = alpha.wait_until_succeeds("true", timeout=dt.timedelta(seconds=30),
                                     attempt_timeout=dt.timedelta(seconds=5))
alpha.wait_until_fails("false", timeout=30, attempt_timeout=5)
retry(lambda remaining: remaining is None or remaining > 0, timeout=dt.timedelta(seconds=5))
console: str = alpha.get_console_log()
try:
    alpha.qmp_client.send("query-status")
except QMPAPIError as exc:
    log.info(str(exc))
beta.create_efi_vars()
beta.write_efi_vars([EfiVariable(vendor_uuid=uuid.uuid4(), name="X", data=b"1",
                                 flags=EfiVariable.Flags.NON_VOLATILE)])
found: list[EfiVariable] = beta.read_efi_vars()
beta.dump_efi_vars()
box.succeed("true", timeout=dt.timedelta(seconds=3))
alpha.copy_from_machine("/etc/hostname")
alpha.copy_from_vm("/etc/hostname")
vlan1.stop()
extra = create_machine({"startCommand": "qemu-system-x86_64"}, name="extra")
extra.shutdown()
for m in machines_qemu:
    m.crash()
t.assertEqual(len(machines), len(machines_qemu) + len(machines_nspawn))
debug.breakpoint()
"""

WRONG = """\
box.screenshot("x")
alpha.wait_until_succeeds("true", attempt_timeout="5s")
vlan2.stop()
"""


def test_a_script_on_the_newest_api_type_checks_with_a_nixpkgs_shaped_prelude(tmp_path):
    pytest.importorskip("mypy")
    result = mypy(tmp_path, NEW_API, PRELUDE)
    assert result.returncode == 0, result.stdout


def test_the_same_prelude_rejects_what_does_not_exist(tmp_path):
    pytest.importorskip("mypy")
    result = mypy(tmp_path, WRONG, PRELUDE)
    text = " ".join(result.stdout.split())
    assert result.returncode == 1
    assert '"NspawnMachine" has no attribute "screenshot"' in text
    assert 'Argument "attempt_timeout" to "wait_until_succeeds" of "BaseMachine" has incompatible type "str"' in text
    assert 'Name "vlan2" is not defined' in text


def test_a_vm_only_method_of_a_container_is_a_missing_attribute_too(tmp_path):
    """Upstream's containers lack the VM-only methods (AttributeError): hasattr() is False and
    getattr() with a default works; calling one says why, as a MachineError."""
    from test_driver.errors import MachineError
    from test_driver.logger import CompositeLogger
    from test_driver.machine import NspawnMachine

    box = NspawnMachine(tmp_path, tmp_path, str(tmp_path / "run-box-nspawn"), CompositeLogger([]))
    assert not hasattr(box, "screenshot") and getattr(box, "send_monitor_command", None) is None
    with pytest.raises(MachineError, match=r"screenshot\(\) needs a QEMU machine: 'box' is a container"):
        box.screenshot("x")
    with pytest.raises(AttributeError):
        box.no_such_thing
