"""``rebuild(cmd)`` in the interactive shell: rebuild the test, then carry its changes over.

As nixpkgs' ``rebuild`` (interactive-redeploy.nix), a person changes a test, calls
``rebuild("nix-build . -A nixosTests.foo.driverInteractive")`` and goes on with the
machines of the new build, without leaving the shell:

1. the shell command runs (``/bin/sh -c``; its output goes to stderr);
2. the new configuration is read: from ``exe --print-config`` when an executable is
   named (``rebuild(cmd, exe=...)`` or the driver's ``--rebuild-exe``), which is how a
   rebuilt wrapper (``./result/bin/nixos-test-driver``) tells its ``--config`` file or its
   flags and environment variables; otherwise from the same sources as at start, read
   again: the ``--config`` path (a ``result`` symlink in it is followed anew), or the
   flags and environment variables the driver was started with;
3. within the log block "updating machines": new VLANs start; a machine whose start
   script changed (another file, or other contents) is stopped and replaced by one from
   the new script; a machine no longer in the test is stopped and dropped; a new one is
   added; VLANs no longer in the test are stopped; the new test script becomes what
   ``test_script()`` runs.  New and replaced machines are not started: ``start_all()`` (or
   ``NAME.start()``) starts them.  The shell's names follow: ``dud`` is gone once ``dud``
   is, a new machine has its name.

Nothing changes before the whole new configuration has been read and checked: a
failing command, a missing or invalid configuration, a start script that cannot run
or a test script that does not compile raise ``RebuildError`` naming the mistake, and
the machines run on as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import roster, steps
from .config import DriverConfiguration, NspawnMachineConfiguration, QemuMachineConfiguration, \
    load_driver_configuration
from .driver import Driver
from .errors import DriverError, MachineError
from .machine import BaseMachine, NspawnMachine, QemuMachine
from .machine.deprecation import MachineDeprecationWrapper
from .machine.nspawn import machine_name_from_start_command
from .machine.start_command import StartCommand
from .script import TestScript
from .typecheck import pythonize
from .vlan import VLan

if TYPE_CHECKING:

    from .cli import Run

CONFIGURATION_VARIABLES = ("startScripts", "vmNames", "vmStartScripts", "containerNames",
                           "containerStartScripts", "vlans", "testScript", "globalTimeout", "rebuildExe")
"""The environment variables that name a run's machines, VLANs and script: a rebuilt wrapper
is run without ours, so that only its own count."""


class RebuildError(DriverError):
    """``rebuild()`` could not carry the new build over; the machines run on as they were."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: nothing, the log has said what went wrong."""
        return []


@dataclass(frozen=True)
class Source:
    """Where the driver's configuration came from when it started: read again by ``rebuild``."""

    argv: list[str]
    """The command line, as given."""
    environ: dict[str, str]
    """The environment at start (before the VLANs added their sockets to it)."""
    cwd: str
    """The working directory at start: relative paths of ``argv`` and ``environ`` are from here."""
    exe: str | None = None
    """``--rebuild-exe``: the driver executable whose ``--print-config`` tells the rebuilt configuration."""


@dataclass(frozen=True)
class Identity:
    """What a start script is: its real path and a digest of its contents."""

    path: str
    digest: str

    @classmethod
    def of(cls, script: Path | str) -> "Identity":
        real = os.path.realpath(script)
        try:
            digest = hashlib.sha256(Path(real).read_bytes()).hexdigest()
        except OSError:
            digest = ""
        return cls(real, digest)


@dataclass
class Wanted:
    """The new configuration, read and checked: nothing of it runs yet."""

    config: DriverConfiguration
    test_script: TestScript
    origin: str
    kinds: dict[str, type[BaseMachine]] = field(default_factory=dict)

    def start_script(self, name: str) -> str:
        table = self.config.vms if self.kinds[name] is QemuMachine else self.config.containers
        return str(table[name].start_script)


def configuration_json(run: Run) -> dict[str, Any]:
    """A run's configuration in the shape of nixpkgs' driver-configuration.json (``--print-config``):
    paths absolute, every machine named."""
    vm_names = run.machine_names or [StartCommand(s).machine_name for s in run.start_scripts]
    try:
        container_names = run.container_names or [machine_name_from_start_command(s)
                                                  for s in run.container_start_scripts]
    except MachineError as exc:
        raise DriverError(str(exc)) from None

    def table(names: list[str], scripts: list[str]) -> dict[str, dict[str, str]]:
        return {n: {"name": n, "start_script": os.path.abspath(s)} for n, s in zip(names, scripts)}

    return {"vms": table(vm_names, run.start_scripts),
            "containers": table(container_names, run.container_start_scripts),
            "vlans": roster.vlan_numbers(run.vlans), "test_script": os.path.abspath(run.script),
            "global_timeout": run.global_timeout, "enable_ssh_backdoor": run.enable_ssh_backdoor}


