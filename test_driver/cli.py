"""The ``nixos-test-driver`` and ``generate-driver-symbols`` commands."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import interrupt, steps
from .config import load_driver_configuration
from .debug import Debug
from .driver import Driver
from .errors import DriverError, GlobalTimeout, PollingConditionError, TestScriptError
from .logger import AbstractLogger, CompositeLogger, JSONLogger, JUnitLogger, LogLevel, TerminalLogger, XMLLogger
from .interactive import run_shell
from .watch import watch_runs
from .redeploy import Source, print_config
from .report import failure_fields, failure_report


class EnvDefault(argparse.Action):
    """An argparse action whose default comes from an environment variable (of ``environ``)."""

    def __init__(self, envvar: str, environ: Mapping[str, str], required: bool = False, default: Any = None,
                 nargs: Any = None, **kwargs: Any) -> None:
        if envvar in environ and not default:
            value = environ[envvar]
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


CONFIG_ENVIRONMENT = ("logLevel", "htmlReport", "rebuildExe")
"""The variables still read with --config: as upstream's, which reads $logLevel alone of them
(and ours: $htmlReport, $rebuildExe)."""


def parser(environ: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    """The command line of every upstream generation; the older ones' options also come from
    environment variables (``environ``)."""
    p = argparse.ArgumentParser(prog="nixos-test-driver")
    p.register("action", "env", functools.partial(EnvDefault, environ=environ))
    p.add_argument("-K", "--keep-vm-state", "--keep-machine-state", dest="keep_vm_state", action="store_true",
                   help="re-use a VM state coming from a previous run")
    p.add_argument("-I", "--interactive", action=argparse.BooleanOptionalAction,
                   help="drop into a python repl and run the tests interactively")
    p.add_argument("--watch", action="store_true",
                   help="keep the machines after the script ends and run it again whenever its file, or "
                        "a module it imports from its directory, changes (Ctrl-C ends)")
    p.add_argument("--start-scripts", metavar="START-SCRIPT", action="env", envvar="startScripts",
                   nargs="*", help="start scripts for participating virtual machines")
    p.add_argument("--vm-names", metavar="NAME", action="env", envvar="vmNames", nargs="*",
                   help="the names of the machines of --vm-start-scripts, one each")
    p.add_argument("--vm-start-scripts", metavar="START-SCRIPT", action="env", envvar="vmStartScripts",
                   nargs="*", help="start scripts of the virtual machines (the newer spelling of --start-scripts)")
    p.add_argument("--container-names", metavar="NAME", action="env", envvar="containerNames", nargs="*",
                   help="the names of the containers of --container-start-scripts, one each")
    p.add_argument("--container-start-scripts", metavar="START-SCRIPT", action="env",
                   envvar="containerStartScripts", nargs="*",
                   help="start scripts (run-NAME-nspawn) of systemd-nspawn containers")
    p.add_argument("--vlans", metavar="VLAN", action="env", envvar="vlans", nargs="*",
                   help="vlans to span by the driver")
    p.add_argument("--global-timeout", type=int, metavar="GLOBAL_TIMEOUT", action="env",
                   envvar="globalTimeout", help="timeout in seconds for the whole test (default 3600)")
    p.add_argument("-c", "--config", type=Path, metavar="FILE",
                   help="the JSON of nixpkgs' driver-configuration.nix (machines, VLANs, test script)")
    p.add_argument("-o", "--output_directory", default=Path.cwd(), type=writeable_dir,
                   help="where outputs (copy_from_vm, screenshots, post-mortems) are placed")
    p.add_argument("--junit-xml", type=Path, metavar="PATH",
                   help="write a JUnit XML report (relative paths are in the output directory)")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="the log on stderr: coloured text, or one JSON object per line")
    p.add_argument("--json-log", type=Path, metavar="PATH",
                   help="also write the JSON event log to this file (relative: in the output directory)")
    p.add_argument("--html-report", type=Path, metavar="PATH", action="env", envvar="htmlReport",
                   help="write a self-contained HTML page of the run, however it ends (relative: in the "
                        "output directory)")
    p.add_argument("--log-level", choices=[level.name.lower() for level in LogLevel], action="env",
                   envvar="logLevel", default="info", help="the least important messages shown")
    p.add_argument("--dump-vsocks", type=int, metavar="OFFSET",
                   help="print how to reach each machine's ssh backdoor (vsock numbers from OFFSET+1)")
    p.add_argument("--debug-hook-attach", metavar="CMD",
                   help="command a failing test runs so that a person can attach")
    p.add_argument("--rebuild-exe", metavar="EXE", action="env", envvar="rebuildExe",
                   help="interactive rebuild(): the rebuilt driver (./result/bin/nixos-test-driver) whose "
                        "--print-config tells the new configuration")
    p.add_argument("--print-config", action="store_true",
                   help="print the configuration the other arguments name (driver-configuration JSON) and exit")
    p.add_argument("testscript", action="env", envvar="testScript", type=Path, nargs="?",
                   help="the test script to run (unless --config names it)")
    return p


def parse_arguments(argv: list[str] | None, environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    """The arguments; with --config, of the environment only the variables it still reads."""
    args = parser(environ).parse_args(argv)
    if args.config is not None:  # the machines, VLANs and script come from the file alone
        args = parser({k: v for k, v in environ.items() if k in CONFIG_ENVIRONMENT}).parse_args(argv)
    return args


def _raised_by_script(exc: BaseException, script: str) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename == script


def _raised_in_script(exc: BaseException, script: str) -> bool:
    """Whether the script was running when ``exc`` was raised (a call it made)."""
    return any(frame.filename == script for frame in traceback.extract_tb(exc.__traceback__))


@dataclass(frozen=True)
class Run:
    """What to run, from the flags (and their environment variables) or from --config."""

    start_scripts: list[str]
    machine_names: list[str] | None
    vlans: list[int]
    script: Path
    global_timeout: float
    container_start_scripts: list[str]
    container_names: list[str] | None
    enable_ssh_backdoor: bool = False


def what_to_run(args: argparse.Namespace) -> Run:
    timeout = args.global_timeout
    if timeout is not None and timeout <= 0:  # (upstream's ends the test at once: it cannot pass)
        raise DriverError(f"--global-timeout must be a positive number of seconds, not {timeout}")
    if args.config is None:
        if args.testscript is None:
            raise DriverError("no test script: give its path (or $testScript), or --config")
        if args.start_scripts and args.vm_start_scripts:
            raise DriverError("--start-scripts and --vm-start-scripts name the same machines: give one")
        if args.vm_names and not args.vm_start_scripts:
            raise DriverError("--vm-names names the machines of --vm-start-scripts: give those too")
        if args.container_names and not args.container_start_scripts:
            raise DriverError("--container-names names the containers of --container-start-scripts: give those too")
        return Run(args.vm_start_scripts or args.start_scripts or [], args.vm_names or None, args.vlans or [],
                   args.testscript, timeout if timeout is not None else 3600,
                   args.container_start_scripts or [], args.container_names or None)
    given = [flag for flag, value in (("--start-scripts/$startScripts", args.start_scripts),
                                      ("--vm-start-scripts/$vmStartScripts", args.vm_start_scripts),
                                      ("--vm-names/$vmNames", args.vm_names),
                                      ("--container-start-scripts/$containerStartScripts",
                                       args.container_start_scripts),
                                      ("--container-names/$containerNames", args.container_names),
                                      ("--vlans/$vlans", args.vlans),
                                      ("a test script path/$testScript", args.testscript)) if value]
    if given:
        raise DriverError(f"--config names the machines, VLANs and test script: drop {', '.join(given)}")
    config = load_driver_configuration(args.config)
    return Run([str(vm.start_script) for vm in config.vms.values()], list(config.vms), config.vlans,
               config.test_script, timeout if timeout is not None else config.global_timeout.total_seconds(),
               [str(c.start_script) for c in config.containers.values()], list(config.containers),
               config.enable_ssh_backdoor)


def events_file(args: argparse.Namespace, out_dir: Path) -> Path | None:
    """Where the JSON events go: --json-log, or a file of its own that the HTML report is made
    from (removed afterwards); None when neither is asked for."""
    if args.json_log:
        return out_dir / args.json_log
    if args.html_report:
        return out_dir / f".{Path(args.html_report).name}.events.jsonl"
    return None


def file_loggers(args: argparse.Namespace, out_dir: Path) -> list[AbstractLogger]:
    """The logs written to files that the arguments and $LOGFILE ask for (one set per run)."""
    loggers: list[AbstractLogger] = []
    if "LOGFILE" in os.environ:
        loggers.append(XMLLogger(os.environ["LOGFILE"]))
    if args.junit_xml:
        loggers.append(JUnitLogger(out_dir / args.junit_xml))
    events = events_file(args, out_dir)
    if events is not None:
        loggers.append(JSONLogger.to_file(events))
    for logger in loggers:
        logger.set_log_level(LogLevel[args.log_level.upper()])
    return loggers


def make_logger(args: argparse.Namespace, out_dir: Path, files: bool = True) -> CompositeLogger:
    """The terminal's log and (``files``) the logs to files."""
    terminal = JSONLogger(sys.stderr) if args.log_format == "json" else TerminalLogger()
    logger = CompositeLogger([terminal, *(file_loggers(args, out_dir) if files else [])])
    logger.set_log_level(LogLevel[args.log_level.upper()])
    return logger


