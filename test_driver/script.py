"""The test script a driver runs, and the names it sees.

A ``TestScript`` is the script's text, the path it is known by (tracebacks and the log name
it), and what runs: its compiled code, or the plan a steps document was checked into (the
command line makes that plan; the driver only runs it).  A script that came from a file is
read again before each run (``reload``; see script_file.py).

``script_symbols(driver)`` is what the script sees: the driver's functions, the machines
(``a-b`` as ``a_b``; a lone machine also as ``machine``, with upstream's warning), the VLANs.
"""

from __future__ import annotations

import linecache
import os
from types import CodeType
from typing import TYPE_CHECKING, Any, Callable

from .assertions import AssertionTester, must_raise
from .errors import DriverError
from .logger import AbstractLogger
from .machine import BaseMachine, Machine, MachineDeprecationWrapper, NspawnMachine, QemuMachine, retry
from .machine.deprecation import alias_warning
from .script_file import ScriptFile
from .typecheck import pythonize as pythonize_name

if TYPE_CHECKING:
    from .driver import Driver


def compile_script(text: str, path: str) -> CodeType:
    """``text`` as code, known by ``path``; a syntax error is a ``DriverError`` naming the line."""
    # Tracebacks show the script's lines even when it was given as a string.
    linecache.cache[path] = (len(text), None, text.splitlines(True), path)
    try:
        return compile(text, path, "exec")
    except SyntaxError as exc:
        raise DriverError(f"syntax error in the test script {exc.filename}, line {exc.lineno}: "
                          f"{exc.msg}\n    {(exc.text or '').rstrip()}") from None


class TestScript:
    """What ``test_script()`` runs: Python ``text`` (compiled now, so a syntax error stops the
    driver before any machine starts), or ``planned``, a steps document's plan."""

    __test__ = False  # (not a pytest test class, whatever its name)

    def __init__(self, text: str, path: str = "<testScript>",
                 planned: Callable[[Driver], None] | None = None) -> None:
        self.text = text
        self.path = path
        self.planned = planned
        self.code: CodeType | None = None if planned is not None else compile_script(text, path)
        self.file = ScriptFile.of(path, text) if planned is None else None
        """The file the script came from, read again at each run (None: given as text)."""

    def reload(self, logger: AbstractLogger, interactive: bool) -> None:
        """Take the file's current text, and drop the local modules the script imports when
        one of them changed (the script's imports then load them afresh)."""
        if self.file is None:
            if interactive:
                kind = "a steps document" if self.planned is not None else "text, not a file"
                logger.info(f"the test script was given as {kind}: there is no file to read again")
            return
        changed = self.file.changed_modules()
        if changed:
            dropped = self.file.forget_modules()
            logger.info(f"{', '.join(changed)} changed: the script imports {', '.join(dropped)} afresh")
        text = self.file.reread()
        if text is None:
            return
        logger.info(f"{self.path} changed since the last run: running its current text")
        try:
            self.code = compile_script(text, self.path)
        except DriverError:
            self.file.text = self.text  # still the old one: the next run reads the file again
            raise
        self.text = text

    def run(self, driver: Driver) -> None:
        """Run it against ``driver``: the plan, or the code with ``script_symbols(driver)``."""
        if self.planned is not None:
            self.planned(driver)
        elif self.code is not None:
            try:
                exec(self.code, script_symbols(driver), None)
            finally:
                if self.file is not None:
                    self.file.note_modules()


def script_symbols(driver: Driver) -> dict[str, Any]:
    """The names a test script sees; like upstream, says on stdout which ones it adds."""
    general = dict(
        start_all=driver.start_all, test_script=driver.test_script, machines=driver.machines,
        machines_qemu=driver.machines_qemu, machines_nspawn=driver.machines_nspawn, NspawnMachine=NspawnMachine,
        vlans=driver.vlans, driver=driver, log=driver.logger, os=os,
        create_machine=driver.create_machine, subtest=driver.subtest, run_tests=driver.run_tests,
        join_all=driver.join_all, retry=retry, serial_stdout_off=driver.serial_stdout_off,
        serial_stdout_on=driver.serial_stdout_on, polling_condition=driver.polling_condition,
        debug=driver.debug, breakpoint=driver.debug.script_breakpoint, parallel=driver.parallel,
        t=AssertionTester(), must_raise=must_raise, dump_machine_ssh=driver.dump_machine_ssh,
        Machine=Machine, QemuMachine=QemuMachine, BaseMachine=BaseMachine, status=driver.status,
    )
    machines: dict[str, Any] = {pythonize_name(m.name): m for m in driver.machines}  # a-b is a_b
    if len(driver.machines) == 1 and "machine" not in machines:  # as upstream: warns at each use
        only = driver.machines[0]
        machines["machine"] = MachineDeprecationWrapper(alias_warning(only.name), only)
    vlans = {f"vlan{v.nr}": v for v in driver.vlans}
    print("additionally exposed symbols:\n    " + ",\n    ".join([
        ", ".join(m.name for m in driver.machines), ", ".join(vlans), ", ".join(general)]), flush=True)
    return {**general, **machines, **vlans}