def print_config(run: Run) -> None:
    """``--print-config``: the configuration the arguments name, as JSON on stdout."""
    json.dump(configuration_json(run), sys.stdout, indent=2)
    sys.stdout.write("\n")


def _absolute(path: str, cwd: str) -> str:
    """``path`` from ``cwd``, its symlinks kept (a ``result`` link is followed anew at each read):
    only ``.`` components go, as ``link/..`` need not be the link's own folder."""
    joined = os.path.join(cwd, os.path.expanduser(path))
    return "/".join(part for i, part in enumerate(joined.split("/")) if part != "." or i == 0) or "/"


def _from_start(source: Source) -> tuple[DriverConfiguration, str]:
    """The configuration named by the arguments and environment the driver started with."""
    from .cli import parse_arguments, what_to_run  # the CLI imports the shell, which imports this

    try:
        args = parse_arguments(source.argv, source.environ)
    except SystemExit:  # (argparse has said why on stderr)
        raise RebuildError("the driver's own command line no longer parses") from None
    fixes: dict[str, Any] = {}
    for name in ("start_scripts", "vm_start_scripts", "container_start_scripts"):
        if getattr(args, name):
            fixes[name] = [_absolute(p, source.cwd) for p in getattr(args, name)]
    for name in ("config", "testscript"):
        if getattr(args, name) is not None:
            fixes[name] = Path(_absolute(str(getattr(args, name)), source.cwd))
    args = argparse.Namespace(**{**vars(args), **fixes})
    origin = f"{args.config}" if args.config is not None else "the driver's flags and environment variables"
    return _configuration(configuration_json(what_to_run(args))), origin