def main(argv: list[str] | None = None) -> None:
    environ, cwd = dict(os.environ), os.getcwd()
    args = parse_arguments(argv, environ)
    if args.print_config:
        try:
            print_config(what_to_run(args))
        except DriverError as exc:
            print(f"nixos-test-driver: error: {exc}", file=sys.stderr)
            sys.exit(2)
        sys.exit(0)
    interrupt.install()  # Ctrl-C, SIGTERM, SIGHUP: KeyboardInterrupt, never inside a lock

    out_dir = args.output_directory.resolve()
    if args.watch and args.interactive:
        print("nixos-test-driver: error: --watch and --interactive: give one", file=sys.stderr)
        sys.exit(2)
    try:
        logger = make_logger(args, out_dir, files=not args.watch)
    except OSError as exc:
        print(f"nixos-test-driver: error: cannot open a log file: {exc}", file=sys.stderr)
        sys.exit(2)
    if not args.keep_vm_state:
        logger.info("Machine state will be reset. To keep it, pass --keep-machine-state")
    script = str(args.testscript)
    driver: Driver | None = None
    failure: BaseException | None = None
    bad_input: str | None = None
    killed_by: int | None = None
    status = 0
    watching = False  # each run of --watch writes its own logs and report
    try:
        run = what_to_run(args)
        script = str(run.script)
        try:
            tests = run.script.read_text()
        except OSError as exc:
            raise DriverError(f"cannot read the test script: {exc}") from None
        driver = Driver(run.start_scripts, run.vlans, tests, out_dir, logger, args.keep_vm_state,
                        run.global_timeout, test_script_path=script,
                        debug=Debug(logger, args.debug_hook_attach), machine_names=run.machine_names,
                        container_start_scripts=run.container_start_scripts, container_names=run.container_names,
                        plan=steps.plan if steps.is_steps_document(tests) else None,
                        enable_ssh_backdoor=run.enable_ssh_backdoor)
        if args.watch and driver.script_file is None:
            raise DriverError(f"--watch runs a Python test script from its file; {script} is a steps document")
        if not args.watch:
            logger.event("run-start", script=script, source=tests, machines=[m.name for m in driver.machines],
                         global_timeout=run.global_timeout)
        driver.interactive = bool(args.interactive)
        with driver:
            if args.dump_vsocks is not None:
                driver.dump_machine_ssh(args.dump_vsocks)
            if args.watch:
                watching = True
                driver.interruptible_commands = True  # a run's end stops its command in the guest too
                status = watch_runs(driver, logger, functools.partial(watched_run, args, driver, logger, out_dir))
            elif args.interactive:
                run_shell(driver, logger, Source(sys.argv[1:] if argv is None else argv, environ, cwd,
                                                 args.rebuild_exe))
            else:
                tic = time.monotonic()
                driver.run_tests()
                logger.info(f"test script finished in {time.monotonic() - tic:.2f}s")
    except DriverError as exc:
        if _raised_in_script(exc, script):  # the script's own mistake: a test failure, as upstream
            failure, status = exc, 1
        else:
            logger.log_test_error(f"nixos-test-driver: error: {exc}")
            bad_input, status = str(exc), 2
    except KeyboardInterrupt as exc:
        # The driver then dies by the signal, as upstream's (which handles none of them): a
        # shell sees SIGINT 130, SIGTERM 143, SIGHUP 129. Ours stops the machines and closes
        # the logs first.
        killed_by = getattr(exc, "signum", signal.SIGINT)
        status = 128 + killed_by
        if driver is not None and driver.timed_out:  # the global timeout's SIGTERM
            failure = GlobalTimeout(driver.timed_out).with_traceback(exc.__traceback__)
        else:
            logger.log_test_error(f"interrupted ({exc or 'SIGINT'}); machines stopped")
    except Exception as exc:
        if not isinstance(exc, (TestScriptError, PollingConditionError)) and not _raised_by_script(exc, script):
            logger.report_error("".join(traceback.format_exception(exc)).rstrip())  # a bug of the driver
        failure = exc
        status = 1
    finally:
        if not watching:
            end_run(driver, logger, script, status, failure, bad_input)
        logger.close()
        if args.html_report and not watching:
            make_report(args, out_dir)
    if killed_by is not None:
        interrupt.die_by(killed_by)
    sys.exit(status)


