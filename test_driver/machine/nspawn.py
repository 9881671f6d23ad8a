"""NspawnMachine: a systemd-nspawn container as a test node, with the shared BaseMachine API.

As upstream's, the start script (``run-NAME-nspawn``, as nixpkgs builds them) gets an
environment of three variables only: ``RUN_NSPAWN_ROOT_DIR`` (this machine's state
directory, also its working directory), ``RUN_NSPAWN_SHARED_DIR`` (the directory shared
with the host, at /tmp/shared in the container) and ``NOTIFY_SOCKET``, a datagram socket
in the driver's private directory on which systemd-nspawn reports
``X_NSPAWN_LEADER_PID=N`` (the container's PID 1) and ``READY=1``.  nixpkgs' start
scripts print ``systemd-nspawn's PID is N``, then the container's console.  A supervisor
thread owns the script as it owns QEMU: a container whose init dies fails the waiting
call at once with a post-mortem (exit, last console lines).

The first command waits, as upstream's, until the socket has delivered ``READY=1`` and
the leader's PID.  (systemd-nspawn sends ``READY=1`` as soon as the init runs, or with
``--notify-ready=yes`` once the container's systemd has finished starting up.)  A start
script that keeps the socket from systemd-nspawn gets the older wait instead: a boot line
on the console, then until the container's systemd answers ``systemctl``.

Commands run as upstream's: ``nsenter`` into the leader's namespaces (no agent inside),
``/bin/sh -c 'set -eo pipefail; export USER=root HOME=/root DISPLAY=:0.0; source
/etc/profile; set -u; CMD'`` with an empty environment, the driver's stdin, stdout
captured; stderr is logged as the machine's serial output.

With a ``vnc`` configuration (the driver's interactive mode), the container's X display
is shown on the host while it runs (``nspawn_display.py``).
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..deadline import Deadline, Duration, wait_for
from ..errors import MachineError, MachineStopped, NotForContainers, WaitTimeout
from ..logger import AbstractLogger
from .container_commands import ContainerCommands, kill_group
from .nspawn_display import ContainerDisplay, NspawnVncConfiguration
from .supervised import RunState, SupervisedMachine
from .post_mortem import PostMortem
from ..sandbox import Sandbox, host_pid
from .start_command import MAX_SOCKET_PATH
from .supervisor import Channel, Exit, Supervisor
from .files import HostFiles
from .tty import VirtualTerminals
from .x11 import X11

BOOT_LINE = re.compile(r"Welcome to |Startup finished|Reached target")
"""A console line saying the container's init runs (for start scripts that do not notify)."""
NSPAWN_PID = re.compile(r"systemd-nspawn's PID is (\d+)")
NSENTER_NAMESPACES = ["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"]
PROBE_PATH = "/run/current-system/sw/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of the fallback readiness probe (it runs before a command would source /etc/profile)."""
STILL_WAITING = 10.0
"""Seconds between "still waiting" lines while a container boots, as upstream's."""
GRACE = 5.0
"""Seconds a container has to halt at cleanup before it is killed."""
PF_EXITING = 0x4
"""The flag of a process that is exiting (``/proc/PID/stat``, field 9)."""


def machine_name_from_start_command(start_command: str) -> str:
    match = re.search(r"run-(.+)-nspawn$", os.path.basename(start_command))
    if match is None:
        raise MachineError(f"cannot tell the container's name from {start_command!r} (run-NAME-nspawn)")
    return match[1]


