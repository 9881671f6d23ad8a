"""BaseMachine: the machine API that is written on top of ``execute``."""

from __future__ import annotations

import base64
import difflib
import re
import shlex
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..deadline import Deadline, Duration, seconds
from ..duration import FIFTEEN_MINUTES, warn_if_number, warn_old_argument
from ..errors import RequestedAssertionFailed, WaitTimeout
from ..logger import AbstractLogger


EVENT_OUTPUT = 65536
"""A command's event keeps the first this many characters of its output."""

DEFAULT_WAIT = FIFTEEN_MINUTES.total_seconds()
"""Seconds a wait (``retry``, ``wait_for_*``) lasts when given no timeout, as upstream."""


def wait_until(check: Callable[[bool], Any], timeout: Duration | None, what: str | None,
               last_state: Callable[[], str | None] = lambda: None, pause: float = 0.1) -> None:
    """Upstream's retry loop: ``check(False)`` until it returns something true or
    ``timeout`` (None: 15 minutes) has passed, then one last ``check(True)``; a probe
    is never cut short by the deadline.  Pauses start at ``pause`` and double up to
    1 s.  Raises ``WaitTimeout`` saying what was awaited and the last state seen."""
    limit = DEFAULT_WAIT if timeout is None else seconds(timeout) or 0.0
    tic = time.monotonic()
    while time.monotonic() - tic < limit:
        if check(False):
            return
        time.sleep(max(0.0, min(pause, limit - (time.monotonic() - tic))))
        pause = min(pause * 2, 1.0)
    if not check(True):
        raise WaitTimeout(what, limit, last_state(), elapsed=time.monotonic() - tic)


def retry(fn: Callable[[bool], Any], timeout_seconds: Duration | None = None,
          timeout: Duration | None = None) -> None:
    """Call ``fn(False)`` once a second until it returns something true; when
    ``timeout`` (seconds or ``timedelta``; None: 15 minutes) has passed, make one
    last call, ``fn(True)``, so a zero timeout still makes one.  Raises
    ``RequestedAssertionFailed`` (a ``WaitTimeout``: "action timed out after ...")
    if that is false too.  ``timeout_seconds`` is the older name of ``timeout``."""
    if timeout_seconds is not None:
        if timeout is not None:
            raise TypeError("retry() takes 'timeout' or the older 'timeout_seconds', not both")
        warn_old_argument(timeout_seconds, "retry", "timeout_seconds", "timeout")
        timeout = timeout_seconds
    wait_until(fn, timeout, None, pause=1.0)


def make_command(args: list[Any]) -> str:
    return " ".join(shlex.quote(str(arg)) for arg in args)