def end_run(driver: Driver | None, logger: CompositeLogger, script: str, status: int,
            failure: BaseException | None, bad_input: str | None = None) -> None:
    """Say why the run failed, and end its events."""
    fields: dict[str, object] = {}
    if failure is not None:
        subtest, machines = (driver.failed_subtest, driver.machines) if driver else (None, [])
        for line in failure_report(failure, script, subtest, machines):
            logger.log_test_error(line)
        fields = failure_fields(failure, script, subtest, machines)
    elif bad_input is not None:
        fields = {"error_type": "DriverError", "error": bad_input}
    logger.event("run-end", status=status, verdict=verdict(status, driver), **fields,
                 post_mortems=[pm.summary() for pm in driver.crashes] if driver else [])


def watched_run(args: argparse.Namespace, driver: Driver, logger: CompositeLogger, out_dir: Path,
                number: int) -> BaseException | None:
    """One run of ``--watch``, with logs and a report of its own: what made it fail, or None."""
    own = file_loggers(args, out_dir)
    for each in own:
        logger.add_logger(each)
    script = driver.test_script_path
    failure: BaseException | None = None
    status = 130
    driver.crashes.clear()
    try:
        logger.event("run-start", script=script, source=driver.tests, machines=[m.name for m in driver.machines],
                     global_timeout=driver.global_timeout, watch_run=number)
        try:
            driver.run_tests()
            status = 0
        except KeyboardInterrupt as exc:
            if not driver.timed_out:
                raise
            failure, status = GlobalTimeout(driver.timed_out).with_traceback(exc.__traceback__), 1
            driver.timeout_handled()
        except Exception as exc:  # the script's failure, a syntax error in the edited file, ...
            if not isinstance(exc, (TestScriptError, PollingConditionError, DriverError)) and \
                    not _raised_by_script(exc, script):
                logger.report_error("".join(traceback.format_exception(exc)).rstrip())  # a bug of the driver
            failure, status = exc, 1
        return failure
    finally:
        end_run(driver, logger, script, status, failure)
        for each in own:
            logger.remove_logger(each)
            each.close()
        if args.html_report:
            make_report(args, out_dir)


