"""A container's commands, as upstream's: ``nsenter`` into its init's namespaces, ``/bin/sh -c``
with upstream's prefix and an empty environment, stdout captured, stderr logged as the
container's console; past its time limit a command's process group gets TERM, then KILL.

A mixin of ``NspawnMachine``.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
from abc import abstractmethod

from .. import interrupt
from ..deadline import Deadline, Duration, seconds, wait_for
from ..errors import MachineCrashed, UnexpectedShutdown, WaitTimeout
from .supervised import SupervisedMachine

COMMAND_PREFIX = "set -eo pipefail; export USER=root HOME=/root DISPLAY=:0.0; source /etc/profile; set -u; "
"""What upstream runs before each command, with ``/bin/sh -c`` and an empty environment."""


class ContainerCommands(SupervisedMachine):
    _commands: set[subprocess.Popen[bytes]]

    @abstractmethod
    def connect(self, timeout: Duration = 900) -> None: ...

    @abstractmethod
    def _nsenter(self, argv: list[str]) -> list[str]: ...

    @abstractmethod
    def _init_alive(self) -> bool: ...

    def _command_argv(self, command: str) -> list[str]:
        """The host command line that runs ``command`` in the container, as upstream's."""
        return self._nsenter(["/bin/sh", "-c", COMMAND_PREFIX + command])

    def _execute(self, command: str, check_return: bool = True, check_output: bool = True,
                 timeout: Duration | None = 900) -> tuple[int, str]:
        """Run ``command`` as upstream: ``(status, stdout)`` whatever ``check_return`` and
        ``check_output`` say; past ``timeout`` its processes are stopped (TERM, KILL two
        seconds later) and ``subprocess.TimeoutExpired`` is raised."""
        with self.lock:  # after a crash or an unasked shutdown commands fail until start() (or an
            # awaiting wait_for_shutdown()); after an asked-for shutdown they start it again
            if isinstance(self.stopped, (MachineCrashed, UnexpectedShutdown)):
                raise self.stopped
        if not self.connected:
            self.connect()
        argv = self._command_argv(command)
        limit = seconds(timeout)
        proc: subprocess.Popen[bytes] | None = None
        try:
            with interrupt.held():  # a Ctrl-C or SIGTERM comes after the command is ours to stop
                # stdin is the driver's, as upstream's; stderr goes to the log as it comes, and the
                # call does not wait for it to close (a background job may keep it: `sleep 9 >&2 &`)
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={},
                                        start_new_session=True)
                with self.lock:
                    self._commands.add(proc)
                    self._command_begins(command)
                stderr = threading.Thread(target=self._log_stderr, args=(proc,), name=f"stderr-{self.name}",
                                          daemon=True)
                stderr.start()
            out, timed_out = self._wait(proc, Deadline(limit))
            stderr.join(0.2)
            with self.lock:
                if not self._init_alive():
                    # The container's init died under the command (which kills every process
                    # of its PID namespace): let the supervisor see systemd-nspawn end.
                    try:
                        wait_for(self.lock, lambda: self.stopped is not None, Deadline(2),
                                 "systemd-nspawn to end", lambda: "it still runs")
                    except WaitTimeout:
                        pass
                if isinstance(self.stopped, (MachineCrashed, UnexpectedShutdown)):
                    raise self.stopped
        finally:
            if proc is not None:
                if proc.poll() is None:  # interrupted anywhere: nothing of it may outlive the call (nsenter
                    kill_group(proc, signal.SIGKILL)  # would stop itself when the container freezes it)
                with self.lock:
                    self._commands.discard(proc)
                    self._command_ends()
        if timed_out:
            raise subprocess.TimeoutExpired(argv, limit or 0.0, output=out or None)
        text = out.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")  # text mode, as upstream
        return proc.returncode, text

    def side_command(self, command: str, timeout: float) -> int | None:
        """Run ``command`` in the ready container for the driver itself, beside the script's
        commands (from another thread): not logged, not the running command, no polling
        conditions; output discarded.  Its status, or None if ``timeout`` passed (its process
        group is then killed)."""
        with interrupt.held():
            proc = subprocess.Popen(self._command_argv(command), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={},
                                    start_new_session=True)
            with self.lock:
                self._commands.add(proc)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            kill_group(proc, signal.SIGKILL)
            proc.wait()
            with self.lock:
                self._commands.discard(proc)

    def _wait(self, proc: subprocess.Popen[bytes], deadline: Deadline) -> tuple[bytes, bool]:
        """The command's stdout once it is closed and the command has exited, and whether
        the deadline passed first; then the command's process group is stopped: SIGTERM,
        SIGKILL two seconds later."""
        assert proc.stdout is not None
        chunks: list[bytes] = []
        fd = proc.stdout.fileno()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                while not deadline.expired:
                    if sel.select(deadline.remaining()):
                        data = os.read(fd, 1 << 16)
                        if not data:
                            break
                        chunks.append(data)
                        self.output_tail.add(data)
                else:
                    return self._stop(proc, chunks, sel, deadline), True
                try:
                    proc.wait(deadline.remaining())
                except subprocess.TimeoutExpired:
                    return self._stop(proc, chunks, sel, deadline), True
            return b"".join(chunks), False
        except KeyboardInterrupt:
            kill_group(proc, signal.SIGKILL)
            raise
        finally:
            proc.stdout.close()

    def _stop(self, proc: subprocess.Popen[bytes], chunks: list[bytes], sel: selectors.BaseSelector,
              deadline: Deadline) -> bytes:
        """Stop a command past its timeout: SIGTERM to its process group, SIGKILL two
        seconds later; return the output it wrote (not waiting for processes outside its
        group that may hold its stdout)."""
        self.log(f"command `{self.running_command}` exceeded its timeout of {deadline.timeout:g}s; stopping it")
        kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        kill_group(proc, signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        fd, last = proc.stdout.fileno(), Deadline(0.5)
        while not last.expired and sel.select(min(0.05, last.remaining() or 0.0)):
            data = os.read(fd, 1 << 16)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def _log_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with proc.stderr:
            for raw in iter(proc.stderr.readline, b""):
                self.log_serial(raw.decode(errors="replace").rstrip("\r\n"))


def kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal a command's process group (it may be gone already)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
