"""The ``nixos-test-driver`` and ``generate-driver-symbols`` commands."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from .driver import Driver
from .errors import DriverError, TestScriptError
from .logger import CompositeLogger, TerminalLogger, XMLLogger


class EnvDefault(argparse.Action):
    """An argparse action whose default comes from an environment variable."""

    def __init__(self, envvar: str, required: bool = False, default: Any = None,
                 nargs: Any = None, **kwargs: Any) -> None:
        if envvar in os.environ and not default:
            value = os.environ[envvar]
            default = value.split() if nargs in ("*", "+") else value
            kwargs["help"] = kwargs.get("help", "") + f" (default from ${envvar})"
        super().__init__(default=default, required=required and not default, nargs=nargs, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values)


def writeable_dir(arg: str) -> Path:
    path = Path(arg)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a directory")
    if not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path} is not a writeable directory")
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nixos-test-driver")
    p.add_argument("-K", "--keep-vm-state", action="store_true",
                   help="re-use a VM state coming from a previous run")
    p.add_argument("-I", "--interactive", action=argparse.BooleanOptionalAction,
                   help="drop into a python repl and run the tests interactively")
    p.add_argument("--start-scripts", metavar="START-SCRIPT", action=EnvDefault, envvar="startScripts",
                   nargs="*", help="start scripts for participating virtual machines")
    p.add_argument("--vlans", metavar="VLAN", action=EnvDefault, envvar="vlans", nargs="*",
                   help="vlans to span by the driver")
    p.add_argument("--global-timeout", type=int, metavar="GLOBAL_TIMEOUT", action=EnvDefault,
                   envvar="globalTimeout", default=3600, help="timeout in seconds for the whole test")
    p.add_argument("-o", "--output_directory", default=Path.cwd(), type=writeable_dir,
                   help="where outputs (copy_from_vm, screenshots, post-mortems) are placed")
    p.add_argument("--junit-xml", type=Path, help="write a JUnit XML report to this path")
    p.add_argument("--debug-hook-attach", metavar="CMD",
                   help="command a failing test runs so that a person can attach")
    p.add_argument("testscript", action=EnvDefault, envvar="testScript", type=Path,
                   help="the test script to run")
    return p


def _raise_interrupted(signum: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def _print_script_error(exc: BaseException, script: str) -> None:
    """Upstream's style: the traceback limited to the test script's frames, with '!!!'."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == script]
    for frame in frames:
        print(f'!!! File "{frame.filename}", line {frame.lineno}, in {frame.name}', file=sys.stderr)
        if frame.line:
            print(f"!!!     {frame.line}", file=sys.stderr)
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(f"!!! {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    not_yet = [flag for flag, value in (("--interactive", args.interactive), ("--junit-xml", args.junit_xml),
                                        ("--debug-hook-attach", args.debug_hook_attach)) if value]
    if not_yet:
        print(f"nixos-test-driver: {', '.join(not_yet)}: not yet supported", file=sys.stderr)
        sys.exit(2)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)

    logger = CompositeLogger([TerminalLogger()])
    if "LOGFILE" in os.environ:
        logger.add_logger(XMLLogger(os.environ["LOGFILE"]))
    if not args.keep_vm_state:
        logger.info("Machine state will be reset. To keep it, pass --keep-vm-state")
    script = str(args.testscript)
    status = 0
    try:
        try:
            tests = args.testscript.read_text()
        except OSError as exc:
            raise DriverError(f"cannot read the test script: {exc}") from None
        with Driver(args.start_scripts or [], args.vlans or [], tests, args.output_directory.resolve(),
                    logger, args.keep_vm_state, args.global_timeout, test_script_path=script) as driver:
            tic = time.monotonic()
            driver.run_tests()
            logger.info(f"test script finished in {time.monotonic() - tic:.2f}s")
    except DriverError as exc:
        print(f"nixos-test-driver: error: {exc}", file=sys.stderr)
        status = 2
    except TestScriptError as exc:
        _print_script_error(exc, script)
        status = 1
    except KeyboardInterrupt as exc:
        print(f"nixos-test-driver: interrupted ({exc or 'SIGINT'}); machines stopped", file=sys.stderr)
        status = 130
    except Exception as exc:
        traceback.print_exc()
        _print_script_error(exc, script)
        status = 1
    finally:
        logger.close()
    sys.exit(status)


def generate_driver_symbols() -> None:
    """Write the test symbols' names, comma-separated, to ./driver-symbols (for linting)."""
    driver = Driver([], [], "", Path(), CompositeLogger([]))
    try:
        symbols = driver.test_symbols()
    finally:
        driver.cleanup()
    Path("driver-symbols").write_text(",".join(symbols))
