"""NspawnMachine: a systemd-nspawn container as a test node, with the shared BaseMachine API.

The start script (``run-NAME-nspawn``, as nixpkgs builds them) runs with
``RUN_NSPAWN_ROOT_DIR`` (this machine's state directory) and
``RUN_NSPAWN_SHARED_DIR`` (the directory shared with the host, at /tmp/shared in
the container), prints ``systemd-nspawn's PID is N`` and the container's console.
A supervisor thread owns it as it owns QEMU: a container whose init dies fails
the waiting call at once with a post-mortem (exit, last console lines).

Commands run in the container's namespaces with ``nsenter`` (no agent inside):
bash with ``set -euo pipefail`` where the container has bash, else sh.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..deadline import Deadline, Duration, seconds, wait_for
from ..errors import MachineCrashed, MachineError, MachineStopped, WaitTimeout
from ..logger import AbstractLogger
from .base import BaseMachine, wait_until
from .qemu import SERIAL_TAIL, PostMortem
from .supervisor import Channel, Exit, Supervisor

READY = re.compile(r"Welcome to |Startup finished|Reached target")
SHELL = ('if [ -x /bin/bash ]; then exec /bin/bash -c "set -euo pipefail; $0"; '
         'else exec /bin/sh -c "set -eu; $0"; fi')
NSENTER_NAMESPACES = ["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"]
ENVIRONMENT = {"PATH": "/run/wrappers/bin:/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:"
               "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "USER": "root", "TERM": "dumb"}


def machine_name_from_start_command(start_command: str) -> str:
    match = re.search(r"run-(.+)-nspawn$", os.path.basename(start_command))
    if match is None:
        raise MachineError(f"cannot tell the container's name from {start_command!r} (run-NAME-nspawn)")
    return match[1]


class NspawnMachine(BaseMachine):
    """A systemd-nspawn container started from a NixOS-style start script."""

    def __init__(self, out_dir: Path, tmp_dir: Path, start_command: str, logger: AbstractLogger,
                 name: str | None = None, keep_machine_state: bool = False,
                 callbacks: list[Callable[[], None]] | None = None, state_dir: Path | None = None) -> None:
        super().__init__(out_dir, name or machine_name_from_start_command(start_command), logger, tmp_dir,
                         callbacks, keep_machine_state, state_dir)
        self.start_command = start_command
        self.lock = threading.Condition()  # guards the run state below
        self.supervisor: Supervisor | None = None
        self.pid: int | None = None  # systemd-nspawn
        self.init_pid: int | None = None  # the container's PID 1
        self.ready = False
        self.booted = False
        self.stopped: MachineStopped | None = None
        self.post_mortem: PostMortem | None = None
        self.expect_exit = False
        self.running_command: str | None = None
        self.serial_tail: collections.deque[str] = collections.deque(maxlen=SERIAL_TAIL)
        self.crash_listeners: list[Callable[[Any, PostMortem], None]] = []
        self._partial = b""
        self._commands: set[subprocess.Popen[bytes]] = set()
        self.interruptible_commands = True  # Ctrl-C always stops a container's command (its process group)

    if not TYPE_CHECKING:  # type checkers must still flag what a container lacks

        def __getattr__(self, attr: str) -> Any:
            from .qemu import QemuMachine

            if not attr.startswith("_") and hasattr(QemuMachine, attr):
                raise MachineError(f"{attr}() needs a QEMU machine: {self.name!r} is a container "
                                   "(no display, monitor or QMP)")
            return super().__getattr__(attr)

    # --- lifecycle -------------------------------------------------------------------
    def is_up(self) -> bool:
        """True when the container runs and its init is known."""
        return self.booted and self.init_pid is not None

    def start(self) -> None:
        """Start the container (the start script); return at once. A no-op if it runs."""
        with self.lock:
            if self.booted:
                return
        if self.supervisor is not None:
            self.supervisor.terminate()
        self.log("starting container")
        with self.lock:
            self.stopped, self.post_mortem, self.expect_exit = None, None, False
            self.ready, self.init_pid, self._partial = False, None, b""
        self.serial_tail.clear()
        env = {**os.environ, "RUN_NSPAWN_ROOT_DIR": str(self.state_dir),
               "RUN_NSPAWN_SHARED_DIR": str(self.shared_dir)}
        self.supervisor = Supervisor(self.name)
        console = Channel("console", self._console, lambda: None)
        errors = Channel("stderr", self._console, lambda: None)
        self.pid = self.supervisor.launch([self.start_command], env, str(self.state_dir), [], console, errors,
                                          self._on_exit)
        with self.lock:
            self.booted = True
            self.lock.notify_all()
        self.log(f"systemd-nspawn running (pid {self.pid})")

    def connect(self, timeout: Duration = 900) -> None:
        """Start the container if needed and wait until its init runs and a command works."""
        self.start()
        deadline = Deadline(timeout)
        with self.nested("waiting for the container to finish booting"):
            with self.lock:
                wait_for(self.lock, lambda: self._raise_if_stopped() or (self.ready and self._find_init()),
                         deadline, f"container {self.name!r} to boot",
                         lambda: f"last console line: {self.serial_tail[-1] if self.serial_tail else '(none)'!r}")
            self._wait_for_manager(deadline)
        self.log(f"container init is pid {self.init_pid}")

    def _wait_for_manager(self, deadline: Deadline) -> None:
        """A VM's backdoor only starts once systemd runs: a container's first command likewise
        waits until its systemd answers on its bus (not needed with another init)."""
        try:
            init = Path(f"/proc/{self.init_pid}/comm").read_text().strip()
        except OSError:
            return
        if init != "systemd":
            return
        probe = self._nsenter("systemctl show --property=Version >/dev/null 2>&1")

        def answers(_last_try: bool) -> bool:
            self._raise_if_stopped()
            return subprocess.run(probe, stdin=subprocess.DEVNULL, env=ENVIRONMENT).returncode == 0

        wait_until(answers, deadline.remaining(), f"container {self.name!r}'s systemd to answer",
                   lambda: f"last console line: {self.serial_tail[-1] if self.serial_tail else '(none)'!r}")

    def _nsenter(self, command: str) -> list[str]:
        """The command line running ``command`` in the container, in the directory of its init (``/``;
        ``--wd=PATH`` would name a directory of the host)."""
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            raise MachineError("NspawnMachine needs nsenter (util-linux) on the host")
        return [nsenter, "--target", str(self.init_pid), *NSENTER_NAMESPACES, "--root", "--wd",
                "/bin/sh", "-c", SHELL, command]

    def _raise_if_stopped(self) -> bool:
        if self.stopped is not None:
            raise self.stopped
        return False

    def _find_init(self) -> bool:
        """The container's PID 1: the one child of systemd-nspawn."""
        if self.init_pid is not None:
            return True
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return False
        if len(children) != 1:
            return False
        self.init_pid = int(children[0])
        return True

    def _init_alive(self) -> bool:
        try:
            state = Path(f"/proc/{self.init_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")

    def _console(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", raw.decode(errors="replace")).rstrip("\r")
            self.serial_tail.append(line)
            self.log_serial(line)
            if READY.search(line):
                with self.lock:
                    self.ready = True
                    self.lock.notify_all()

    def _on_exit(self, exit: Exit) -> None:
        """The supervisor saw systemd-nspawn end (from its thread)."""
        with self.lock:
            expected = self.expect_exit
            cause = f"crashed: the container's init died; systemd-nspawn {exit.describe()}"
            self.post_mortem = PostMortem(self.name, cause, exit, list(self.serial_tail), [],
                                          self.running_command)
            if not expected:  # on disk before any waiter wakes up with the error that points to it
                (self.out_dir / f"{self.name}-post-mortem.txt").write_text(self.post_mortem.summary() + "\n")
            self.stopped = (MachineStopped(self.name, "was shut down") if expected
                            else MachineCrashed(self.name, cause, self.post_mortem))
            self.booted, self.ready, self.init_pid = False, False, None
            self.lock.notify_all()
            commands = list(self._commands)
        for proc in commands:  # a command nsenter'ed into the dead container cannot finish
            _kill_group(proc, signal.SIGKILL)
        if expected:
            self.log(f"container stopped: systemd-nspawn {exit.describe()}")
            return
        self.logger.report_error(self.post_mortem.summary(), {"machine": self.name})
        self.logger.event("crash", machine=self.name, cause=cause, exit=exit.describe(),
                          running_command=self.running_command)
        for listener in self.crash_listeners:
            listener(self, self.post_mortem)

    def shutdown(self, timeout: Duration | None = None) -> None:
        """Power the container off from inside (``systemctl poweroff``) and wait until it ended."""
        if not self.booted:
            return
        with self.lock:
            self.expect_exit = True
        self.execute("systemctl poweroff --no-block", check_output=True, timeout=60)
        self.wait_for_shutdown(timeout)

    def wait_for_shutdown(self, timeout: Duration | None = None) -> None:
        """Wait until the container has ended (at most ``timeout`` seconds; ``None``, the default:
        as long as it takes); does not stop it."""
        if self.supervisor is None:
            return
        with self.nested("waiting for the container to power off"):
            with self.lock:
                self.expect_exit = True
                wait_for(self.lock, lambda: not self.booted, Deadline(timeout), f"container {self.name!r} to end",
                         lambda: f"last console line: {self.serial_tail[-1] if self.serial_tail else '(none)'!r}")
            self.supervisor.terminate()

    def release(self) -> None:
        """Stop the container (SIGTERM to systemd-nspawn's group, SIGKILL after 5 s); used at cleanup."""
        if self.supervisor is None:
            return
        with self.lock:
            self.expect_exit = True
        if self.booted:
            self.logger.info(f"kill container (pid {self.pid})", {"machine": self.name})
        self.supervisor.release(lambda message: self.logger.report_error(message, {"machine": self.name}))

    def ssh_backdoor_command(self, index: int) -> str:
        """The ssh command reaching this container's ssh backdoor (systemd's unix-export socket)."""
        return (f'ssh -o User=root -o ProxyCommand="socat - '
                f'UNIX-CLIENT:/run/systemd/nspawn/unix-export/{self.name}/ssh" bash')

    # --- commands ------------------------------------------------------------------------
    def _execute(self, command: str, check_return: bool = True, check_output: bool = True,
                 timeout: Duration | None = 900) -> tuple[int, str]:
        with self.lock:  # after a crash commands fail until start(); after a shutdown they start it again
            if isinstance(self.stopped, MachineCrashed):
                raise self.stopped
        if not self.is_up():
            self.connect()
        proc = subprocess.Popen(self._nsenter(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=ENVIRONMENT, start_new_session=True)
        if not check_output:
            threading.Thread(target=proc.communicate, daemon=True).start()
            return (-2, "")
        with self.lock:
            self._commands.add(proc)
            self.running_command = command
        try:
            status, out, err = self._wait(proc, command, timeout)
            for line in err.decode(errors="replace").splitlines():
                self.log_serial(line)
            with self.lock:
                if status < 0 or not self._init_alive():
                    # Killed, or the container's init died under the command (which kills every
                    # process of its PID namespace): let the supervisor see systemd-nspawn end.
                    try:
                        wait_for(self.lock, lambda: self.stopped is not None, Deadline(2),
                                 "systemd-nspawn to end", lambda: "it still runs")
                    except WaitTimeout:
                        pass
                if isinstance(self.stopped, MachineCrashed):
                    raise self.stopped
        finally:
            with self.lock:
                self._commands.discard(proc)
                self.running_command = None
        return (status if check_return else -1), out.decode(errors="replace")

    def _wait(self, proc: subprocess.Popen[bytes], command: str,
              timeout: Duration | None) -> tuple[int, bytes, bytes]:
        """The command's status and output; past ``timeout``: TERM, KILL 2 s later, status 124."""
        try:
            out, err = proc.communicate(timeout=seconds(timeout))
            return proc.returncode, out, err
        except subprocess.TimeoutExpired:
            self.log(f"command `{command}` exceeded its timeout of {seconds(timeout):g}s; stopping it")
            _kill_group(proc, signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=2)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                out, err = proc.communicate()
            return 124, out, err
        except KeyboardInterrupt:
            _kill_group(proc, signal.SIGKILL)
            raise


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
