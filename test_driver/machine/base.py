"""BaseMachine: the machine API that is written on top of ``execute``."""

from __future__ import annotations

import difflib
import shlex
import shutil
import threading
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..deadline import Duration, attempts, seconds
from ..duration import FIFTEEN_MINUTES, warn_if_number, warn_old_argument
from ..errors import RequestedAssertionFailed, WaitTimeout
from ..logger import AbstractLogger
from ..terminal_text import plain
from . import testinfra as _testinfra
from .status import OutputTail

if TYPE_CHECKING:
    from .testinfra import CommandResult, Host


TIMED_OUT = 124
"""The status of a command stopped by its time limit (as coreutils' ``timeout``)."""

EVENT_OUTPUT = 65536
"""A command's event keeps the first this many characters of its output."""

def wait_until(check: Callable[[float | None], Any], timeout: Duration | None, what: str | None,
               last_state: Callable[[], str | None] = lambda: None, pause: float = 0.1) -> None:
    """Call ``check(remaining)`` until it returns something true, as nixpkgs' ``retry``:
    ``remaining`` is the seconds left (``None`` when ``timeout`` is ``None``: no limit),
    and a probe must not outlive it (``probe_timeout``).  No call starts after the
    deadline, and a zero timeout makes none.  Pauses start at ``pause`` and double up
    to 1 s.  Raises ``WaitTimeout`` saying what was awaited and the last state seen."""
    tic = time.monotonic()
    for remaining in attempts(timeout, pause):
        if check(remaining):
            return
    raise WaitTimeout(what, seconds(timeout) or 0.0, last_state(), elapsed=time.monotonic() - tic)


def probe_timeout(remaining: float | None, cap: Duration | None = None) -> timedelta | None:
    """The time limit of one probe: the ``remaining`` seconds of its wait, or ``cap``
    when that is less (``None`` for either: no limit from it)."""
    limits = [limit for limit in (remaining, seconds(cap)) if limit is not None]
    return timedelta(seconds=min(limits)) if limits else None


def retry(fn: Callable[[float | None], Any], timeout_seconds: Duration | None = None,
          timeout: Duration | None = FIFTEEN_MINUTES) -> None:
    """Call ``fn(remaining)`` about once a second until it returns something true.

    ``remaining`` is the seconds left of ``timeout`` (a ``timedelta``, 15 minutes by
    default), or ``None`` when ``timeout`` is ``None``: then there is no limit.  No
    call starts once the time is up, so a zero timeout makes none; a call still
    running at the deadline is the last.  Then ``RequestedAssertionFailed`` is
    raised (a ``WaitTimeout``: "action timed out after ...").  A call that takes a
    second or more is followed at once.  ``timeout_seconds`` is the older name of
    ``timeout``."""
    if timeout_seconds is not None:
        if timeout is not FIFTEEN_MINUTES:
            raise TypeError("retry() takes 'timeout' or the older 'timeout_seconds', not both")
        warn_old_argument(timeout_seconds, "retry", "timeout_seconds", "timeout")
        timeout = timeout_seconds
    wait_until(fn, timeout, None, pause=1.0)


def make_command(args: list[Any]) -> str:
    return " ".join(shlex.quote(str(arg)) for arg in args)


_probing = threading.local()
"""Per thread: how many waits are polling now (their probe commands are not shown as activities)."""


