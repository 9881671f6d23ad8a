"""pytest-testinfra on a machine: its ``Host`` API, every command run through ``execute``.

nixpkgs' driver test ``testinfra.nix`` (from the pull request "test-driver: add Testinfra
support") writes ``machine.user("root").exists``, ``machine.file("/etc/passwd").is_file``,
``machine.run("echo hello").rc`` and ``machine.service(UNIT).systemd_properties``: there the
machine is a testinfra ``Host`` whose backend runs each command through the machine's own
command channel.  Here the same: ``host(machine)`` is a ``testinfra.host.Host`` (one per
machine) whose ``MachineBackend.run`` calls ``machine.execute``, so testinfra's modules
(``file``, ``user``, ``service``, ``package``, ``socket``, ``group``, ``sudo``...) and its
``run``/``run_expect``/``run_test``/``check_output``/``exists``/``find_command`` work on any
machine, QEMU or container, through its backdoor.  ``BaseMachine`` exposes ``run``,
``user``, ``file`` and ``service`` as methods, the Host as ``machine.testinfra``, and every
other name of the Host through its attribute fallback (``testinfra_attribute``).

A command returns testinfra's ``CommandResult`` (``rc``, ``stdout``, ``stderr``,
``succeeded``...), not ``execute``'s ``(status, output)``.  Unlike ``execute``, whose stderr
goes to the serial console, the command's stderr is captured too (``stderr``).  It runs
within ``execute``'s time limit (``timeout=``, 15 minutes by default), but as testinfra's
other backends run commands (a plain ``sh -c``): not under the ``set -euo pipefail`` of
``execute``, which testinfra's own commands are not written for.

The package (``pytest-testinfra`` on PyPI, ``python3Packages.pytest-testinfra`` in nixpkgs,
imported as ``testinfra``) is loaded on first use only: without it the driver runs as
before, and the first testinfra call raises ``TestinfraMissing`` naming the package.
"""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING, Any

from ..deadline import Duration
from ..duration import FIFTEEN_MINUTES

if TYPE_CHECKING:
    # pytest-testinfra ships no type information: for a type checker these are ``Any``.
    from testinfra.backend.base import CommandResult  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from testinfra.host import Host  # type: ignore[import-untyped,import-not-found,unused-ignore]

    from .base import BaseMachine

PACKAGE = "pytest-testinfra"
"""The distribution to install (PyPI; ``python3Packages.pytest-testinfra`` in nixpkgs)."""

KNOWN_NAMES = frozenset({
    # testinfra.modules.modules (pytest-testinfra 10)
    "addr", "ansible", "block_device", "command", "docker", "environment", "facter", "file", "group",
    "interface", "iptables", "mount_point", "package", "pip", "podman", "process", "puppet_resource",
    "salt", "service", "socket", "sudo", "supervisor", "sysctl", "system_info", "user",
    # testinfra.host.Host's own
    "backend", "check_output", "exists", "find_command", "has_command_v", "run", "run_expect", "run_test",
})
"""The Host names a machine passes on when pytest-testinfra cannot be imported (to say
so); with the package, its own module table and ``Host`` attributes decide."""


class TestinfraMissing(ModuleNotFoundError):
    """A testinfra call on a machine, but the ``testinfra`` package is not installed."""

    __test__ = False  # not a pytest test class, whatever its name


def _missing_message(what: str) -> str:
    return (f"{what} needs the Python package {PACKAGE} (imported as 'testinfra'), which is not "
            f"installed: pip install {PACKAGE}, or add python3Packages.pytest-testinfra to the "
            "driver (extraPythonPackages)")


def _import_testinfra(what: str) -> Any:
    """The ``testinfra`` package with its host, backend and modules loaded, or
    ``TestinfraMissing`` saying that ``what`` needs it."""
    try:
        import testinfra  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import testinfra.backend.base  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import testinfra.host  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import testinfra.modules  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ModuleNotFoundError as exc:
        if exc.name != "testinfra" and not (exc.name or "").startswith("testinfra."):
            raise  # something testinfra itself needs: its own error says what
        raise TestinfraMissing(_missing_message(what), name="testinfra") from exc
    return testinfra


def available() -> bool:
    """Whether pytest-testinfra can be imported."""
    try:
        _import_testinfra("testinfra")
    except TestinfraMissing:
        return False
    return True


def split_streams(output: str, marker: str) -> tuple[str, str]:
    """``(stdout, stderr)`` of a command wrapped by ``wrap_command`` with ``marker``: the
    stderr follows the last marker.  Without a marker (the command was killed at its
    time limit before the end), everything is stdout."""
    stdout, found, stderr = output.rpartition(marker)
    return (stdout, stderr) if found else (output, "")


