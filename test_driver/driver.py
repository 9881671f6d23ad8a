"""Driver: owns the machines and VLANs of one test run, its symbols and its cleanup."""

from __future__ import annotations

import bdb
import datetime
import linecache
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from types import CodeType
from typing import Any, Callable, Iterator

from .assertions import AssertionTester, must_raise
from .config import (DriverConfiguration, NspawnMachineConfiguration, QemuMachineConfiguration,
                     load_driver_configuration)  # noqa: F401 (test_driver.driver has it, as upstream)
from .debug import Debug
from .duration import Duration
from .errors import DriverError, MachineCrashed, MachineError, MachineStopped, UnexpectedShutdown
from .logger import AbstractLogger, CompositeLogger, TerminalLogger
from .machine.status import table as status_table
from .machine import BaseMachine, Machine, MachineDeprecationWrapper, NspawnMachine, PostMortem, QemuMachine, retry
from .machine.deprecation import alias_warning
from .machine.nspawn_display import NspawnVncConfiguration
from .machine.start_command import StartCommand
from .global_timer import GlobalTimer
from .parallel import run_parallel
from . import roster
from .polling_condition import ConditionScope, PollingCondition, polling_interval
from .sandbox import Sandbox
from .script_file import ScriptFile
from .typecheck import pythonize as pythonize_name
from .vlan import VLan