class BaseMachine(ABC):
    """What every kind of machine offers; subclasses provide ``_execute``, ``start``..."""

    KIND = "machine"
    running_command: str | None
    """The command running now (set by each kind's ``_execute``)."""

    def __init__(self, out_dir: Path, name: str, logger: AbstractLogger, tmp_dir: Path,
                 callbacks: list[Callable[[], None]] | None = None,
                 keep_machine_state: bool = False, state_dir: Path | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        self.logger = logger
        self.tmp_dir = Path(tmp_dir)
        self.callbacks = callbacks if callbacks is not None else []
        self.keep_machine_state = keep_machine_state
        self.state_dir = state_dir or self.tmp_dir / f"vm-state-{name}"
        if not keep_machine_state and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.shared_dir = self.tmp_dir / "shared-xchg"
        self.shared_dir.mkdir(mode=0o700, exist_ok=True)
        self.command_since: float | None = None
        """When the running command started."""
        self.output_tail = OutputTail()
        """The running command's output, as it comes (its last line for ``status()``)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name}'>"

    if not TYPE_CHECKING:  # type checkers must still flag unknown attributes

        def __getattr__(self, attr: str) -> Any:
            if attr.startswith("__"):
                raise AttributeError(attr)
            if attr in _testinfra.names():  # testinfra's Host names (package, socket...), as upstream
                return _testinfra.testinfra_attribute(self, attr)
            close = difflib.get_close_matches(attr, [a for a in dir(type(self)) if not a.startswith("_")])
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            name = self.__dict__.get("name", "?")
            raise AttributeError(f"machine {name!r} ({type(self).__name__}) has no attribute {attr!r}{hint}")

    # --- testinfra (pytest-testinfra's Host API; see machine/testinfra.py) --------------
    @property
    def testinfra(self) -> Host:
        """This machine as a pytest-testinfra ``Host`` whose commands run through ``execute``:
        every testinfra module (``machine.testinfra.package("x").is_installed``); its names
        also work on the machine itself (``machine.package``), as upstream's."""
        return _testinfra.host(self)

    def run(self, command: str, *args: str, timeout: Duration | None = FIFTEEN_MINUTES) -> CommandResult:
        """Run a shell command as testinfra's ``host.run``: ``%s`` in ``command`` take the
        shell-quoted ``args``; return a ``CommandResult`` (``rc``, ``stdout``, ``stderr``,
        ``succeeded``), never raising for a non-zero status.  Needs pytest-testinfra."""
        return _testinfra.host(self).run(command, *args, timeout=timeout)

    def user(self, name: str | None = None) -> Any:
        """testinfra's ``User`` of ``name`` (default: who runs commands, root): ``exists``,
        ``uid``, ``group``, ``home``, ``shell``... read in the machine.  Needs pytest-testinfra."""
        return _testinfra.host(self).user(name)

    def file(self, path: str) -> Any:
        """testinfra's ``File`` at ``path`` in the machine: ``exists``, ``is_file``,
        ``is_directory``, ``mode``, ``user``, ``contains(pattern)``, ``content_string``...
        Needs pytest-testinfra."""
        return _testinfra.host(self).file(path)

    def service(self, name: str) -> Any:
        """testinfra's ``Service`` (systemd unit) ``name`` in the machine: ``exists``,
        ``is_running``, ``is_enabled``, ``systemd_properties`` (``systemctl show``
        as a dict)...  Needs pytest-testinfra."""
        return _testinfra.host(self).service(name)

    # --- logging ---------------------------------------------------------------
    def log(self, msg: str) -> None:
        """Log a message, tagged with this machine's name."""
        self.logger.log(msg, {"machine": self.name})

    def nested(self, msg: str, attrs: dict[str, str] = {}) -> AbstractContextManager[None]:
        """A nested log section tagged with this machine's name."""
        return self.logger.nested(msg, {"machine": self.name, **attrs})

    def log_serial(self, msg: str) -> None:
        """Log a line as serial console output of this machine (without terminal control
        sequences: colours, cursor moves, screen clearing)."""
        self.logger.log_serial(plain(msg), self.name)

    def _poll_until(self, check: Callable[[float | None], Any], timeout: Duration | None, what: str,
                    last_state: Callable[[], str | None] = lambda: None, pause: float = 0.1,
                    last_words: Callable[[], str] | None = None) -> None:
        """``wait_until``, shown as it goes on a terminal: "NAME: waiting for WHAT, N s, STATE";
        ``last_words()`` is logged when the time is up (upstream's "Last chance ..." lines)."""
        with self.logger.activity(f"{self.name}: waiting for {what}", last_state):
            _probing.depth = getattr(_probing, "depth", 0) + 1
            try:
                wait_until(check, timeout, what, last_state, pause)
            except WaitTimeout:
                if last_words is not None:
                    self.log(last_words())
                raise
            finally:
                _probing.depth -= 1

    # --- what it is doing now ----------------------------------------------------------
    def _command_begins(self, command: str) -> None:
        self.running_command, self.command_since = command, time.monotonic()
        self.output_tail.clear()

    def _command_ends(self) -> None:
        self.running_command, self.command_since = None, None

    def _last_output(self) -> str | None:
        line = self.output_tail.line()
        return f"last output: {line}" if line else None

    def run_callbacks(self) -> None:
        """Run the callbacks due before each command (the active polling conditions)."""
        for callback in self.callbacks:
            callback()

    def cleanup_statedir(self) -> None:
        """Delete this machine's state directory (its disk images) and make it anew."""
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log(f"deleted machine state directory {self.state_dir}")

    # --- what a kind of machine must provide -------------------------------------
    @abstractmethod
    def is_up(self) -> bool: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def wait_for_shutdown(self) -> None: ...

    @abstractmethod
    def _execute(self, command: str, check_return: bool, check_output: bool,
                 timeout: Duration | None) -> tuple[int, str]: ...

    # --- commands ------------------------------------------------------------------
    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Duration | None = FIFTEEN_MINUTES) -> tuple[int, str]:
        """Run a shell command in the machine; return ``(status, stdout)``.

        The command runs as upstream's ``bash -c 'set -euo pipefail; CMD'``: a failing
        command of a list or pipeline fails the whole, unset variables are errors,
        ``$0`` is ``bash`` and ``$$`` the command's own shell.  Its stdin is a terminal
        that never delivers data (``cat`` waits until the timeout) and its stderr
        goes to the serial console.  The call
        returns when every process holding the command's stdout has closed it, so
        a command that starts a background process must redirect that process's
        output (``foo >/dev/null 2>&1 &``).

        ``timeout`` (seconds or ``timedelta``, ``None`` for none): when it passes,
        the command's processes get SIGTERM (SIGKILL two seconds later) and the
        status is 124, as with coreutils' ``timeout``.  ``check_return=False``
        returns -1 as status; ``check_output=False`` returns ``(-2, "")`` at once
        without waiting for the command.  NUL bytes cannot be carried in the
        output and are dropped.  A bare number as ``timeout`` gets upstream's
        deprecation warning.
        """
        warn_if_number(timeout, "execute")
        self.run_callbacks()
        tic = time.monotonic()
        status: int | None = None
        output = ""
        shown = nullcontext() if getattr(_probing, "depth", 0) or not check_output else \
            self.logger.activity(f"{self.name}: running `{command}`", self._last_output)
        try:
            with shown:
                status, output = self._execute(command, check_return, check_output, timeout)
            return status, output
        finally:
            self.logger.event("command", machine=self.name, command=command, status=status,
                              seconds=round(time.monotonic() - tic, 6), output=output[:EVENT_OUTPUT],
                              output_chars=len(output))

    def succeed(self, *commands: str, timeout: Duration | None = None) -> str:
        """Run each command, raising ``RequestedAssertionFailed`` at the first
        non-zero exit status; return their concatenated stdout."""
        warn_if_number(timeout, "succeed")
        output = ""
        for command in commands:
            with self.nested(f"must succeed: {command}"):
                status, out = self.execute(command, timeout=timeout)
                if status != 0:
                    self.log(f"output: {out}")
                    raise RequestedAssertionFailed(f"command `{command}` failed (exit code {status})")
                output += out
        return output

    def fail(self, *commands: str, timeout: Duration | None = None) -> str:
        """Like ``succeed``, but each command must exit with a non-zero status."""
        warn_if_number(timeout, "fail")
        output = ""
        for command in commands:
            with self.nested(f"must fail: {command}"):
                status, out = self.execute(command, timeout=timeout)
                if status == 0:
                    raise RequestedAssertionFailed(f"command `{command}` unexpectedly succeeded")
                output += out
        return output

    def _wait_until(self, command: str, want_success: bool, timeout: Duration,
                    attempt_timeout: Duration | None) -> str:
        output = ""
        status = -1

        def check(remaining: float | None) -> bool:
            nonlocal output, status
            # an attempt may take what is left of the timeout, or attempt_timeout if less
            status, output = self.execute(command, timeout=probe_timeout(remaining, attempt_timeout))
            return (status == 0) == want_success

        # attempts start 1 s apart, as upstream's: the command is the script's, and may count
        self._poll_until(check, timeout, f"`{command}` to {'succeed' if want_success else 'fail'}",
                         lambda: f"exit status {status}, output {output[-200:]!r}", pause=1.0)
        return output

    def wait_until_succeeds(self, command: str, timeout: Duration = FIFTEEN_MINUTES,
                            attempt_timeout: Duration | None = None) -> str:
        """Repeat ``command`` until it succeeds; return its output.

        Attempts start a second apart (at once after one that took longer) until
        ``timeout`` has passed.  Each attempt may take what is left of ``timeout``,
        or ``attempt_timeout`` when that is less: a command still running then is
        stopped (status 124) and tried again, so the call ends at ``timeout``.  A
        ``None`` timeout waits without limit."""
        warn_if_number(timeout, "wait_until_succeeds")
        with self.nested(f"waiting for success: {command}"):
            return self._wait_until(command, True, timeout, attempt_timeout)

    def wait_until_fails(self, command: str, timeout: Duration = FIFTEEN_MINUTES,
                         attempt_timeout: Duration | None = None) -> str:
        """Repeat ``command`` until it fails; return its output.  ``timeout`` and
        ``attempt_timeout`` as for ``wait_until_succeeds``."""
        warn_if_number(timeout, "wait_until_fails")
        with self.nested(f"waiting for failure: {command}"):
            return self._wait_until(command, False, timeout, attempt_timeout)

    def sleep(self, secs: Duration | None = None, duration: Duration | None = None) -> None:
        """Sleep ``duration`` (a ``timedelta`` or seconds; ``secs`` is its older
        name) of guest time: runs ``sleep`` in the machine."""
        if secs is not None:
            if duration is not None:
                raise TypeError("sleep() takes 'duration' or the older 'secs', not both")
            warn_old_argument(secs, "sleep", "secs", "duration")
            duration = secs
        if duration is None:
            raise TypeError("sleep() missing required argument 'duration'")
        self.succeed(f"sleep {seconds(duration)}")

    # --- systemd ---------------------------------------------------------------------
    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        """Run ``systemctl q`` (``systemctl --user q`` as ``user`` if given); return (status, output)."""
        return self._systemctl(q, user, FIFTEEN_MINUTES)

    def _systemctl(self, q: str, user: str | None, timeout: Duration | None) -> tuple[int, str]:
        if user is not None:
            q = q.replace("'", "\\'")
            return self.execute(f"su -l {user} --shell /bin/sh -c "
                                f"$'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'", timeout=timeout)
        return self.execute(f"systemctl {q}", timeout=timeout)

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        """All properties of a systemd unit, from ``systemctl show``."""
        status, lines = self.systemctl(f'--no-pager show "{unit}"', user)
        if status != 0:
            raise RequestedAssertionFailed(f'retrieving systemctl info for unit "{unit}"'
                                           + (f' under user "{user}"' if user else "")
                                           + f" failed with exit code {status}")
        return dict(line.split("=", 1) for line in lines.splitlines() if "=" in line)

    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str:
        """The value of one property of a systemd unit."""
        value = self._unit_property(unit, property, user, FIFTEEN_MINUTES, probe=False)
        assert value is not None  # (only a probe's own time limit gives None)
        return value

    def _unit_property(self, unit: str, property: str, user: str | None, timeout: Duration | None,
                       probe: bool = True) -> str | None:
        """``get_unit_property`` as a wait's probe: None when its time limit cut it short
        (status 124), so that the wait ends in its own timeout."""
        status, output = self._systemctl(f'--no-pager show "{unit}" --property="{property}"', user, timeout)
        if status == TIMED_OUT and probe:
            return None
        if status != 0:
            raise RequestedAssertionFailed(f'retrieving systemctl property "{property}" for unit "{unit}"'
                                           + (f' under user "{user}"' if user else "")
                                           + f" failed with exit code {status}")
        name, sep, value = output.rstrip("\n").partition("=")
        if name != property or not sep:  # an AssertionError, as upstream's
            raise AssertionError(f'systemctl show --property "{property}" "{unit}" produced invalid output: {output}')
        return value

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until a systemd unit is active; raise at once if it failed, or if it
        is inactive with no job pending."""
        warn_if_number(timeout, "wait_for_unit")
        state = "unknown"

        def check_active(remaining: float | None) -> bool:
            nonlocal state
            state = self._unit_property(unit, "ActiveState", user, probe_timeout(remaining)) or state
            if state == "failed":
                raise RequestedAssertionFailed(f'unit "{unit}" reached state "{state}"')
            if state == "inactive":
                _, jobs = self._systemctl("list-jobs --full 2>&1", user, probe_timeout(remaining))
                if "No jobs" in jobs and \
                        self._unit_property(unit, "ActiveState", user, probe_timeout(remaining)) == "inactive":
                    raise RequestedAssertionFailed(f'unit "{unit}" is inactive and there are no pending jobs')
            return state == "active"

        with self.nested(f"waiting for unit {unit}" + (f" with user {user}" if user else "")):
            self._poll_until(check_active, timeout, f"unit {unit} to become active",
                             lambda: f"ActiveState={state}")

    def wait_for_unit_active_state(self, unit: str, state: str, user: str | None = None,
                                   timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until a systemd unit's ActiveState is ``state`` (``active``, ``inactive``,
        ``activating``, ``reloading``, ``deactivating``, ``failed``)."""
        seen = "unknown"

        def reached(remaining: float | None) -> bool:
            nonlocal seen
            seen = self._unit_property(unit, "ActiveState", user, probe_timeout(remaining)) or seen
            return seen == state

        with self.nested(f"waiting for unit {unit} to be {state}" + (f" with user {user}" if user else "")):
            self._poll_until(reached, timeout, f"unit {unit} in state {state}", lambda: f"ActiveState={seen}")

    def wait_for_job(self, jobname: str) -> None:
        """Old name: wait until the systemd unit ``jobname`` is active."""
        self.wait_for_unit(jobname)

    def require_unit_state(self, unit: str, require_state: str = "active") -> None:
        """Assert that a unit's ActiveState is ``require_state`` now."""
        with self.nested(f"checking if unit '{unit}' has reached state '{require_state}'"):
            state = self.get_unit_info(unit)["ActiveState"]
            if state != require_state:
                raise RequestedAssertionFailed(
                    # upstream's words, its doubled "to" included: a script may match them
                    f"Expected unit '{unit}' to to be in state '{require_state}' but it is in state '{state}'")

    def start_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        """``systemctl start jobname``."""
        return self.systemctl(f"start {jobname}", user)

    def stop_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        """``systemctl stop jobname``."""
        return self.systemctl(f"stop {jobname}", user)

    # --- files and ports -------------------------------------------------------------
    def _wait_for_status(self, command: str, want_zero: bool, what: str, timeout: Duration) -> None:
        with self.nested(f"waiting for {what}"):
            # each probe is bounded by what is left of the wait, as nixpkgs' newest
            self._poll_until(lambda remaining: (self.execute(command, timeout=probe_timeout(remaining))[0] == 0)
                             == want_zero, timeout,
                             what, lambda: f"`{command}` still {'fails' if want_zero else 'succeeds'}")

    def wait_for_file(self, filename: str, timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until ``filename`` exists in the machine."""
        warn_if_number(timeout, "wait_for_file")
        self._wait_for_status(f"test -e {filename}", True, f"file '{filename}'", timeout)

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until something listens on TCP ``addr:port`` in the machine."""
        warn_if_number(timeout, "wait_for_open_port")
        self._wait_for_status(f"nc -z {addr} {port}", True, f"TCP port {port} on {addr}", timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost",
                             timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until nothing listens on TCP ``addr:port`` in the machine."""
        warn_if_number(timeout, "wait_for_closed_port")
        self._wait_for_status(f"nc -z {addr} {port}", False,
                              f"TCP port {port} on {addr} to be closed", timeout)

    def wait_for_open_unix_socket(self, addr: str, is_datagram: bool = False,
                                  timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until something listens on the UNIX socket ``addr`` (stream, or datagram)."""
        warn_if_number(timeout, "wait_for_open_unix_socket")
        flags = "-z -uU" if is_datagram else "-z -U"
        kind = "datagram" if is_datagram else "stream"
        self._wait_for_status(f"nc {flags} {addr}", True, f"UNIX-domain {kind} on '{addr}'", timeout)
