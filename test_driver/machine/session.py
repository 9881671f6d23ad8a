"""A VM's backdoor session: connecting to the guest's root shell, and commands through it with
their time limits (``TERM``, then ``KILL`` ``KILL_GRACE`` seconds later, as coreutils' timeout).

A mixin of ``QemuMachine``, which owns the streams, the QEMU process and the run state; the
framing is ``protocol.backdoor``'s.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from abc import abstractmethod
from contextlib import AbstractContextManager

from ..deadline import Deadline, Duration, seconds, wait_for
from ..errors import BackdoorError, MachineStopped, WaitTimeout
from ..protocol.backdoor import Backdoor
from ..protocol.stream import Stream, StreamEOF
from .supervised import RunState, SupervisedMachine

KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL for a timed-out command."""
LINGER_WARNING = 1.0
"""Seconds a command's stdout may stay open after it exited before we say so."""


class BackdoorSession(SupervisedMachine):
    shell: Backdoor
    reply_stream: Stream
    backdoor_died_at: float | None
    _command_lock: threading.Lock
    _conns: dict[str, socket.socket]

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def wait_for_shutdown(self, timeout: Duration | None = None) -> None: ...

    @abstractmethod
    def _or_gone(self, what: str) -> AbstractContextManager[None]: ...

    @abstractmethod
    def _stopped_error(self, fallback: str) -> MachineStopped: ...

    @abstractmethod
    def _backdoor_lost(self) -> None: ...

    def connect(self, timeout: Duration = 900) -> None:
        """Start the machine if needed and wait (at most ``timeout`` seconds) until its
        backdoor root shell answers."""
        if self.connected:
            return
        with self.lock:
            wait_for(self.lock, lambda: self.state is not RunState.RESTARTING, Deadline(timeout),
                     "the machine to be restarted after its crash")
            if self.state in (RunState.CRASHED, RunState.UNASKED_SHUTDOWN) and self.stopped is not None:
                raise self.stopped
            exiting = self.booted and self.expect_exit
        if exiting:  # a reboot without allow_reboot: QEMU exits first, then starts anew
            self.wait_for_shutdown(timeout)
        with self.nested("waiting for the VM to finish booting"):
            self.start()
            tic = time.monotonic()
            with self.logger.activity(f"{self.name}: booting",
                                      lambda: f"last console line: {self._last_serial()}"):
                said = self._greeting(Deadline(timeout), tic)
            if said.strip():
                self.log(f"guest shell says: {said!r}")
            self.backdoor_died_at = None
            self.reply_stream.reset()  # what a dead shell's copier left, and its end
            with self._or_gone("the backdoor while its helpers were installed"):
                self.shell.install(Deadline(60))
            with self.lock:
                if self.state is RunState.BOOTING:
                    self._become(RunState.READY)
            self.log(f"connected to guest root shell (in {time.monotonic() - tic:.2f}s)")
            self.logger.event("connected", machine=self.name, seconds=round(time.monotonic() - tic, 6))

    def _greeting(self, deadline: Deadline, tic: float) -> bytes:
        """Wait for the backdoor's greeting, saying every 30 s that it has not come yet."""
        while True:
            try:
                return self.shell.wait_for_greeting(Deadline(min(30.0, deadline.remaining() or 30.0)))
            except WaitTimeout:
                if deadline.expired:
                    raise WaitTimeout("the backdoor greeting 'Spawning backdoor root shell...'",
                                      deadline.timeout or 0.0,
                                      f"last serial line: {self._last_serial()!r}") from None
                self.log(f"guest root shell did not say anything yet after "
                         f"{time.monotonic() - tic:.0f}s; last serial line: {self._last_serial()!r}")
            except StreamEOF:
                raise self._stopped_error("closed the backdoor connection") from None

    def _last_serial(self) -> str:
        return self.console.last()

    def _execute(self, command: str, check_return: bool = True, check_output: bool = True,
                 timeout: Duration | None = 900) -> tuple[int, str]:
        if timeout is not None and seconds(timeout) == 0:
            timeout = None  # upstream runs `timeout 0`, which coreutils takes as no limit
        self.connect()
        if not check_output:  # as upstream, nothing is read; ours also never reads it later
            with self._command_lock:
                self.shell.start(command)
            return (-2, "")
        with self._command_lock:
            self._command_begins(command)
            interruptible = timeout is not None or self.interruptible_commands
            nonce: str | None = None
            try:
                nonce = self.shell.run(command, interruptible=interruptible)
                status, out = self._reply(nonce, command, seconds(timeout))
            except KeyboardInterrupt:
                if interruptible and nonce is not None:  # its late reply is skipped by its nonce
                    self.log(f"interrupted; killing `{command}` in the guest")
                    self.shell.interrupt(nonce, "KILL")
                raise
            except StreamEOF:
                if self.backdoor_died_at is not None and self.stopped is None:
                    # QEMU runs, the guest's shell is gone: the next command waits for its restart
                    self._backdoor_lost()
                    tail = "\n".join(f"    {line}" for line in list(self.serial_tail)[-10:])
                    raise BackdoorError(
                        f"the backdoor shell of machine {self.name!r} died while running `{command}` "
                        f"(it closed its alive port: killed, or out of memory?); the next command waits "
                        f"for the guest to restart it. Last console lines:\n{tail}") from None
                raise self._stopped_error(f"closed the backdoor while running `{command}`") from None
            finally:
                self._command_ends()
        return (status if check_return else -1), out.decode(errors="replace")

    def _reply(self, nonce: str, command: str, timeout: float | None) -> tuple[int, bytes]:
        def lingering() -> None:
            self.logger.warning(
                f"{self.name}: `{command}` exited, but a process it started still holds its stdout "
                "open; waiting until that closes (send a background process's output elsewhere: "
                "`cmd >/dev/null 2>&1 &`)")

        try:
            return self.shell.reply(nonce, Deadline(timeout), LINGER_WARNING, lingering)
        except WaitTimeout:
            pass
        self.log(f"command `{command}` exceeded its timeout of {timeout:g}s; stopping it")
        for sig in ("TERM", "KILL"):
            self.shell.interrupt(nonce, sig)
            try:
                _, out = self.shell.reply(nonce, Deadline(KILL_GRACE))
                return 124, out
            except WaitTimeout:
                continue
        raise WaitTimeout(f"command `{command}`", timeout or 0.0,
                          "still running after SIGTERM and SIGKILL to its processes")

    def shell_interact(self, address: str | None = None) -> None:
        """Connect the terminal (or a socat ``address``) to the guest's root shell; for
        interactive debugging only.  Ctrl-D or Ctrl-C ends it, and with it the shell."""
        self.connect()
        conn = self._conns["shell"]
        if address is None:
            address = "READLINE,prompt=$ "
            self.log("Terminal is ready (there is no initial prompt):")
        try:
            subprocess.run(["socat", address, f"FD:{conn.fileno()}"], pass_fds=[conn.fileno()])
        except KeyboardInterrupt:
            pass

    def switch_root(self) -> None:
        """Go from stage 1 to stage 2 of a machine whose initrd runs the backdoor
        (NixOS: ``testing.initrdBackdoor`` with systemd in the initrd), then reconnect."""
        self.wait_for_unit("initrd.target")
        self.execute("systemctl isolate --no-block initrd-switch-root.target 2>/dev/null >/dev/null",
                     check_return=False, check_output=False)
        self._backdoor_lost()
        self.connect()