class Driver:
    """Sets up the machines and VLANs of a test, runs its script, and always cleans up."""

    def __init__(self, start_scripts: list[str] | DriverConfiguration = [], vlans: list[int] = [],
                 tests: str = "", out_dir: Path | None = None,
                 logger: AbstractLogger | None = None, keep_vm_state: bool = False,
                 global_timeout: int | float = 24 * 60 * 60, test_script_path: str = "<testScript>",
                 debug: Debug | None = None, machine_names: list[str] | None = None,
                 container_start_scripts: list[str] = [], container_names: list[str] | None = None,
                 plan: Callable[[str, dict[str, type[BaseMachine]]], Callable[[Driver], None]] | None = None,
                 enable_ssh_backdoor: bool = False, *, config: DriverConfiguration | None = None,
                 keep_machine_state: bool | None = None, interactive: bool = False) -> None:
        """``machine_names``, when given, name the machines of ``start_scripts`` one to one
        (nixpkgs' ``--config`` does); otherwise each name comes from its script's ``run-NAME-vm``.
        Containers likewise: ``container_start_scripts`` (``run-NAME-nspawn``), ``container_names``.
        ``tests`` is Python, unless ``plan`` is given: then ``plan(tests, {name: machine class})``
        checks it against the machines before anything starts and returns what the script does.

        Or upstream's newest form, ``Driver(config, out_dir, logger, keep_machine_state=...,
        debug=..., interactive=...)``: machines, VLANs and script from a ``DriverConfiguration``
        (``load_driver_configuration``); ``interactive`` shows containers' displays (``vnc``)."""
        if isinstance(start_scripts, DriverConfiguration):  # upstream's positional (config, out_dir, logger)
            config, start_scripts, out_dir, logger = start_scripts, [], out_dir or vlans, logger or tests  # type: ignore
        displays: dict[str, NspawnVncConfiguration | None] = {}
        if config is not None:
            start_scripts, machine_names = [str(vm.start_script) for vm in config.vms.values()], list(config.vms)
            container_start_scripts = [str(box.start_script) for box in config.containers.values()]
            container_names, vlans = list(config.containers), config.vlans
            tests, test_script_path = config.test_script.read_text(), str(config.test_script)
            global_timeout, enable_ssh_backdoor = config.global_timeout.total_seconds(), config.enable_ssh_backdoor
            displays = {name: box.vnc for name, box in config.containers.items() if interactive}
        if out_dir is None:
            raise DriverError("Driver needs out_dir, the directory for screenshots and logs")
        keep_vm_state = keep_vm_state if keep_machine_state is None else keep_machine_state
        self.tests = tests
        self.out_dir = Path(out_dir)
        self.logger = logger or CompositeLogger([TerminalLogger()])
        self.debug = debug or Debug(self.logger)
        self._interruptible = False
        self.keep_vm_state = keep_vm_state
        self.global_timeout = global_timeout
        self.test_script_path = test_script_path
        self.polling_conditions: list[PollingCondition] = []
        self.subtests: list[str] = []
        self.failed_subtest: list[str] | None = None
        """The path to the innermost subtest that raised, for the failure summary."""
        self.crashes: list[PostMortem] = []
        self.machines_qemu: list[QemuMachine] = []
        self.machines_nspawn: list[NspawnMachine] = []
        self.machines: list[QemuMachine | NspawnMachine] = []
        """Every machine, sorted by name as upstream (start_all, join_all and cleanup go in this order)."""
        self.created: list[QemuMachine] = []
        """Machines made by ``create_machine``: as upstream, not in ``machines``; ours still stops them."""
        self.vsock_offset: int | None = None
        """The vsock numbers of the machines' ssh backdoor start after this (``--dump-vsocks``)."""
        self.vlans: list[VLan] = []
        self.timer = GlobalTimer(self.logger, self.describe_activity, self._release_all)
        self.interactive = interactive
        """Whether the run is ``--interactive`` (upstream's attribute)."""
        self.code: CodeType | None = None if plan is not None else self._compile(tests)
        self.script_file = ScriptFile.of(test_script_path, tests) if plan is None else None
        """The file the script came from, read again at each ``test_script()`` (None: given as text)."""
        self.planned: Callable[[Driver], None] | None = None
        """What ``test_script`` runs instead of Python: the plan made of a steps document."""

        vms = roster.virtual_machines(start_scripts or [], machine_names)
        boxes = roster.containers(container_start_scripts, container_names)
        roster.check_names([(name, command.command) for name, command in vms] + boxes)
        if plan is not None:  # a steps document, checked against the machines before any starts
            kinds: dict[str, type[BaseMachine]] = {name: QemuMachine for name, _ in vms}
            kinds.update({name: NspawnMachine for name, _ in boxes})
            self.planned = plan(tests, kinds)

        vlan_numbers = roster.vlan_numbers(vlans or [])
        self.config = config or DriverConfiguration(
            vms={name: QemuMachineConfiguration(name, Path(command.command)) for name, command in vms},
            containers={name: NspawnMachineConfiguration(name, Path(script)) for name, script in boxes},
            vlans=vlan_numbers, global_timeout=datetime.timedelta(seconds=global_timeout),
            enable_ssh_backdoor=enable_ssh_backdoor, test_script=Path(test_script_path))
        """The run's configuration in upstream's shape (``driver.config``), whatever the CLI generation."""
        self.base_tmp = Path(tempfile.gettempdir())
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="nixos-test-driver-", dir=self.base_tmp))
        # Unix socket paths are limited to 107 bytes: with a long TMPDIR the sockets
        # go to a short private directory of their own.
        self.socket_root = self.tmp_dir
        if len(os.fsencode(self.tmp_dir)) > 60:
            self.socket_root = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
        self.sandbox = Sandbox(sorted({self.tmp_dir, self.socket_root}), self.logger)
        try:
            self.sandbox.start(isolated=bool(boxes))
            with self.logger.nested("start all VLans"):
                self.vlans = [VLan(nr, self.socket_root, self.logger, self.sandbox.wrap) for nr in vlan_numbers]
            self.machines_qemu = [self._new_machine(command.command, name) for name, command in vms]
            self.machines_nspawn = [self._new_container(script, name, displays.get(name)) for name, script in boxes]
            self.machines = sorted([*self.machines_qemu, *self.machines_nspawn], key=lambda m: m.name)
        except BaseException:
            self.cleanup()
            raise

    def _new_container(self, start_command: str, name: str,
                       vnc: NspawnVncConfiguration | None = None) -> NspawnMachine:
        keep = self.keep_vm_state
        machine = NspawnMachine(out_dir=self.out_dir, tmp_dir=self.tmp_dir, start_command=start_command,
                                logger=self.logger, name=name, keep_machine_state=keep,
                                callbacks=[self.check_polling_conditions], state_dir=self._kept_state(name, keep),
                                vnc=vnc, socket_dir=self.socket_root / name)
        machine.crash_listeners.append(self._on_crash)
        machine.sandbox = self.sandbox
        return machine

    def _compile(self, tests: str, path: str | None = None) -> CodeType:
        """``tests`` as code (from ``path``, by default the test script's)."""
        path = path or self.test_script_path
        # Tracebacks show the script's lines even when it was given as a string.
        linecache.cache[path] = (len(tests), None, tests.splitlines(True), path)
        try:
            return compile(tests, path, "exec")
        except SyntaxError as exc:
            raise DriverError(f"syntax error in the test script {exc.filename}, line {exc.lineno}: "
                              f"{exc.msg}\n    {(exc.text or '').rstrip()}") from None

    def _kept_state(self, name: str, keep: bool) -> Path | None:
        """Kept state must be found again by the next run, so it lives at upstream's path;
        as upstream, a run without -K resets it (the machine then uses the private dir)."""
        kept = self.base_tmp / f"vm-state-{name}"
        if keep:
            return kept
        if kept.exists():
            shutil.rmtree(kept)
        return None

    def _every_machine(self) -> list[QemuMachine | NspawnMachine]:
        return [*self.machines, *self.created]

    def _new_machine(self, start_command: str, name: str, keep_vm_state: bool | None = None,
                     allow_reboot: bool = False, polled: bool = True) -> QemuMachine:
        keep = self.keep_vm_state if keep_vm_state is None else keep_vm_state
        socket_dir = self.socket_root / name
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        machine = QemuMachine(
            out_dir=self.out_dir, tmp_dir=self.tmp_dir, start_command=start_command,
            logger=self.logger, name=name, keep_machine_state=keep,
            callbacks=[self.check_polling_conditions] if polled else [], allow_reboot=allow_reboot,
            state_dir=self._kept_state(name, keep),
            socket_dir=socket_dir)
        for vlan in self.vlans:
            machine.extra_env.update(vlan.env)
        machine.crash_listeners.append(self._on_crash)
        machine.interruptible_commands = self._interruptible
        return machine

    @property
    def interruptible_commands(self) -> bool:
        """Whether Ctrl-C stops a machine's running command in the guest too (the interactive shell)."""
        return self._interruptible

    @interruptible_commands.setter
    def interruptible_commands(self, value: bool) -> None:
        self._interruptible = value
        for machine in self._every_machine():
            machine.interruptible_commands = value

    def _on_crash(self, machine: QemuMachine, post_mortem: PostMortem) -> None:
        """A supervisor reports a crash (from its own thread)."""
        self.crashes.append(post_mortem)
        self.logger.warning(f"machine {machine.name!r} {post_mortem.cause}")

    def __enter__(self) -> "Driver":
        return self

    def __exit__(self, *_: Any) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Stop every machine and switch, remove the private directory. Idempotent."""
        with self.logger.nested("cleanup"):
            threads = [threading.Thread(target=m.release) for m in self._every_machine()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for vlan in self.vlans:
                vlan.stop()
            self.sandbox.stop()
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            shutil.rmtree(self.socket_root, ignore_errors=True)

    # --- test symbols -------------------------------------------------------------------
    def test_symbols(self) -> dict[str, Any]:
        """The names a test script sees; like upstream, says on stdout which ones it adds."""
        general = dict(
            start_all=self.start_all, test_script=self.test_script, machines=self.machines,
            machines_qemu=self.machines_qemu, machines_nspawn=self.machines_nspawn, NspawnMachine=NspawnMachine,
            vlans=self.vlans, driver=self, log=self.logger, os=os,
            create_machine=self.create_machine, subtest=self.subtest, run_tests=self.run_tests,
            join_all=self.join_all, retry=retry, serial_stdout_off=self.serial_stdout_off,
            serial_stdout_on=self.serial_stdout_on, polling_condition=self.polling_condition,
            debug=self.debug, breakpoint=self.debug.script_breakpoint, parallel=self.parallel,
            t=AssertionTester(), must_raise=must_raise, dump_machine_ssh=self.dump_machine_ssh,
            Machine=Machine, QemuMachine=QemuMachine, BaseMachine=BaseMachine, status=self.status,
        )
        machines: dict[str, Any] = {pythonize_name(m.name): m for m in self.machines}  # a-b is a_b
        if len(self.machines) == 1 and "machine" not in machines:  # as upstream: warns at each use
            only = self.machines[0]
            machines["machine"] = MachineDeprecationWrapper(alias_warning(only.name), only)
        vlans = {f"vlan{v.nr}": v for v in self.vlans}
        print("additionally exposed symbols:\n    " + ",\n    ".join([
            ", ".join(m.name for m in self.machines), ", ".join(vlans), ", ".join(general)]), flush=True)
        return {**general, **machines, **vlans}

    def reload_script(self) -> None:
        """Take the script file's current text, and drop the local modules it imports when
        one of them changed (the script's imports then load them afresh)."""
        if self.script_file is None:
            if self.interactive:
                kind = "a steps document" if self.planned is not None else "text, not a file"
                self.logger.info(f"the test script was given as {kind}: there is no file to read again")
            return
        changed = self.script_file.changed_modules()
        if changed:
            dropped = self.script_file.forget_modules()
            self.logger.info(f"{', '.join(changed)} changed: the script imports {', '.join(dropped)} afresh")
        text = self.script_file.reread()
        if text is None:
            return
        self.logger.info(f"{self.test_script_path} changed since the last run: running its current text")
        try:
            self.code = self._compile(text)
        except DriverError:
            self.script_file.text = self.tests  # still the old one: the next call reads the file again
            raise
        self.tests = text

    def accept_stopped_machines(self) -> None:
        """Take the crashes and unasked shutdowns of the last run as over: such a machine
        starts again when next used (``--watch``, between runs)."""
        for machine in self._every_machine():
            if isinstance(machine.stopped, (MachineCrashed, UnexpectedShutdown)) and not machine.is_up():
                machine.wait_for_shutdown()

    def test_script(self) -> None:
        """Run the test script: the current text of its file (see ``reload_script``)."""
        self.reload_script()
        with self.logger.nested("run the VM test script"):
            try:
                if self.planned is not None:
                    self.planned(self)
                elif self.code is not None:
                    try:
                        exec(self.code, self.test_symbols(), None)
                    finally:
                        if self.script_file is not None:
                            self.script_file.note_modules()
            except Exception as exc:
                # As upstream: a MachineError (a start, OCR or a tool failed) ends the test at
                # once; any other failure waits for the debug hook.  A crash is one of those
                # others (upstream's connection to a dead machine breaks).
                if not isinstance(exc, bdb.BdbQuit) and \
                        (not isinstance(exc, MachineError) or isinstance(exc, MachineStopped)):
                    self.debug.on_failure(exc, self.test_script_path)
                raise

    def run_tests(self) -> None:
        """Run the test script under the global timeout, then sync every running machine."""
        self.timer.start(self.global_timeout)
        try:
            self.test_script()
            for machine in self.machines:
                if machine.is_up():
                    machine.execute("sync")
        finally:
            self.timer.cancel()

    @property
    def keep_machine_state(self) -> bool:
        """Upstream's name of ``keep_vm_state``."""
        return self.keep_vm_state

    @property
    def race_timer(self) -> threading.Timer | None:
        """The global timeout's timer (upstream's attribute), once ``run_tests`` started it."""
        return self.timer.timer

    @property
    def timed_out(self) -> str | None:
        """Set when the global timeout fired: what was running then."""
        return self.timer.timed_out

    def timeout_handled(self) -> None:
        """The run that the global timeout ended is over, and the driver goes on (``--watch``)."""
        self.timer.handled()

    def terminate_test(self) -> None:
        """The global timeout (``GlobalTimer.expire``): say what was running, end the driver by SIGTERM."""
        self.timer.expire(self.global_timeout)

    def _release_all(self) -> None:
        for machine in self._every_machine():
            machine.release()

    def status(self) -> None:
        """Print what every machine is doing now, a row each (``machine.status()``): also
        from the shell while a command runs in another thread."""
        print(status_table([machine.status() for machine in self._every_machine()]), flush=True)

    def describe_activity(self) -> str:
        """What the test is doing now: the subtest, each machine's running command, and
        the machines still booting (started, no backdoor yet)."""
        parts = [f"subtest {self.subtests[-1]!r}"] if self.subtests else []
        for m in self._every_machine():
            if m.running_command:
                parts.append(f"{m.name}: `{m.running_command}`")
            elif m.booted and not m.is_up():
                parts.append(f"{m.name}: booting (no backdoor yet)")
        return "; ".join(parts) or "the test script (no machine command running)"

    def start_all(self) -> None:
        """Start every machine at once; return when each one runs (its QEMU answers), not
        when its guest has booted: each machine's first command waits for its backdoor,
        so a script can still talk to a guest's console while it boots.

        If any fail to start, raise one ``MachineError`` once all have tried, as upstream:
        ``Failed to start the following machines:`` then ``NAME: ERROR`` per failed machine
        (in name order).  It carries the traceback of the first failure and is caused by it.
        """
        with self.logger.nested("start all VMs"):
            errors: dict[str, BaseException] = {}

            def start(machine: QemuMachine | NspawnMachine) -> None:
                try:
                    machine.start()
                except BaseException as exc:  # reported in the caller's thread
                    errors[machine.name] = exc

            threads = [threading.Thread(target=start, args=(m,), name=f"start-{m.name}") for m in self.machines]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            failed = [(m.name, errors[m.name]) for m in self.machines if m.name in errors]
            if not failed:
                return
            for _, exc in failed:
                if not isinstance(exc, Exception):  # e.g. KeyboardInterrupt: not a start failure
                    raise exc
            first = failed[0][1]
            lines = [f"{name}: {exc}" for name, exc in failed]
            error = MachineError("Failed to start the following machines:\n" + "\n".join(lines))
            raise error.with_traceback(first.__traceback__) from first

    def join_all(self) -> None:
        """Wait until every machine has shut down; the global timeout ends with it."""
        with self.logger.nested("wait for all VMs to finish"):
            for machine in self.machines:
                machine.wait_for_shutdown()
            self.timer.cancel()

    def dump_machine_ssh(self, offset: int | None = None) -> None:
        """Print how to reach each machine through its ssh backdoor (``--dump-vsocks OFFSET``):
        VMs by vsock number ``OFFSET + 1``, ``+ 2``... in name order, as nixpkgs numbers them.

        Also a test symbol, called without ``offset`` as upstream's is: then it uses the
        offset the driver was given, and prints nothing when it was given none (as
        upstream's prints nothing when the ssh backdoor is off)."""
        if offset is None:
            offset = self.vsock_offset
            if offset is None:
                return
        self.vsock_offset = offset
        width = max((len(m.name) for m in self.machines), default=0)
        self.logger.info("SSH backdoor enabled, the machines can be reached like this:")
        for index, machine in enumerate(self.machines, start=offset + 1):
            self.logger.info(f"    {machine.name.ljust(width)}  {machine.ssh_backdoor_command(index)}")

    def parallel(self, *calls: Callable[[], Any]) -> list[Any]:
        """Run independent calls (e.g. ``lambda: a.wait_for_unit("x")`` per machine) at the same
        time and wait for all; return their results in order.

        Calls on one machine still run one command at a time.  If any call fails, the
        first failure is raised once every call has ended, with a note naming its
        machine and how the other calls ended.
        """
        return run_parallel(calls, self.logger)

    @contextmanager
    def subtest(self, name: str) -> Iterator[None]:
        """Group the log lines of a part of the test under ``name``."""
        self.subtests.append(name)
        try:
            with self.logger.subtest(name):
                try:
                    yield
                except Exception as exc:  # as upstream's: sys.exit() in a subtest fails nothing
                    self._note_failed_subtest()
                    self.logger.report_error(f'Test "{name}" failed with error: "{exc}"')
                    raise
                except KeyboardInterrupt:  # where a signal or the global timeout found the test
                    self._note_failed_subtest()
                    raise
        finally:
            self.subtests.pop()

    def _note_failed_subtest(self) -> None:
        if self.failed_subtest is None:
            self.failed_subtest = list(self.subtests)

    def create_machine(self, start_command: str | dict[str, Any], *, name: str | None = None,
                       keep_vm_state: bool = False, keep_machine_state: bool | None = None,
                       allow_reboot: bool = False) -> QemuMachine:
        """Make one more machine from a start script (or legacy ``{"startCommand": ...}`` dict).
        As upstream's, it is not started, not added to ``machines`` and not guarded by polling
        conditions; unlike upstream's, it is still stopped when the test ends."""
        if isinstance(start_command, dict):
            args = start_command
            script: str = args["startCommand"]
            name = args.get("name", name)
            keep_vm_state = args.get("keep_vm_state", keep_vm_state)
            allow_reboot = args.get("allow_reboot", allow_reboot)
        else:
            script = start_command
        command = StartCommand(script)
        command.validate()
        keep = keep_machine_state if keep_machine_state is not None else keep_vm_state
        machine = self._new_machine(script, name or command.machine_name, keep, allow_reboot, polled=False)
        self.created.append(machine)
        return machine

    def serial_stdout_on(self) -> None:
        """Print the machines' serial output on the terminal (the default)."""
        self.logger.print_serial_logs(True)

    def serial_stdout_off(self) -> None:
        """Stop printing serial output on the terminal (the XML log keeps it)."""
        self.logger.print_serial_logs(False)

    def check_polling_conditions(self) -> None:
        for condition in self.polling_conditions:
            condition.maybe_raise()

    def polling_condition(self, fun_: Callable[[], Any] | None = None, *,
                          seconds_interval: Duration | None = None, interval: datetime.timedelta | None = None,
                          description: str | None = None) -> Any:
        """Decorator: a condition checked before every machine command while active
        (``with cond:``), at most once per ``interval`` (a timedelta; or the older
        ``seconds_interval``, in seconds or a timedelta; not both; 2 s by default).
        ``cond.wait(timeout=...)`` (or ``timeout_seconds=``) waits until it holds."""
        every = polling_interval(seconds_interval, interval, "polling_condition()")

        def scope(fun: Callable[[], Any]) -> ConditionScope:
            return ConditionScope(PollingCondition(fun, self.logger, description=description, interval=every),
                                  self.polling_conditions, self.logger)
        return scope if fun_ is None else scope(fun_)

