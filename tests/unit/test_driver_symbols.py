"""The driver as upstream's, seen from a script, without a VM: the order of ``machines``,
``start_all``'s one error for every machine that failed to start, ``dump_machine_ssh`` as a
symbol, the ``additionally exposed symbols`` line, and ``read_efi_vars()`` with no store.

The machines' start scripts are stubs: never started, or exiting at once.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from test_driver.driver import Driver
from test_driver.errors import MachineError
from test_driver.logger import CompositeLogger, TerminalLogger
from test_driver.report import failing_machine


def stub(tmp_path: Path, name: str, status: int = 1) -> str:
    """A start script that says so on stderr and exits: a machine that fails to start."""
    script = tmp_path / f"run-{name}-vm"
    script.write_text(f"#!/bin/sh\necho 'cannot start {name}' >&2\nexit {status}\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def log() -> io.StringIO:
    return io.StringIO()


def make(tmp_path: Path, names: list[str], log: io.StringIO, vlans: list[int] = []) -> Driver:
    return Driver([stub(tmp_path, n) for n in names], vlans, "", tmp_path,
                  CompositeLogger([TerminalLogger(log, colour=False)]))


def test_machines_are_sorted_by_name(tmp_path, log):
    driver = make(tmp_path, ["zeta", "alpha", "mid"], log)
    try:
        assert [m.name for m in driver.machines] == ["alpha", "mid", "zeta"]
        assert [m.name for m in driver.machines_qemu] == ["zeta", "alpha", "mid"]  # as given, as upstream
        symbols = driver.test_symbols()
        driver.create_machine(stub(tmp_path, "beta"))  # as upstream, not one of `machines`
        assert [m.name for m in symbols["machines"]] == ["alpha", "mid", "zeta"]
        assert [m.name for m in driver.created] == ["beta"]
    finally:
        driver.cleanup()


def test_start_all_raises_one_error_naming_every_machine_that_failed(tmp_path, log):
    driver = make(tmp_path, ["zeta", "alpha"], log)
    try:
        with pytest.raises(MachineError) as caught:
            driver.start_all()
    finally:
        driver.cleanup()
    lines = str(caught.value).splitlines()
    assert lines[0] == "Failed to start the following machines:"
    named = [line.split(":")[0] for line in lines[1:] if not line.startswith(" ")]
    assert [n for n in named if n in ("alpha", "zeta")] == ["alpha", "zeta"]
    for name in ("alpha", "zeta"):  # each machine's own error, whole
        own = next(line for line in lines if line.startswith(f"{name}: "))
        assert "exited with status 1" in own
        assert f"cannot start {name}" in str(caught.value)
    assert caught.value.__cause__ is not None
    assert failing_machine(caught.value, driver.machines) is driver.machines[0]  # the report's serial tail


def test_dump_machine_ssh_is_a_symbol_callable_as_upstreams(tmp_path, log, capsys):
    driver = make(tmp_path, ["b", "a"], log)
    try:
        dump = driver.test_symbols()["dump_machine_ssh"]
        dump()  # no ssh backdoor numbers given: nothing, as upstream with the backdoor off
        assert "SSH backdoor" not in log.getvalue()
        dump(10)  # the older signature: the vsock offset
        dump()  # then the offset given is kept
        lines = [line.strip() for line in log.getvalue().splitlines() if "vsock" in line]
        assert len(lines) == 4 and "11" in lines[0] and lines[0].startswith("a ") and lines[1].startswith("b ")
        assert lines[:2] == lines[2:]
    finally:
        driver.cleanup()


def test_test_symbols_says_what_it_adds_on_stdout(tmp_path, log, capsys):
    driver = make(tmp_path, ["b-2", "a"], log, vlans=[3])
    try:
        capsys.readouterr()
        symbols = driver.test_symbols()
    finally:
        driver.cleanup()
    out = capsys.readouterr().out
    head, machines, vlans, general = out.rstrip("\n").split("\n")
    assert head == "additionally exposed symbols:"
    assert machines == "    a, b-2,"  # machine names, as upstream prints them
    assert vlans == "    vlan3,"
    listed = general.strip().split(", ")
    assert {"start_all", "dump_machine_ssh", "polling_condition", "t"} <= set(listed)
    assert set(listed) <= set(symbols)


def test_read_efi_vars_without_a_store_is_empty(tmp_path, log):
    driver = make(tmp_path, ["machine"], log)
    try:
        machine = driver.machines[0]
        assert not machine.efi_vars_path.exists()
        assert machine.read_efi_vars() == []
        machine.dump_efi_vars()  # nothing to show, no error
    finally:
        driver.cleanup()


def test_machine_alias_of_a_differently_named_only_machine_warns_as_upstream(tmp_path, log):
    """Upstream (nixpkgs PR 511859): `machine` still reaches the only machine when it has another
    name, through a proxy that warns on every attribute; a machine named `machine` is itself."""
    from test_driver.machine import MachineDeprecationWrapper, QemuMachine

    driver = make(tmp_path, ["server"], log)
    try:
        symbols = driver.test_symbols()
        alias, server = symbols["machine"], symbols["server"]
        assert isinstance(alias, MachineDeprecationWrapper) and alias.machine is server
        with pytest.warns(UserWarning, match=r"^invoking 'QemuMachine\.is_up' is deprecated: .*'server'"):
            assert alias.is_up() is False
        with pytest.warns(UserWarning, match=r"'QemuMachine\.name'"):
            assert alias.name == "server"
        with pytest.warns(UserWarning):
            assert isinstance(alias, QemuMachine)  # through __class__, as upstream's proxy
    finally:
        driver.cleanup()
    for names in (["machine"], ["a", "b"]):
        driver = make(tmp_path, names, log)
        try:
            symbols = driver.test_symbols()
            assert symbols.get("machine") is (driver.machines[0] if names == ["machine"] else None)
        finally:
            driver.cleanup()