def wrap_command(command: str, marker: str) -> str:
    """``command`` as a shell command whose stdout is the command's stdout, then ``marker``,
    then everything the command wrote to stderr; its status is the command's.

    The command runs in a subshell of a pipeline, as a plain shell runs it: without the
    ``set -euo pipefail`` of ``execute``, as testinfra's commands are written for ``sh -c``
    (its ``systemctl list-unit-files | grep -q UNIT`` would fail whenever grep's early exit
    kills systemctl with SIGPIPE).  Its stderr goes through the pipe to a reader of bash
    builtins only, which prints it once the command has closed it, while its stdout goes
    straight out (fd 9).  The reader always succeeds, so under the caller's ``pipefail``
    the status is the command's.  NUL bytes of stderr are dropped (as ``execute`` drops
    those of stdout)."""
    return ("{ ( set +e +u +o pipefail\n" + command + "\n) 2>&1 1>&9 9>&- | { __td_err=; "
            "while IFS= read -r -d '' __td_part; do __td_err+=$__td_part; done; "
            f"printf '%s%s' {marker} \"$__td_err$__td_part\"; }}; }} 9>&1")


_BACKEND_CLASS: type | None = None
_LOCK = threading.Lock()


def backend_class() -> type:
    """``MachineBackend``: the testinfra backend class (made on first use, as its base
    class comes from pytest-testinfra)."""
    global _BACKEND_CLASS
    if _BACKEND_CLASS is not None:
        return _BACKEND_CLASS
    base: Any = _import_testinfra("a testinfra backend").backend.base.BaseBackend

    class MachineBackend(base):  # type: ignore[misc,valid-type,unused-ignore]
        """A testinfra backend whose commands run through ``machine.execute``."""

        NAME = "nixos-test-driver"

        def __init__(self, machine: BaseMachine, **kwargs: Any) -> None:
            self.machine = machine
            super().__init__(machine.name, **kwargs)

        def run(self, command: str, *args: str, timeout: Duration | None = FIFTEEN_MINUTES,
                **kwargs: Any) -> CommandResult:
            """Run ``command`` (its ``%s`` filled with the shell-quoted ``args``, under sudo
            when the host's ``sudo()`` is on) in the machine; testinfra's ``CommandResult``."""
            cmd = self.get_command(command, *args)
            marker = f"__td_stderr_{secrets.token_hex(12)}__"
            status, output = self.machine.execute(wrap_command(cmd, marker), timeout=timeout)
            stdout, stderr = split_streams(output, marker)
            return self.result(status, cmd.encode("utf-8", "surrogateescape"), stdout, stderr)

    _BACKEND_CLASS = MachineBackend
    return MachineBackend


def host(machine: BaseMachine) -> Host:
    """The testinfra ``Host`` of ``machine`` (made once per machine): testinfra's modules
    and ``run`` with commands through ``machine.execute``."""
    found = machine.__dict__.get("_testinfra_host")
    if found is not None:
        return found
    testinfra = _import_testinfra(f"testinfra on machine {machine.name!r}")
    with _LOCK:
        found = machine.__dict__.get("_testinfra_host")
        if found is None:
            backend = backend_class()(machine)
            found = testinfra.host.Host(backend)
            backend.set_host(found)
            machine.__dict__["_testinfra_host"] = found
    return found


def names() -> frozenset[str]:
    """The names a machine passes on to its testinfra Host: testinfra's modules and the
    Host's public attributes (``KNOWN_NAMES`` when the package is missing)."""
    try:
        testinfra = _import_testinfra("testinfra")
    except TestinfraMissing:
        return KNOWN_NAMES
    own = {name for name in dir(testinfra.host.Host) if not name.startswith("_")}
    return frozenset(own | set(testinfra.modules.modules) | {"backend"})


def testinfra_attribute(machine: BaseMachine, name: str) -> Any:
    """``machine.NAME`` for a name the machine lacks but testinfra's Host has (``package``,
    ``socket``, ``check_output``...), as upstream's machine, a Host itself, has them.
    Raises ``AttributeError`` for other names, and, without pytest-testinfra, an
    ``AttributeError`` that names the package to install."""
    if name not in names():
        raise AttributeError(name)
    try:
        return getattr(host(machine), name)
    except TestinfraMissing as exc:
        raise AttributeError(f"machine {machine.name!r}: {name!r} is testinfra's; "
                             + _missing_message(f"machine.{name}")) from exc