class NspawnMachine(ContainerCommands, X11, HostFiles, VirtualTerminals, SupervisedMachine):
    """A systemd-nspawn container started from a NixOS-style start script."""

    KIND = "container"

    def __init__(self, out_dir: Path, tmp_dir: Path, start_command: str, logger: AbstractLogger,
                 name: str | None = None, keep_machine_state: bool = False,
                 callbacks: list[Callable[[], None]] | None = None, state_dir: Path | None = None,
                 vnc: NspawnVncConfiguration | None = None, socket_dir: Path | None = None) -> None:
        super().__init__(out_dir, name or machine_name_from_start_command(start_command), logger, tmp_dir,
                         callbacks, keep_machine_state, state_dir)
        self.start_command = start_command
        self.vnc = vnc
        self.socket_dir = socket_dir
        """A short directory of the run's for sockets (the driver's; see ``_private_notify_socket``)."""
        """Where x11vnc and TigerVNC's viewer are, to show the X display on the host (interactive runs)."""
        self._display: ContainerDisplay | None = None
        self.supervisor: Supervisor | None = None
        self.nspawn_pid: int | None = None  # systemd-nspawn, as the start script printed it
        self.init_pid: int | None = None  # the container's PID 1 (the leader)
        self.leader_pid: int | None = None  # X_NSPAWN_LEADER_PID, from the notify socket
        self.notified = False  # something came on the notify socket (the start script passed it on)
        self.notify_ready = False  # READY=1 came on the notify socket
        self.boot_line = False  # the console showed that the init runs
        self.notify_socket_path = self.tmp_dir / f"{self.name}-nspawn.sock"
        """Upstream's path, in the driver's private directory; see ``_private_notify_socket``."""
        self._notify_socket: socket.socket | None = None
        self._notify_thread: threading.Thread | None = None
        self._notify_closing = threading.Event()
        self._commands: set[subprocess.Popen[bytes]] = set()
        self.interruptible_commands = True  # Ctrl-C always stops a container's command (its process group)
        self.sandbox: Sandbox | None = None
        """The run's sandbox (set by the driver): the start script runs in its namespaces."""

    if not TYPE_CHECKING:  # type checkers must still flag what a container lacks

        def __getattr__(self, attr: str) -> Any:
            from .qemu import QemuMachine

            if not attr.startswith("_") and hasattr(QemuMachine, attr):
                raise NotForContainers(f"{attr}() needs a QEMU machine: {self.name!r} is a container "
                                       "(no display, monitor or QMP)")
            return super().__getattr__(attr)

    # --- lifecycle -------------------------------------------------------------------
    def is_up(self) -> bool:
        """True from ``start()`` until the container has ended (as upstream's, before it
        is ready for commands too)."""
        return self.booted

    def _private_notify_socket(self) -> Path:
        """Where the notify socket goes: upstream's ``TMP_DIR/NAME-nspawn.sock`` in the
        driver's private directory; if that path is too long for a unix socket, in the short
        ``socket_dir`` the driver gave (its run's, removed with the run however it ends), or
        else in a private directory of its own in /tmp (removed by ``release``)."""
        path = self.notify_socket_path
        if len(os.fsencode(path)) <= MAX_SOCKET_PATH and path.parent.is_dir():
            return path
        if self.socket_dir is not None and len(os.fsencode(self.socket_dir / "notify.sock")) <= MAX_SOCKET_PATH:
            self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            return self.socket_dir / "notify.sock"
        return Path(tempfile.mkdtemp(prefix="td-nspawn-", dir="/tmp")) / "notify.sock"

    def start(self) -> None:
        """Start the container (the start script); return at once. A no-op if it runs."""
        with self.lock:
            if self.booted:
                return
        if self.supervisor is not None:
            self.supervisor.terminate()
        self._close_notify_socket()
        self.log("starting container")
        with self.lock:
            self.stopped, self.post_mortem, self.expect_exit = None, None, False
            self.init_pid = self.leader_pid = self.nspawn_pid = None
            self.notified = self.notify_ready = self.boot_line = False
        self.console.reset()
        self.notify_socket_path = self._private_notify_socket()
        self.notify_socket_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(self.notify_socket_path))
        self._notify_socket, self._notify_closing = notify, threading.Event()
        self._notify_thread = threading.Thread(target=self._drain_notify_socket,
                                               args=(notify, self._notify_closing),
                                               name=f"notify-{self.name}", daemon=True)
        self._notify_thread.start()
        env = {"RUN_NSPAWN_ROOT_DIR": str(self.state_dir), "RUN_NSPAWN_SHARED_DIR": str(self.shared_dir),
               "NOTIFY_SOCKET": str(self.notify_socket_path)}
        self.supervisor = Supervisor(self.name)
        console = Channel("console", self._console, lambda: None)
        errors = Channel("stderr", self._console, lambda: None)
        try:
            argv = self.sandbox.wrap([self.start_command], str(self.state_dir)) if self.sandbox else [self.start_command]
            self.pid = self.supervisor.launch(argv, env, str(self.state_dir), [], console, errors, self._on_exit)
        except BaseException:
            self._close_notify_socket()
            raise
        with self.lock:
            self._become(RunState.BOOTING)
        self.log(f"systemd-nspawn running (pid {self.pid})")
        if self.vnc is not None:
            self._display = ContainerDisplay(self, self.vnc)
            self._display.start()

    def _drain_notify_socket(self, sock: socket.socket, closing: threading.Event) -> None:
        """Read the notify socket for the container's whole life (as upstream: systemd-nspawn
        blocks sending to a full socket, and the container's systemd with it), recording
        ``READY=1`` and ``X_NSPAWN_LEADER_PID``.  Ends when the socket is shut down."""
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                return
            if not data:
                if closing.is_set():
                    return
                continue  # an empty datagram
            ready, leader = False, None
            for line in data.decode(errors="replace").splitlines():
                if line == "READY=1":
                    ready = True
                elif line.startswith("X_NSPAWN_LEADER_PID=") and line[20:].isdigit():
                    leader = int(line[20:])
            if leader is not None:
                leader = self._host_pid(leader)
            with self.lock:
                self.notified = True
                self.notify_ready = self.notify_ready or ready
                if leader is not None:
                    self.leader_pid = leader
                self.lock.notify_all()

    def _close_notify_socket(self) -> None:
        sock, self._notify_socket = self._notify_socket, None
        if sock is not None:
            self._notify_closing.set()
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the drain thread up
            except OSError:
                pass
            sock.close()
            if self._notify_thread is not None:
                self._notify_thread.join(5)
            self.notify_socket_path.unlink(missing_ok=True)

    def connect(self, timeout: Duration = 900) -> None:
        """Start the container if needed and wait until it is ready for commands: as
        upstream, until systemd-nspawn has sent ``READY=1`` and the leader's PID on the
        notify socket.  Raises at once if the container ends, ``WaitTimeout`` (with the
        last console lines) after ``timeout`` seconds."""
        self.start()
        self.await_ready(timeout)

    def await_ready(self, timeout: Duration | None) -> None:
        """``connect`` without starting the container: raises if it is not running."""
        if self.connected:
            return
        deadline = Deadline(timeout)
        with self.nested("waiting for the container to finish booting"):
            if self._wait_ready(deadline) == "console":
                self.log("nothing came on NOTIFY_SOCKET (the start script did not pass it to "
                         "systemd-nspawn): waiting until the container's systemd answers instead")
                self._wait_for_manager(deadline)
                with self.lock:
                    notified = self.notified
                if notified:  # the socket works after all, its first message was late: wait for READY=1
                    self._wait_ready(deadline)
            with self.lock:
                if self.state is not RunState.BOOTING:
                    return  # (another thread saw it ready first)
                self._become(RunState.READY)
        self.log(f"container init is pid {self.init_pid}")

    def _wait_ready(self, deadline: Deadline) -> str:
        """Wait for ``READY=1`` and the leader (``"notify"``), or, if nothing came on the
        notify socket, for a boot line on the console and the init (``"console"``)."""

        def ready() -> str | None:
            self._raise_if_stopped()
            if self.notify_ready:
                if self.leader_pid is not None and Path(f"/proc/{self.leader_pid}").exists():
                    self.init_pid = self.leader_pid
                    return "notify"
                if self._find_init():  # no leader named (an old systemd-nspawn), or not one we see
                    return "notify"
            if not self.notified and self.boot_line and self._find_init():
                return "console"
            return None

        while True:
            remaining = deadline.remaining()
            step = STILL_WAITING if remaining is None else min(STILL_WAITING, remaining)
            try:
                with self.lock:
                    return wait_for(self.lock, ready, Deadline(step), f"container {self.name!r} to be ready")
            except WaitTimeout:
                remaining = deadline.remaining()
                if remaining is not None and remaining < 0.05:
                    raise WaitTimeout(f"container {self.name!r} to be ready (READY=1 on its notify socket)",
                                      deadline.timeout or 0.0, self._last_lines(),
                                      elapsed=deadline.elapsed()) from None
                self.log(f"still waiting for container '{self.name}' to reach ready state...")

    def _last_lines(self, count: int = 5) -> str:
        lines = self.console.last_lines(count)
        return "last console lines: " + (" | ".join(lines) if lines else "(none)")

    def _wait_for_manager(self, deadline: Deadline) -> None:
        """Without notifications: wait until the container's systemd answers on its bus,
        as a VM's backdoor only starts once systemd runs (not needed with another init)."""
        try:
            init = Path(f"/proc/{self.init_pid}/comm").read_text().strip()
        except OSError:
            return
        if init != "systemd":
            return
        probe = self._nsenter(["/bin/sh", "-c", "systemctl show --property=Version >/dev/null 2>&1"])

        def answers(_remaining: float | None) -> bool:
            self._raise_if_stopped()
            return subprocess.run(probe, stdin=subprocess.DEVNULL, env={"PATH": PROBE_PATH}).returncode == 0

        self._poll_until(answers, deadline.remaining(), f"container {self.name!r}'s systemd to answer",
                         self._last_lines)

    def _nsenter(self, argv: list[str]) -> list[str]:
        """``argv`` run in the container's namespaces, as upstream's: in the mount
        namespace's root, which is the container's ``/``."""
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            raise MachineError("NspawnMachine needs nsenter (util-linux) on the host")
        return [nsenter, "--target", str(self.init_pid), *NSENTER_NAMESPACES, *argv]

    def _host_pid(self, pid: int) -> int | None:
        """A PID the start script's processes named, in the driver's PID namespace (they may
        run in the sandbox's)."""
        if self.sandbox is None or not self.sandbox.isolated or self.pid is None:
            return pid
        return host_pid(self.pid, pid)

    def _container_processes(self) -> list[int]:
        """The processes of the container's PID namespace (its init's), as the driver sees them."""
        if self.init_pid is None:
            return []
        try:
            namespace = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        except OSError:
            return []
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and os.readlink(proc / "ns/pid") == namespace:
                    found.append(int(proc.name))
            except OSError:
                continue
        return found

    def _kill_container(self, why: str) -> None:
        """SIGKILL the container's init, which ends every process of its PID namespace, and
        say what was killed."""
        processes = self._container_processes()
        if not processes or self.init_pid is None:
            return
        self.logger.warning(f"{why}; killed its {len(processes)} processes", {"machine": self.name})
        try:
            os.kill(self.init_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _halt(self) -> None:
        """Ask the start script to stop (systemd-nspawn halts the container on SIGTERM).  In
        the sandbox that is nsenter's child: nsenter itself stays, and ends with it."""
        pid = self.pid
        if pid is not None and self.sandbox is not None and self.sandbox.isolated:
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                children = []
            pid = int(children[0]) if children else pid
        try:
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _raise_if_stopped(self) -> bool:
        if self.stopped is not None:
            raise self.stopped
        return False

    def _find_init(self) -> bool:
        """The container's PID 1 without notifications: the one child of systemd-nspawn
        (whose PID the start script printed; else the start script's own)."""
        if self.init_pid is not None:
            return True
        nspawn = self.nspawn_pid or self.pid
        try:
            children = Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()
        except OSError:
            return False
        if len(children) != 1:
            return False
        self.init_pid = int(children[0])
        return True

    def _init_alive(self) -> bool:
        """Whether the container's init runs: not gone, a zombie, or exiting (the kernel kills
        every process of its PID namespace, a running command too, before it is a zombie)."""
        try:
            fields = Path(f"/proc/{self.init_pid}/stat").read_text().rsplit(")", 1)[1].split()
            state, flags = fields[0], int(fields[6])
        except (OSError, IndexError, ValueError):
            return False
        return state not in ("Z", "X") and not flags & PF_EXITING

    def _console(self, data: bytes) -> None:
        for line in self.console.feed(data, errors="replace"):
            self.log_serial(line)
            nspawn = NSPAWN_PID.search(line)
            if nspawn or BOOT_LINE.search(line):
                with self.lock:
                    if nspawn and self.nspawn_pid is None:
                        self.nspawn_pid = self._host_pid(int(nspawn[1]))
                    self.boot_line = self.boot_line or not nspawn
                    self.lock.notify_all()

    def _on_exit(self, exit: Exit) -> None:
        """The supervisor saw the start script end (from its thread)."""
        if self.init_pid is not None and self._init_alive():  # systemd-nspawn went, its container stayed
            self._kill_container("systemd-nspawn ended, its container did not")
        with self.lock:
            expected = self.expect_exit
        powered_off = exit.signal is None and exit.returncode == 0  # its systemd halted, unasked
        cause = (f"crashed: the container's init died; systemd-nspawn {exit.describe()}" if not powered_off
                 else "shut itself down (systemd-nspawn exited with status 0) while no shutdown() was "
                      "asked for; its commands fail from now on. If the test expects this shutdown, say "
                      f"so with {self.name}.wait_for_shutdown(): the next command then starts it again. "
                      "Last console lines:\n" + "\n".join(f"    | {line}" for line in self.console.last_lines(10)))
        post_mortem = PostMortem(self.name, cause, exit, list(self.serial_tail), [], self.running_command,
                                 process="systemd-nspawn", abnormal=not powered_off)
        ending = RunState.SHUT_DOWN if expected else \
            RunState.UNASKED_SHUTDOWN if powered_off else RunState.CRASHED
        self._end_run(ending, cause, post_mortem)

    def _run_ended(self, stopped: MachineStopped) -> None:
        if self._display is not None:
            self._display.stop()
        with self.lock:
            self.init_pid = None
            commands = list(self._commands)
        for proc in commands:  # a command nsenter'ed into the dead container cannot finish
            kill_group(proc, signal.SIGKILL)

    def shutdown(self, timeout: Duration | None = None) -> None:
        """Power the container off from inside (``systemctl poweroff``) and wait until it ended."""
        if not self.booted:
            return
        with self.lock:
            self.expect_exit = True
        self.execute("systemctl poweroff --no-block", timeout=datetime.timedelta(seconds=60))
        self.wait_for_shutdown(timeout)

    def wait_for_shutdown(self, timeout: Duration | None = None) -> None:
        """Wait until the container has ended (at most ``timeout`` seconds; ``None``, the default:
        as long as it takes); does not stop it."""
        if self.supervisor is None:
            return
        with self.lock:
            self._accept_end()
        with self.nested("waiting for the container to power off"):
            with self.lock:
                expected, self.expect_exit = self.expect_exit, True
                try:
                    wait_for(self.lock, lambda: not self.booted, Deadline(timeout),
                             f"container {self.name!r} to end", self._last_lines)
                except WaitTimeout:  # it still runs: a death that was no shutdown's is a crash again
                    self.expect_exit = expected
                    raise
            self.supervisor.terminate()
            self._close_notify_socket()

    def release(self) -> None:
        """Stop the container: SIGTERM to the start script's group (systemd-nspawn halts the
        container), then after 5 s SIGKILL to the container's init, which ends every process
        in it, and to the group; used at cleanup."""
        if self.supervisor is None:
            self._remove_notify_dir()
            return
        if self._display is not None:
            self._display.stop()
        with self.lock:
            self.expect_exit = True
        if self.booted:
            self.logger.info(f"kill container (pid {self.pid})", {"machine": self.name})
        self.supervisor.release(lambda message: self.logger.report_error(message, {"machine": self.name}),
                                GRACE, before_kill=lambda: self._kill_container(
                                    f"container did not halt within {GRACE:g} s"), soft_stop=self._halt)
        self._close_notify_socket()
        self._remove_notify_dir()

    def _remove_notify_dir(self) -> None:
        """The private directory made for a notify socket whose upstream path was too long."""
        if self.notify_socket_path.parent not in (self.tmp_dir, self.socket_dir):
            shutil.rmtree(self.notify_socket_path.parent, ignore_errors=True)

    def ssh_backdoor_command(self, index: int | None = None) -> str:
        """The ssh command reaching this container's ssh backdoor (systemd's unix-export socket;
        ``index`` is ignored)."""
        return (f'ssh -o User=root -o ProxyCommand="socat - '
                f'UNIX-CLIENT:/run/systemd/nspawn/unix-export/{self.name}/ssh" bash')