class BaseMachine(ABC):
    """What every kind of machine offers; subclasses provide ``_execute``, ``start``..."""

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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name}'>"

    if not TYPE_CHECKING:  # type checkers must still flag unknown attributes

        def __getattr__(self, attr: str) -> Any:
            if attr.startswith("__"):
                raise AttributeError(attr)
            close = difflib.get_close_matches(attr, [a for a in dir(type(self)) if not a.startswith("_")])
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            name = self.__dict__.get("name", "?")
            raise AttributeError(f"machine {name!r} ({type(self).__name__}) has no attribute {attr!r}{hint}")

    # --- logging ---------------------------------------------------------------
    def log(self, msg: str) -> None:
        """Log a message, tagged with this machine's name."""
        self.logger.log(msg, {"machine": self.name})

    def nested(self, msg: str, attrs: dict[str, str] = {}) -> AbstractContextManager[None]:
        """A nested log section tagged with this machine's name."""
        return self.logger.nested(msg, {"machine": self.name, **attrs})

    def log_serial(self, msg: str) -> None:
        """Log a line as serial console output of this machine."""
        self.logger.log_serial(msg, self.name)

    def _poll_until(self, check: Callable[[bool], Any], timeout: Duration | None, what: str,
                    last_state: Callable[[], str | None] = lambda: None, pause: float = 0.1) -> None:
        """``wait_until``, shown as it goes on a terminal: "NAME: waiting for WHAT, N s, STATE"."""
        with self.logger.activity(f"{self.name}: waiting for {what}", last_state):
            wait_until(check, timeout, what, last_state, pause)

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
        try:
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

        def check(_last_try: bool) -> bool:
            nonlocal output, status
            # as upstream, an attempt may take the whole timeout (unless attempt_timeout says less)
            status, output = self.execute(command, timeout=timeout if attempt_timeout is None
                                          else attempt_timeout)
            return (status == 0) == want_success

        # attempts 1 s apart, as upstream's: the command is the script's, and may count
        self._poll_until(check, timeout, f"`{command}` to {'succeed' if want_success else 'fail'}",
                         lambda: f"exit status {status}, output {output[-200:]!r}", pause=1.0)
        return output

    def wait_until_succeeds(self, command: str, timeout: Duration = FIFTEEN_MINUTES,
                            attempt_timeout: Duration | None = None) -> str:
        """Repeat ``command`` (a second apart) until it succeeds; return its output.

        Attempts start until ``timeout`` has passed, then one last attempt is made,
        as upstream's.  Each attempt may take ``timeout`` itself, or
        ``attempt_timeout`` when given (a command still running then is stopped,
        status 124, and tried again)."""
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
        if user is not None:
            q = q.replace("'", "\\'")
            return self.execute(f"su -l {user} --shell /bin/sh -c "
                                f"$'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'")
        return self.execute(f"systemctl {q}")

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
        status, output = self.systemctl(f'--no-pager show "{unit}" --property="{property}"', user)
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

        def check_active(_last_try: bool) -> bool:
            nonlocal state
            state = self.get_unit_property(unit, "ActiveState", user)
            if state == "failed":
                raise RequestedAssertionFailed(f'unit "{unit}" reached state "{state}"')
            if state == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs and self.get_unit_property(unit, "ActiveState", user) == "inactive":
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

        def reached(_last_try: bool) -> bool:
            nonlocal seen
            seen = self.get_unit_property(unit, "ActiveState", user)
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
            # each probe has execute's own bound, as upstream's: never cut short by the wait
            self._poll_until(lambda _last_try: (self.execute(command)[0] == 0) == want_zero, timeout,
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

    def copy_from_host_via_shell(self, source: str, target: str) -> None:
        """Copy a host file into the machine through the shell (no shared directory needed)."""
        content = base64.b64encode(Path(source).read_bytes()).decode()
        self.succeed(f"mkdir -p $(dirname {target})", f"echo -n {content} | base64 -d > {target}")

    def copy_from_host(self, source: str, target: str) -> None:
        """Copy a host file or directory to ``target`` in the machine, through the
        shared directory (mounted at /tmp/shared in the guest)."""
        host_src = Path(source)
        with tempfile.TemporaryDirectory(dir=self.shared_dir) as shared_td:
            host_mid = Path(shared_td) / host_src.name
            vm_mid = Path("/tmp/shared") / Path(shared_td).name / host_src.name
            if host_src.is_dir():
                shutil.copytree(host_src, host_mid)
            else:
                shutil.copy(host_src, host_mid)
            self.succeed(make_command(["mkdir", "-p", Path(target).parent]),
                         make_command(["cp", "-r", vm_mid, Path(target)]))  # (Path drops a trailing /)

    def copy_from_machine(self, source: str, target_dir: str = "") -> None:
        """Copy a file or directory from the machine to ``target_dir`` in the output
        directory, as upstream: through the shared directory, where the copy stays (at
        ``/tmp/shared/TARGET_DIR/NAME`` in the machines); copying a directory over an
        existing one raises ``FileExistsError``."""
        vm_src = Path(source)
        vm_mid = Path("/tmp/shared") / target_dir / vm_src.name
        host_mid = self.shared_dir / target_dir / vm_src.name
        self.succeed(make_command(["mkdir", "-p", vm_mid.parent]))
        self.succeed(make_command(["cp", "-r", vm_src, vm_mid]))
        target = self.out_dir / target_dir / vm_src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if host_mid.is_dir():
            shutil.copytree(host_mid, target)
        else:
            shutil.copy(host_mid, target)

    def copy_from_vm(self, source: str, target_dir: str = "") -> None:
        """Old name of ``copy_from_machine``."""
        self.copy_from_machine(source, target_dir)

    def get_tty_text(self, tty: int | str) -> str:
        """The text visible on virtual terminal ``tty`` (e.g. 1 or "1")."""
        return self.execute(f"fold -w$(stty -F /dev/tty{tty} size | awk '{{print $2}}') /dev/vcs{tty}")[1]

    def wait_until_tty_matches(self, tty: int | str, regexp: str, timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until the text on virtual terminal ``tty`` matches ``regexp``."""
        warn_if_number(timeout, "wait_until_tty_matches")
        matcher = re.compile(regexp)
        text = ""

        def matches(last_try: bool) -> bool:
            nonlocal text
            text = self.get_tty_text(tty)
            if last_try:
                self.log(f"Last chance to match /{regexp}/ on TTY{tty}, which currently contains: {text}")
            return matcher.search(text) is not None

        with self.nested(f"waiting for {regexp} to appear on tty {tty}"):
            self._poll_until(matches, timeout, f"/{regexp}/ on tty{tty}",
                             lambda: f"tty shows {text[-300:]!r}")

    def dump_tty_contents(self, tty: int | str) -> None:
        """Send the contents of virtual terminal ``tty`` to the machine's journal, as
        upstream (``systemd-cat``); also log them here."""
        self.execute(f"fold -w 80 /dev/vcs{tty} | systemd-cat")
        self.log(self.get_tty_text(tty))
