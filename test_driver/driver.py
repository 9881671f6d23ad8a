"""Driver: owns the machines and VLANs of one test run, its symbols and its cleanup."""

from __future__ import annotations

import bdb
import datetime
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import (DriverConfiguration, NspawnMachineConfiguration, QemuMachineConfiguration,
                     load_driver_configuration)  # noqa: F401 (test_driver.driver has it, as upstream)
from .debug import Debug
from .duration import Duration
from .errors import DriverError, MachineCrashed, MachineError, MachineStopped, UnexpectedShutdown
from .logger import AbstractLogger, CompositeLogger, TerminalLogger
from .machine.status import table as status_table
from .machine import BaseMachine, NspawnMachine, PostMortem, QemuMachine
from .machine import Machine, retry  # noqa: F401 (upstream's driver module has them)
from .machine.nspawn_display import NspawnVncConfiguration
from .machine.start_command import StartCommand
from .global_timer import GlobalTimer
from .machine_maker import MachineMaker
from .parallel import run_parallel, start_machines
from . import roster
from .polling_condition import ConditionScope, PollingCondition, polling_interval
from .sandbox import Sandbox
from .script import TestScript, script_symbols
from .script_file import ScriptFile
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
        self.out_dir = Path(out_dir)
        self.logger = logger or CompositeLogger([TerminalLogger()])
        self.debug = debug or Debug(self.logger)
        self._interruptible = False
        self.keep_vm_state = keep_vm_state
        self.global_timeout = global_timeout
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
        if plan is None:  # (a syntax error stops the driver here, before anything starts)
            self.script = TestScript(tests, test_script_path)
            """What ``test_script()`` runs (a redeploy puts another there)."""

        vms = roster.virtual_machines(start_scripts or [], machine_names)
        boxes = roster.containers(container_start_scripts, container_names)
        roster.check_names([(name, command.command) for name, command in vms] + boxes)
        if plan is not None:  # a steps document, checked against the machines before any starts
            kinds: dict[str, type[BaseMachine]] = {name: QemuMachine for name, _ in vms}
            kinds.update({name: NspawnMachine for name, _ in boxes})
            self.script = TestScript(tests, test_script_path, planned=plan(tests, kinds))

        vlan_numbers = roster.vlan_numbers(vlans or [])
        self.config = config or DriverConfiguration(
            vms={name: QemuMachineConfiguration(name, Path(command.command)) for name, command in vms},
            containers={name: NspawnMachineConfiguration(name, Path(script)) for name, script in boxes},
            vlans=vlan_numbers, global_timeout=datetime.timedelta(seconds=global_timeout),
            enable_ssh_backdoor=enable_ssh_backdoor, test_script=Path(test_script_path))
        """The run's configuration in upstream's shape (``driver.config``), whatever the CLI generation."""
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="nixos-test-driver-", dir=tempfile.gettempdir()))
        # Unix socket paths are limited to 107 bytes: with a long TMPDIR the sockets
        # go to a short private directory of their own.
        self.socket_root = self.tmp_dir
        if len(os.fsencode(self.tmp_dir)) > 60:
            self.socket_root = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
        self.sandbox = Sandbox(sorted({self.tmp_dir, self.socket_root}), self.logger)
        self.maker = MachineMaker(self.out_dir, self.tmp_dir, self.socket_root, self.logger, keep_vm_state,
                                  self.sandbox, self.check_polling_conditions, self._on_crash)
        try:
            self.sandbox.start(isolated=bool(boxes))
            with self.logger.nested("start all VLans"):
                self.vlans = [VLan(nr, self.socket_root, self.logger, self.sandbox.wrap) for nr in vlan_numbers]
            self.machines_qemu = [self.maker.vm(command.command, name, self.vlans) for name, command in vms]
            self.machines_nspawn = [self.maker.container(path, name, displays.get(name)) for name, path in boxes]
            self.machines = sorted([*self.machines_qemu, *self.machines_nspawn], key=lambda m: m.name)
        except BaseException:
            self.cleanup()
            raise

    def _every_machine(self) -> list[QemuMachine | NspawnMachine]:
        return [*self.machines, *self.created]

    @property
    def interruptible_commands(self) -> bool:
        """Whether Ctrl-C stops a machine's running command in the guest too (the interactive shell)."""
        return self._interruptible

    @interruptible_commands.setter
    def interruptible_commands(self, value: bool) -> None:
        self._interruptible = value
        for machine in self._every_machine():
            machine.interruptible_commands = value

    def _on_crash(self, machine: QemuMachine | NspawnMachine, post_mortem: PostMortem) -> None:
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

    # --- the script -----------------------------------------------------------------------
    @property
    def tests(self) -> str:
        """The test script's text (upstream's attribute)."""
        return self.script.text

    @property
    def test_script_path(self) -> str:
        return self.script.path

    @property
    def script_file(self) -> ScriptFile | None:
        """The file the script came from, read again at each ``test_script()`` (None: given as text)."""
        return self.script.file

    def test_symbols(self) -> dict[str, Any]:
        """The names a test script sees; like upstream, says on stdout which ones it adds."""
        return script_symbols(self)

    def reload_script(self) -> None:
        """Take the script file's current text (see ``TestScript.reload``)."""
        self.script.reload(self.logger, self.interactive)

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
                self.script.run(self)
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
            start_machines(self.machines)

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
        machine = self.maker.vm(script, name or command.machine_name, self.vlans, keep, allow_reboot,
                                polled=False, interruptible=self._interruptible)
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