def _from_exe(exe: str, tmp_dir: Path) -> tuple[DriverConfiguration, str]:
    """The configuration that ``exe --print-config`` prints (a rebuilt driver wrapper)."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION_VARIABLES}
    try:
        done = subprocess.run([exe, "--print-config"], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RebuildError(f"cannot ask {exe} for its configuration: {exc}") from None
    if done.returncode != 0:
        said = " ".join(done.stderr.strip().splitlines()[-3:]) or "(nothing on stderr)"
        raise RebuildError(f"`{exe} --print-config` failed with status {done.returncode}: {said}")
    with tempfile.TemporaryDirectory(dir=tmp_dir) as scratch:
        printed = Path(scratch) / "printed.json"
        printed.write_text(done.stdout)
        try:
            return load_driver_configuration(printed), f"`{exe} --print-config`"
        except DriverError as exc:
            raise RebuildError(f"`{exe} --print-config` printed no usable configuration: "
                               f"{str(exc).replace(f'{printed}: ', '').replace(str(printed), 'it')}") from None


def _configuration(data: dict[str, Any]) -> DriverConfiguration:
    return DriverConfiguration(
        vms={n: QemuMachineConfiguration(n, Path(m["start_script"])) for n, m in data["vms"].items()},
        containers={n: NspawnMachineConfiguration(n, Path(m["start_script"]))
                    for n, m in data["containers"].items()},
        vlans=data["vlans"], global_timeout=datetime.timedelta(seconds=data["global_timeout"]),
        enable_ssh_backdoor=data["enable_ssh_backdoor"], test_script=Path(data["test_script"]))


def _check(config: DriverConfiguration, origin: str, driver: Driver) -> Wanted:
    """Everything of ``config`` that can be checked before a machine changes."""
    kinds: dict[str, type[BaseMachine]] = {}
    for name, vm in config.vms.items():
        try:
            StartCommand(str(vm.start_script)).validate()
        except DriverError as exc:
            raise RebuildError(f"machine {name!r}: {exc}") from None
        kinds[name] = QemuMachine
    for name, container in config.containers.items():
        if name in kinds:
            raise RebuildError(f"{origin}: {name!r} is both a machine and a container")
        if not (os.path.isfile(container.start_script) and os.access(container.start_script, os.X_OK)):
            raise RebuildError(f"container {name!r}: start script {str(container.start_script)!r} "
                               "is not an executable file")
        kinds[name] = NspawnMachine
    try:
        vlans = roster.vlan_numbers(config.vlans)
        tests = config.test_script.read_text()
    except DriverError as exc:
        raise RebuildError(str(exc)) from None
    except OSError as exc:
        raise RebuildError(f"cannot read the new test script: {exc}") from None
    try:
        planned = steps.plan(tests, kinds) if steps.is_steps_document(tests) else None
        script = TestScript(tests, str(config.test_script), planned)
    except DriverError as exc:
        raise RebuildError(str(exc)) from None
    config = DriverConfiguration(config.vms, config.containers, vlans, config.global_timeout,
                                 config.enable_ssh_backdoor, config.test_script)
    return Wanted(config, script, origin, kinds)


def _is_machine_or_vlan(value: Any) -> bool:
    # type(), not isinstance: the deprecation wrapper warns on every attribute, __class__ too
    return type(value) is MachineDeprecationWrapper or isinstance(value, (BaseMachine, VLan))


class Redeployer:
    """``rebuild`` for one driver and the shell namespace that shows its machines."""

    def __init__(self, driver: Driver, namespace: dict[str, Any], source: Source | None = None) -> None:
        self.driver = driver
        self.namespace = namespace
        self.source = source
        self.identities = {name: Identity.of(machine.start_script)
                           for table in (driver.config.vms, driver.config.containers)
                           for name, machine in table.items()}
        """Each machine's start script as it was when the machine was made."""

    def rebuild(self, cmd: str | None = None, exe: str | None = None) -> None:
        """Run the shell command ``cmd`` (e.g. ``nix-build -A nixosTests.foo.driverInteractive``),
        then carry the rebuilt test over: changed machines are stopped and replaced, removed
        ones stopped, new ones added (start them with ``start_all()``), VLANs added and removed,
        and ``test_script()`` runs the new script.  ``exe`` (default ``--rebuild-exe``) is the
        rebuilt driver executable (``./result/bin/nixos-test-driver``) whose ``--print-config``
        tells the new configuration; without one, the configuration is read again from where it
        came from at start.  On any error nothing changes."""
        logger = self.driver.logger
        try:
            if cmd is not None:
                self._run(cmd)
            if exe is not None:  # a path from here; --rebuild-exe's is from where the driver started
                exe = _absolute(exe, os.getcwd()) if os.sep in exe else exe
            elif self.source is not None and self.source.exe is not None:
                exe = _absolute(self.source.exe, self.source.cwd) if os.sep in self.source.exe else self.source.exe
            if exe is not None:
                with logger.nested(f"getting the new configuration from `{exe} --print-config`"):
                    config, origin = _from_exe(exe, self.driver.tmp_dir)
            elif self.source is not None:
                with logger.nested("reading the new configuration"):
                    config, origin = _from_start(self.source)
            else:
                raise RebuildError("this driver does not know where its configuration came from: "
                                   "pass exe='./result/bin/nixos-test-driver'")
            wanted = _check(config, origin, self.driver)
            new_vlans = self._start_vlans(wanted)
        except DriverError as exc:
            error = exc if isinstance(exc, RebuildError) else RebuildError(str(exc))
            logger.report_error(f"rebuild: {error}; the machines are unchanged")
            raise error from None
        with logger.nested("updating machines"):
            changes = self._apply(wanted, new_vlans)
        if cmd is not None and exe is None and not changes:
            logger.warning(f"rebuild: nothing changed (the configuration came from {origin}); if `{cmd}` "
                           "built a new driver, name it: rebuild(cmd, exe='./result/bin/nixos-test-driver')")

    def _run(self, cmd: str) -> None:
        with self.driver.logger.nested(f"rebuilding test with `{cmd}`"):
            sys.stdout.flush()
            sys.stderr.flush()
            try:  # (its output goes to stderr, as the driver's log: stdout is the shell's)
                status = subprocess.run(cmd, shell=True, stdout=2).returncode
            except OSError as exc:
                raise RebuildError(f"cannot run `{cmd}`: {exc}") from None
        if status != 0:
            how = f"was killed by signal {-status}" if status < 0 else f"failed with status {status}"
            raise RebuildError(f"the rebuild command `{cmd}` {how}")

    def _start_vlans(self, wanted: Wanted) -> list[VLan]:
        """The switches of VLANs new in the test; if one cannot start, none is left running."""
        numbers = [nr for nr in wanted.config.vlans if all(v.nr != nr for v in self.driver.vlans)]
        if not numbers:
            return []
        started: list[VLan] = []
        with self.driver.logger.nested("start the new VLans"):
            try:
                for nr in numbers:
                    started.append(VLan(nr, self.driver.socket_root, self.driver.logger, self.driver.sandbox.wrap))
            except BaseException as exc:
                for vlan in started:
                    vlan.stop()
                if isinstance(exc, DriverError):
                    raise RebuildError(f"cannot start vlan {nr}: {exc}") from None
                raise
        return started

    def _apply(self, wanted: Wanted, new_vlans: list[VLan]) -> bool:
        """Carry ``wanted`` over (its new VLANs already run); return whether anything changed."""
        driver, logger = self.driver, self.driver.logger
        old_symbols = self._machine_symbols()
        current = {m.name: m for m in driver.machines}
        identities = {name: Identity.of(wanted.start_script(name)) for name in wanted.kinds}
        removed = [m for name, m in current.items() if name not in wanted.kinds]
        changed = [m for name, m in current.items() if name in wanted.kinds and
                   (identities[name] != self.identities.get(name) or type(m) is not wanted.kinds[name])]
        added = [name for name in wanted.kinds if name not in current]
        gone_vlans = [v for v in driver.vlans if v.nr not in wanted.config.vlans]

        for machine in removed:
            logger.info(f"{machine.name} is no longer in the test: stopping it")
            self._stop(machine, forget=True)
        for machine in changed:
            logger.info(f"{machine.name} changed: stopping it; start the new one with "
                        f"{pythonize(machine.name)}.start() or start_all()")
            self._stop(machine, forget=False)
        replacements: dict[str, QemuMachine | NspawnMachine] = {}
        driver.vlans.extend(new_vlans)  # (a new machine gets the sockets of the driver's VLANs)
        for name in [*(m.name for m in changed), *added]:
            script = wanted.start_script(name)
            replacements[name] = (driver.maker.vm(script, name, driver.vlans, interruptible=driver.interruptible_commands)
                                  if wanted.kinds[name] is QemuMachine else driver.maker.container(script, name))
            if name in added:
                logger.info(f"{name} is new in the test: start it with {pythonize(name)}.start() or start_all()")
        for name in sorted(current.keys() & wanted.kinds.keys()):
            if name not in replacements:
                logger.info(f"{name} unchanged")

        for vlan in gone_vlans:
            logger.info(f"vlan {vlan.nr} is no longer in the test: stopping it")
            vlan.stop()
        driver.vlans[:] = sorted([v for v in driver.vlans if v not in gone_vlans],
                                 key=lambda v: wanted.config.vlans.index(v.nr))
        machines = sorted([replacements.get(name) or current[name] for name in wanted.kinds], key=lambda m: m.name)
        for machine in machines:
            if isinstance(machine, QemuMachine):
                for vlan in gone_vlans:
                    for key in vlan.env:
                        machine.extra_env.pop(key, None)
                for vlan in new_vlans:
                    machine.extra_env.update(vlan.env)
        driver.machines[:] = machines
        driver.machines_qemu[:] = [m for m in machines if isinstance(m, QemuMachine)]
        driver.machines_nspawn[:] = [m for m in machines if isinstance(m, NspawnMachine)]

        script_changed = wanted.test_script.text != driver.tests
        if script_changed:
            logger.info("test script updated: test_script() now runs the new one (what the old one "
                        "did to the machines stays)")
        driver.script = wanted.test_script
        driver.config = wanted.config
        driver.global_timeout = wanted.config.global_timeout.total_seconds()
        self.identities = identities
        self._rename(old_symbols)
        return bool(removed or changed or added or new_vlans or gone_vlans or script_changed)

    def _stop(self, machine: QemuMachine | NspawnMachine, forget: bool) -> None:
        """Stop a machine; ``forget``: it leaves the test, so its private directories go too."""
        machine.release()
        if not forget:
            return
        if self.driver.tmp_dir in machine.state_dir.parents:
            shutil.rmtree(machine.state_dir, ignore_errors=True)
        if isinstance(machine, QemuMachine) and self.driver.socket_root in machine.socket_dir.parents:
            shutil.rmtree(machine.socket_dir, ignore_errors=True)

    def _machine_symbols(self) -> dict[str, Any]:
        """The machines' and VLANs' names in the test symbols (quietly: the driver prints them)."""
        with contextlib.redirect_stdout(io.StringIO()):
            symbols = self.driver.test_symbols()
        return {k: v for k, v in symbols.items() if _is_machine_or_vlan(v)}

    def _rename(self, old: dict[str, Any]) -> None:
        """The shell's names follow the machines and VLANs; a name the person rebound stays."""
        new = self._machine_symbols()
        for name in old.keys() - new.keys():
            if _is_machine_or_vlan(self.namespace.get(name)):
                del self.namespace[name]
        self.namespace.update(new)
