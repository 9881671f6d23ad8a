"""Type-check a testScript with mypy, as nixpkgs does before a test runs.

    nixos-test-driver-typecheck test-script.py --machines server client [--containers box] [--vlans 1 2]

A prelude declares the driver's symbols with their types and each machine (and
``vlanN``) by name, then the script follows; mypy's messages are mapped back to
the script's own line numbers.  ``prelude()`` is what nix uses (see nix/typecheck.nix).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SYMBOLS = """\
# The driver's test symbols, typed (written by test_driver.typecheck).
import datetime
import os
import unittest
from typing import Any, Callable, ContextManager, Protocol
from test_driver.debug import Debug
from test_driver.driver import Driver
from test_driver.logger import AbstractLogger
from test_driver.machine import BaseMachine, Machine, NspawnMachine, QemuMachine
from test_driver.vlan import VLan
from test_driver.deadline import Duration

class RetryProtocol(Protocol):
    def __call__(self, fn: Callable[..., Any], timeout_seconds: Duration | None = 900,
                 timeout: Duration | None = ...) -> None: ...

class PollingConditionProtocol(Protocol):
    def __call__(self, fun_: Callable[..., Any] | None = None, *, seconds_interval: Duration | None = None,
                 interval: datetime.timedelta | None = None, description: str | None = None) -> Any: ...

class CreateMachineProtocol(Protocol):
    def __call__(self, start_command: str | dict[str, Any], *, name: str | None = None,
                 keep_vm_state: bool = False, keep_machine_state: bool | None = None,
                 allow_reboot: bool = False) -> QemuMachine: ...

start_all: Callable[[], None]
join_all: Callable[[], None]
subtest: Callable[[str], ContextManager[None]]
retry: RetryProtocol
polling_condition: PollingConditionProtocol
create_machine: CreateMachineProtocol
test_script: Callable[[], None]
run_tests: Callable[[], None]
serial_stdout_off: Callable[[], None]
serial_stdout_on: Callable[[], None]
machines: list[QemuMachine | NspawnMachine]
machines_qemu: list[QemuMachine]
machines_nspawn: list[NspawnMachine]
parallel: Callable[..., list[Any]]
dump_machine_ssh: Callable[[], None]
vlans: list[VLan]
driver: Driver
log: AbstractLogger
debug: Debug
t: unittest.TestCase
"""


def pythonize(name: str) -> str:
    """A machine name as the test symbol it is (upstream's ``pythonize_name``): every character
    other than an ASCII letter, digit or underscore becomes ``_``, and so does a leading digit."""
    return re.sub(r"[^A-Za-z0-9_]|^[0-9]", "_", name)


def prelude(machines: list[str], vlans: list[int] = [], containers: list[str] = []) -> str:
    names = [pythonize(m) for m in machines]
    boxes = [pythonize(c) for c in containers]
    if len(names) + len(boxes) == 1 and "machine" not in names + boxes:
        (names if names else boxes).append("machine")
    lines = ([SYMBOLS] + [f"{name}: QemuMachine" for name in names] + [f"{name}: NspawnMachine" for name in boxes]
             + [f"vlan{nr}: VLan" for nr in vlans])
    return "\n".join(lines) + "\n"


def _mypy() -> list[str]:
    """mypy in this interpreter if it has it, else the ``mypy`` program (as in a nix build)."""
    try:
        import mypy  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        found = shutil.which("mypy")
        if found is None:
            raise SystemExit("nixos-test-driver-typecheck: mypy is needed (pip install mypy, or put it on PATH)")
        return [found]
    return [sys.executable, "-m", "mypy"]


def check(script: str, machines: list[str], vlans: list[int] = [], script_name: str = "testScript",
          cache_dir: Path | None = None, containers: list[str] = []) -> tuple[int, str]:
    """mypy's status and messages for ``script``, with line numbers of the script itself."""
    head = prelude(machines, vlans, containers)
    offset = head.count("\n")
    with tempfile.TemporaryDirectory(prefix="td-typecheck-") as tmp:
        path = Path(tmp) / "test_script.py"
        path.write_text(head + script)
        env = {**os.environ, "MYPYPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                                         os.environ.get("MYPYPATH")]))}
        # Errors inside the driver's own modules are not the script's: imports are followed silently.
        result = subprocess.run(
            [*_mypy(), "--no-implicit-optional", "--no-color-output", "--no-error-summary",
             "--follow-imports=silent", "--cache-dir", str(cache_dir or Path(tmp) / "cache"), str(path)],
            capture_output=True, text=True, env=env)

    def relocate(match: re.Match[str]) -> str:
        line = int(match[1]) - offset
        return f"{script_name}:{line}:" if line > 0 else f"<prelude>:{match[1]}:"

    messages = re.sub(re.escape(str(path)) + r":(\d+):", relocate, result.stdout + result.stderr)
    return result.returncode, messages


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nixos-test-driver-typecheck", description=__doc__.splitlines()[0])
    parser.add_argument("--machines", nargs="*", default=[], metavar="NAME", help="the test's machine names")
    parser.add_argument("--containers", nargs="*", default=[], metavar="NAME", help="the test's container names")
    parser.add_argument("--vlans", nargs="*", type=int, default=[], metavar="N", help="the test's VLAN numbers")
    parser.add_argument("--print-prelude", action="store_true", help="print the prelude and exit")
    parser.add_argument("script", type=Path, nargs="?", help="the testScript")
    args = parser.parse_args(argv)
    if args.print_prelude:
        print(prelude(args.machines, args.vlans, args.containers), end="")
        return
    if args.script is None:
        parser.error("the testScript to check is missing")
    try:
        script = args.script.read_text()
    except OSError as exc:
        parser.error(f"cannot read {args.script}: {exc}")
    status, messages = check(script, args.machines, args.vlans, str(args.script), containers=args.containers)
    print(messages, end="")
    print("type check passed" if status == 0 else "type check failed", file=sys.stderr)
    sys.exit(status)
