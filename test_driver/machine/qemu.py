"""QemuMachine: one QEMU process, driven through its backdoor shell, QMP and monitor."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..deadline import Deadline, Duration, wait_for
from ..errors import (MachineStopped, QMPError,
                      WaitTimeout)
from ..logger import AbstractLogger
from ..protocol.backdoor import Backdoor
from ..protocol.monitor import Monitor
from ..protocol.qmp import QMPClient
from ..protocol.stream import Stream, StreamEOF
from .display import Display
from .session import BackdoorSession
from .post_mortem import PostMortem, RestartPolicy
from .supervised import RunState, SupervisedMachine
from .uefi import UefiVariables
from .files import HostFiles
from .tty import VirtualTerminals
from .qemu_interfaces import QemuInterfaces
from .x11 import X11
from .start_command import ALIVE_PORT_ID, Sockets, StartCommand, shell_socketpair
from .supervisor import Channel, Exit, Supervisor

LIFECYCLE_EVENTS = {"SHUTDOWN", "POWERDOWN", "RESET", "STOP", "RESUME", "GUEST_PANICKED",
                    "GUEST_CRASHLOADED", "WATCHDOG"}


class QemuMachine(BackdoorSession, QemuInterfaces, Display, X11, UefiVariables, HostFiles, VirtualTerminals,
                  SupervisedMachine):
    """A QEMU virtual machine started from a NixOS start script."""

    KIND = "VM"

    def __init__(self, out_dir: Path, tmp_dir: Path, start_command: str, logger: AbstractLogger,
                 name: str | None = None, keep_machine_state: bool = False,
                 callbacks: list[Callable[[], None]] | None = None, allow_reboot: bool = False,
                 state_dir: Path | None = None, socket_dir: Path | None = None) -> None:
        self.start_command = StartCommand(start_command)
        super().__init__(out_dir, name or self.start_command.machine_name, logger, tmp_dir,
                         callbacks, keep_machine_state, state_dir)
        self.allow_reboot = allow_reboot
        self.reboots = allow_reboot  # whether this run of QEMU resets on a reboot (no -no-reboot)
        self.extra_env: dict[str, str] = {}  # e.g. the VLANs' QEMU_VDE_SOCKET_<nr>
        self.socket_dir = socket_dir or self.state_dir
        self.sockets = Sockets.inside(self.socket_dir)
        self.supervisor: Supervisor | None = None
        self._command_lock = threading.Lock()
        self._starting = threading.Lock()
        self._conns: dict[str, socket.socket] = {}
        self.backdoor_died_at: float | None = None
        """When (time.monotonic()) the guest closed the alive port: its backdoor shell died."""
        self.shell_stream = Stream(f"{self.name} shell")
        self.reply_stream = Stream(f"{self.name} reply port")
        self.monitor_stream = Stream(f"{self.name} monitor")
        self.shell = Backdoor(self.shell_stream, self._sender("shell"), self._junk, self.reply_stream,
                              self._sender("reply"))
        self.monitor = Monitor(self.monitor_stream, self._sender("monitor"))
        self.qmp_client = QMPClient(self._sender("qmp"), f"{self.name} QMP")
        self.restart_policy: RestartPolicy | None = None
        self._released = threading.Event()
        self._restart_thread: threading.Thread | None = None
        self._panic_screenshot: Path | None = None
        self._qmp_cursor = 0

    # --- the run state ---------------------------------------------------------------
    def is_up(self) -> bool:
        """True when QEMU runs and the backdoor shell is connected."""
        return self.state is RunState.READY

    @property
    def restarting(self) -> bool:
        """It crashed, and its restart policy is starting it again."""
        return self.state is RunState.RESTARTING

    def _backdoor_lost(self) -> None:
        """The guest's shell went (a reboot, a switch of root, its death): the next command
        waits for it again."""
        with self.lock:
            if self.state is RunState.READY:
                self._become(RunState.BOOTING)

    def _sender(self, which: str) -> Callable[[bytes], None]:
        def send(data: bytes) -> None:
            conn = self._conns.get(which)
            if conn is None:
                raise self._stopped_error(f"has no {which} connection")
            try:
                conn.setblocking(True)
                conn.sendall(data)
            except OSError as exc:
                raise self._stopped_error(f"closed its {which} connection ({exc})") from None
        return send

    @contextlib.contextmanager
    def _or_gone(self, what: str) -> Iterator[None]:
        """A protocol stream that ends under a read means the machine went: the call raises
        why (its crash, with the post-mortem), never a bare end of file."""
        try:
            yield
        except StreamEOF:
            raise self._stopped_error(f"closed {what}") from None

    def _stopped_error(self, fallback: str) -> MachineStopped:
        """The reason the machine is gone, waiting up to 1 s for the supervisor's verdict."""
        if self.supervisor is not None:
            self.supervisor.wait_exit(1.0)
        with self.lock:
            return self.stopped or MachineStopped(self.name, fallback)

    def _junk(self, data: bytes) -> None:
        self.log(f"unexpected output on the backdoor shell, skipped: {data[:200]!r}")

    # --- starting --------------------------------------------------------------------
    def start(self, allow_reboot: bool = False) -> None:
        """Start QEMU; returns once QEMU runs (QMP and monitor answer), not when the guest
        has booted.  A no-op if the machine already runs."""
        self._released.clear()
        self._start(allow_reboot)

    def _start(self, allow_reboot: bool = False) -> None:
        with self._starting:  # one start at a time (a script's and the restart thread's)
            with self.lock:
                if self.booted:
                    return
            self._launch(allow_reboot)

    def _launch(self, allow_reboot: bool) -> None:
        if self.supervisor is not None:  # the last run has ended: join it, close its pipes
            self.supervisor.terminate()
        for conn in self._conns.values():
            conn.close()
        self.log("starting vm")
        listeners = {}
        for which, path in (("qmp", self.sockets.qmp), ("monitor", self.sockets.monitor)):
            path.unlink(missing_ok=True)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(1)
            listeners[which] = listener
        for stream in (self.shell_stream, self.reply_stream, self.monitor_stream):
            stream.reset()
        self.qmp_client = QMPClient(self._sender("qmp"), f"{self.name} QMP")
        self.qmp_client.listeners.append(self._on_qmp_event)
        self._qmp_cursor = 0
        self._panic_screenshot = None
        self._conns.clear()
        self.console.reset()
        with self.lock:
            self.stopped, self.post_mortem, self.expect_exit = None, None, False

        qmp = self.qmp_client
        shell, qemus_shell = shell_socketpair()
        reply, qemus_reply = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channels = [
            Channel("shell", self.shell_stream.feed, self.shell_stream.feed_eof,
                    on_connect=self._on_connect("shell"), conn=shell),
            Channel("reply", self._on_reply, self.reply_stream.feed_eof, on_connect=self._on_connect("reply"),
                    conn=reply),
            Channel("qmp", qmp.feed, qmp.feed_eof, listeners["qmp"], self._on_connect("qmp")),
            Channel("monitor", self.monitor_stream.feed, self.monitor_stream.feed_eof,
                    listeners["monitor"], self._on_connect("monitor")),
        ]
        serial = Channel("serial", self._on_serial, self._on_serial_eof)
        stderr = Channel("stderr", self._on_stderr, lambda: None)
        self.supervisor = Supervisor(self.name)
        self.reboots = allow_reboot or self.allow_reboot
        try:
            self.pid = self.supervisor.launch(
                self.start_command.argv(self.sockets, qemus_shell.fileno(),
                                        self.reboots, qemus_reply.fileno()),
                StartCommand.environment(self.state_dir, self.shared_dir,
                                         {"NIX_EFI_VARS": str(self.efi_vars_path), **self.extra_env}),
                str(self.state_dir),
                channels, serial, stderr, self._on_exit,
                pass_fds=(qemus_shell.fileno(), qemus_reply.fileno()))
            with self.lock:
                self._become(RunState.BOOTING)
            deadline = Deadline(60)
            with self.lock:
                wait_for(self.lock, lambda: "qmp" in self._conns and "monitor" in self._conns,
                         deadline, "QEMU to connect its QMP and monitor sockets", check=self._check_exited)
            with self._or_gone("its QMP or monitor socket at start"):
                qmp.handshake(deadline)
                self.monitor.wait_for_prompt(deadline)
        except BaseException:
            self.release()
            shell.close()  # (already closed by release() if the supervisor took it)
            reply.close()
            raise
        finally:
            qemus_shell.close()
            qemus_reply.close()
            for listener in listeners.values():
                listener.close()
        self.log(f"QEMU running (pid {self.pid})")

    def _check_exited(self) -> None:
        if self.stopped is not None:
            raise self.stopped

    def _on_connect(self, which: str) -> Callable[[socket.socket], None]:
        def connected(conn: socket.socket) -> None:
            with self.lock:
                self._conns[which] = conn
                self.lock.notify_all()
        return connected

    def _on_qmp_event(self, event: dict[str, Any]) -> None:
        """Runs in the supervisor thread for every QMP event."""
        name = event.get("event", "")
        data = event.get("data", {})
        if name == "VSERPORT_CHANGE" and data.get("id") == ALIVE_PORT_ID and not data.get("open"):
            # The guest closed the alive port: the backdoor shell, which alone held it, died.
            # A reply already complete is still read; a missing one fails at once.
            self.backdoor_died_at = time.monotonic()
            self.log("the backdoor shell died (the guest closed its alive port)")
            self.reply_stream.feed_eof()
        if name not in LIFECYCLE_EVENTS:
            return
        stamp = event.get("timestamp", {})
        when = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
        self.log(f"QMP event {name} {event.get('data', {})} at {time.strftime('%H:%M:%S', time.localtime(when))}"
                 f".{int(when * 1000) % 1000:03d}")
        if name == "GUEST_PANICKED":
            # QEMU was told to pause on panic: take a picture, then end it (from another
            # thread: this one must go on reading QMP to get the screendump's reply).
            threading.Thread(target=self._panic_snapshot, name=f"panic-{self.name}", daemon=True).start()

    def _panic_snapshot(self) -> None:
        target = self.out_dir / f"{self.name}-panic.png"
        try:
            self._screendump_png(target, timeout=5)
            self._panic_screenshot = target
        except (OSError, MachineStopped, QMPError, WaitTimeout) as exc:
            self.log(f"no screenshot of the panic: {exc}")
        if self.supervisor is not None:
            self.supervisor.signal_group(signal.SIGKILL)

    # --- serial console and stderr -----------------------------------------------------
    def _on_reply(self, data: bytes) -> None:
        self.reply_stream.feed(data)
        if self.running_command is not None:
            self.output_tail.add(data)

    def _restarts(self) -> int:
        return self.restart_policy.restarts if self.restart_policy is not None else 0

    def _on_serial(self, data: bytes) -> None:
        for line in self.console.feed(data):  # (as upstream: undecodable bytes dropped)
            self.logger.log_serial(line, self.name)

    def _on_serial_eof(self) -> None:
        for line in self.console.flush():
            self.logger.log_serial(line, self.name)

    def _on_stderr(self, data: bytes) -> None:
        # Upstream's QEMU writes its stderr into the serial stream: its lines are console lines
        # there (get_console_log, wait_for_console_text); here they are also logged as QEMU's.
        for line in data.decode(errors="ignore").splitlines():
            if line.strip():
                self.console.add(line, shown_as="[qemu stderr] ")
                self.log(f"qemu: {line}")

    # --- the end of a run ----------------------------------------------------------------
    def _on_exit(self, exit: Exit) -> None:
        """Called by the supervisor thread once QEMU has exited and its pipes are drained."""
        events = self.qmp_client.recent(10)
        names = [e.get("event") for e in events]
        shutdown = next((e for e in reversed(events) if e.get("event") == "SHUTDOWN"), None)
        reason = (shutdown or {}).get("data", {}).get("reason", "")
        panicked = "GUEST_PANICKED" in names or reason == "guest-panic" or any(
            "Kernel panic" in line for line in self.serial_tail)
        with self.lock:
            expected = self.expect_exit
        abnormal = True
        if panicked:
            cause = "crashed: the guest kernel panicked"
        elif exit.signal is not None or exit.returncode != 0:
            cause = f"crashed: QEMU {exit.describe()}"
        elif shutdown is not None:
            cause, abnormal = f"was shut down ({reason or 'QMP SHUTDOWN'})", False
        else:
            cause = f"crashed: QEMU {exit.describe()} without a shutdown event"
        ending = RunState.CRASHED if abnormal and not expected else \
            RunState.SHUT_DOWN if expected else RunState.UNASKED_SHUTDOWN
        policy = self.restart_policy
        delay = policy.next_delay() if ending is RunState.CRASHED and policy else None
        if policy and delay is not None and not self._released.is_set():
            cause += f"; restarting it in {delay:g}s (restart {policy.restarts} of {policy.max_restarts})"
            ending = RunState.RESTARTING
        elif ending is RunState.CRASHED and policy:
            cause += f"; no restart left (max_restarts={policy.max_restarts})"
        post_mortem = PostMortem(self.name, cause, exit, list(self.serial_tail), events, self.running_command,
                                 screenshot=self._panic_screenshot, abnormal=abnormal)
        if ending is RunState.UNASKED_SHUTDOWN:
            cause = self._unasked_shutdown(shutdown or {}, reason)
        self._end_run(ending, cause, post_mortem)
        if ending is RunState.RESTARTING and delay is not None:
            self._restart_thread = threading.Thread(target=self._restart, args=(delay,),
                                                    name=f"restart-{self.name}", daemon=True)
            self._restart_thread.start()

    def _run_ended(self, stopped: MachineStopped) -> None:
        for stream in (self.shell_stream, self.reply_stream, self.monitor_stream):
            stream.fail(stopped)
        self.qmp_client.fail(stopped)
        self.console.wake()

    def _unasked_shutdown(self, event: dict[str, Any], reason: str) -> str:
        """Why the next command fails: the guest went down by itself."""
        stamp = event.get("timestamp", {})
        when = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
        at = f" at {time.strftime('%H:%M:%S', time.localtime(when))}.{int(when * 1000) % 1000:03d}" if when else ""
        tail = "\n".join(f"    | {line}" for line in list(self.serial_tail)[-10:])
        return (f"shut itself down (QMP SHUTDOWN event{at}, reason {reason or 'unknown'}) while no "
                f"shutdown(), crash() or reboot() was asked for; its commands fail from now on. "
                f"If the test expects this shutdown, say so with {self.name}.wait_for_shutdown(): "
                f"the next command then boots it again. Last console lines:\n{tail}")

    def _restart(self, delay: float) -> None:
        try:
            if self._released.wait(delay):
                return
            restart = self.restart_policy.restarts if self.restart_policy else 0
            self.log(f"restarting after crash (restart {restart})")
            self.logger.event("restart", machine=self.name, restart=restart, delay=delay)
            self._start()
        except Exception as exc:
            self.logger.report_error(f"restart failed: {exc}", {"machine": self.name})
        finally:
            with self.lock:
                if self.state is RunState.RESTARTING:  # it did not come back
                    self._become(RunState.CRASHED)

    def supervise(self, restart: bool = True, max_restarts: int = 3, backoff: float = 1.0) -> None:
        """Set what happens when this machine crashes (off by default, as upstream).

        With ``restart=True`` a crashed machine is started again after ``backoff``
        seconds, then ``2*backoff``, ``4*backoff``..., at most ``max_restarts`` times
        over the test.  The call that was running when it crashed still raises
        ``MachineCrashed``; the next command waits for the restarted machine.
        Each crash and restart is logged, and the driver is notified.
        ``restart=False`` turns restarting off again.
        """
        self.restart_policy = RestartPolicy(max_restarts, backoff) if restart else None

    # --- lifecycle --------------------------------------------------------------------------
    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """QEMU's process, as upstream's attribute (``machine.process.poll()``); None before the
        first start.  The machine's supervisor thread owns it: a script that kills it gets a
        crash, reported as any other."""
        return self.supervisor.process if self.supervisor is not None else None

    def _expect_exit(self) -> None:
        with self.lock:
            self.expect_exit = True

    def wait_for_shutdown(self, timeout: Duration | None = None) -> None:
        """Wait until QEMU has exited (at most ``timeout`` seconds; ``None``, the default, as
        upstream: as long as it takes, a crash still ends the wait at once); does not start a shutdown.
        A death awaited here is not an error, whatever its cause, even one that came
        before this call: the next command starts the machine again."""
        if not self.booted or self.supervisor is None:
            with self.lock:
                self._accept_end()
            return
        with self.lock:
            expected, self.expect_exit = self.expect_exit, True
        with self.nested("waiting for the VM to power off"):
            sys.stdout.flush()
            with self.lock:
                try:
                    wait_for(self.lock, lambda: not self.booted, Deadline(timeout),
                             "the VM to power off", lambda: f"last serial line: {self._last_serial()!r}")
                except WaitTimeout:  # it still runs: a death that was no shutdown's is a crash again
                    self.expect_exit = expected
                    raise
            self.supervisor.terminate()
            if self.post_mortem is not None and self.post_mortem.abnormal:
                self.log(f"the awaited shutdown was a crash: {self.post_mortem.cause}")

    def shutdown(self, timeout: Duration | None = None) -> None:
        """Power the machine off from inside (``poweroff``) and wait until QEMU exited."""
        if not self.booted:
            return
        self.connect()  # (before the exit is expected: connect() would wait for it)
        self._expect_exit()
        self.shell.run("poweroff")
        self.wait_for_shutdown(timeout)

    def crash(self) -> None:
        """Simulate a power failure: QEMU quits at once."""
        if not self.booted:
            return
        self.log("forced crash")
        self._expect_exit()
        try:
            self.send_monitor_command("quit")
        except (MachineStopped, StreamEOF):
            pass
        self.wait_for_shutdown()

    def reboot(self) -> None:
        """Press Ctrl+Alt+Delete; the next command reconnects to the rebooted machine.
        Without ``allow_reboot`` QEMU exits instead and the next command starts it again."""
        if not self.reboots:
            self._expect_exit()
        self.send_key("ctrl-alt-delete")
        self._backdoor_lost()

    def release(self) -> None:
        """Stop QEMU (SIGTERM, then SIGKILL after 5 s) and free its sockets; used at cleanup."""
        self._released.set()
        if self._restart_thread is not None:
            self._restart_thread.join()
        if self.supervisor is None:
            return
        self._expect_exit()
        if self.pid is not None:
            self.logger.info(f"kill machine (pid {self.pid})", {"machine": self.name})
        self.supervisor.release(lambda message: self.logger.report_error(message, {"machine": self.name}))
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        for path in (self.sockets.qmp, self.sockets.monitor):
            path.unlink(missing_ok=True)

    def ssh_backdoor_command(self, index: int | None = None) -> str:
        """The ssh command reaching this machine's vsock ssh backdoor number ``index`` (the
        ``--dump-vsocks`` numbering).  Without ``index``, as upstream's with the ssh backdoor
        off: an AssertionError (this driver has no vhost-device-vsock backdoor)."""
        if index is None:
            raise AssertionError(f"machine {self.name!r} has no ssh backdoor: this driver offers "
                                 "only the --dump-vsocks one, numbered (ssh_backdoor_command(N))")
        return f"ssh -o User=root vsock/{index}"