def announce_to_hydra(page: Path, out_dir: Path) -> None:
    """In a Nix build whose output is the output directory, list the page as a build product
    (nix-support/hydra-build-products), so Hydra links it."""
    out = os.environ.get("out")
    if not os.environ.get("NIX_BUILD_TOP") or not out or Path(out).resolve() != out_dir:
        return
    products = out_dir / "nix-support" / "hydra-build-products"
    line = f"report test-report {page}\n"
    products.parent.mkdir(exist_ok=True)
    if line not in (products.read_text() if products.exists() else ""):
        with open(products, "a") as stream:
            stream.write(line)


def verdict(status: int, driver: Driver | None) -> str:
    if status == 0:
        return "passed"
    if driver is not None and driver.timed_out:
        return "timed out"
    if status > 128:
        return "interrupted"
    return "error" if status == 2 else "failed"


def make_report(args: argparse.Namespace, out_dir: Path) -> None:
    """Render the HTML report from the events; a failure to do so is said, never raised."""
    from .html_report import write_report  # jinja2 is loaded only when a report is asked for

    events = events_file(args, out_dir)
    assert events is not None
    page = out_dir / args.html_report
    try:
        write_report(events, page, out_dir)
        announce_to_hydra(page, out_dir)
    except Exception as exc:  # the run's own status stands
        print(f"nixos-test-driver: cannot write the HTML report: {exc}", file=sys.stderr)
    finally:
        if not args.json_log:
            events.unlink(missing_ok=True)


def generate_driver_symbols() -> None:
    """Write the test symbols' names, comma-separated, to ./driver-symbols (for linting)."""
    driver = Driver([], [], "", Path(), CompositeLogger([]))
    try:
        symbols = driver.test_symbols()
    finally:
        driver.cleanup()
    Path("driver-symbols").write_text(",".join(symbols))
