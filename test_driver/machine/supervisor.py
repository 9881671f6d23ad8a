"""One thread per machine that owns its QEMU process and every fd of it.

The supervisor thread spawns QEMU (so the kernel's parent-death signal, bound to
the spawning thread, kills QEMU if the driver itself is killed), then waits in
one ``selector`` on: the process (a pidfd), its stdout (serial) and stderr
pipes, the listening sockets QEMU connects to (QMP, monitor) and sockets
connected beforehand (the shell's socketpair, handed to QEMU as an fd).  Bytes
are handed to each channel's ``feed``; the moment QEMU exits, the supervisor
drains the pipes, signals the whole process group, ends every channel and calls
``on_exit`` with how the process ended.  Nobody else kills or closes these.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..deadline import Deadline

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_parent_by(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` giving the child ``sig`` when its parent (thread) ends."""
    def preexec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return preexec


def end_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a helper process (SIGKILL after 5 s) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SupervisorStuck(RuntimeError):
    """The supervisor thread did not finish after its process was killed."""


@dataclass
class Channel:
    """Something to read: a listening socket (accepts one connection), a socket
    connected already (``conn``), or a pipe."""

    name: str
    feed: Callable[[bytes], None]
    feed_eof: Callable[[], None]
    listener: socket.socket | None = None
    on_connect: Callable[[socket.socket], None] = lambda conn: None
    conn: socket.socket | None = None


@dataclass(frozen=True)
class Exit:
    """How a process ended."""

    returncode: int
    at: float

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by signal {self.signal} ({signal.Signals(self.signal).name})"
        return f"exited with status {self.returncode}"


class Supervisor:
    def __init__(self, name: str) -> None:
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.exit: Exit | None = None
        self.thread: threading.Thread | None = None
        self._spawned = threading.Event()
        self._exited = threading.Event()
        self._spawn_error: BaseException | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def launch(self, argv: list[str], env: dict[str, str], cwd: str,
               channels: list[Channel], serial: Channel, stderr: Channel,
               on_exit: Callable[[Exit], None], pass_fds: tuple[int, ...] = ()) -> int:
        """Start the process from the supervisor thread; return its pid.  The process
        inherits ``pass_fds``; the caller closes its copies once this returns."""
        self.thread = threading.Thread(
            target=self._run, name=f"supervisor-{self.name}",
            args=(argv, env, cwd, channels, serial, stderr, on_exit, pass_fds), daemon=True)
        self.thread.start()
        self._spawned.wait()
        if self._spawn_error is not None:
            self.thread.join()
            raise self._spawn_error
        assert self.process is not None
        return self.process.pid

    def _run(self, argv: list[str], env: dict[str, str], cwd: str, channels: list[Channel],
             serial: Channel, stderr: Channel, on_exit: Callable[[Exit], None],
             pass_fds: tuple[int, ...]) -> None:
        try:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=cwd, env=env, start_new_session=True, preexec_fn=die_with_parent,
                pass_fds=pass_fds)
        except OSError as exc:
            self._spawn_error = exc
            self._spawned.set()
            return
        proc = self.process
        assert proc.stdout is not None and proc.stderr is not None
        pidfd = os.pidfd_open(proc.pid)
        self._spawned.set()
        sel = selectors.DefaultSelector()
        try:
            sel.register(pidfd, selectors.EVENT_READ, "exit")
            for pipe, channel in ((proc.stdout, serial), (proc.stderr, stderr)):
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe.fileno(), selectors.EVENT_READ, channel)
            for channel in channels:
                if channel.listener is not None:
                    sel.register(channel.listener, selectors.EVENT_READ, ("accept", channel))
                else:
                    assert channel.conn is not None
                    self._watch(sel, channel, channel.conn)
            exited = False
            while not exited:
                for key, _ in sel.select():
                    if key.data == "exit":
                        exited = True
                    elif isinstance(key.data, tuple):
                        self._accept(sel, key.data[1])
                    else:
                        self._read(sel, key.fd, key.data)
            returncode = proc.wait()
            self.exit = Exit(returncode, time.time())
            self._drain(sel, Deadline(0.5))
        finally:
            self._kill_group(signal.SIGKILL)
            for channel in channels:
                if channel.conn is not None:
                    try:
                        channel.conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            for channel in (serial, stderr, *channels):
                channel.feed_eof()
            sel.close()
            os.close(pidfd)
            if self.exit is None:
                self.exit = Exit(proc.wait(), time.time())
            try:
                on_exit(self.exit)
            finally:
                self._exited.set()

    def _accept(self, sel: selectors.BaseSelector, channel: Channel) -> None:
        assert channel.listener is not None
        conn, _ = channel.listener.accept()
        sel.unregister(channel.listener)
        self._watch(sel, channel, conn)

    @staticmethod
    def _watch(sel: selectors.BaseSelector, channel: Channel, conn: socket.socket) -> None:
        conn.setblocking(False)
        channel.conn = conn
        sel.register(conn, selectors.EVENT_READ, channel)
        channel.on_connect(conn)

    @staticmethod
    def _read(sel: selectors.BaseSelector, fd: int, channel: Channel) -> bool:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if data:
            channel.feed(data)
            return True
        sel.unregister(fd)
        return False

    def _drain(self, sel: selectors.BaseSelector, deadline: Deadline) -> None:
        """After the exit: read what is left in pipes and sockets, until EOF or deadline."""
        readers = {key.fd: key.data for key in sel.get_map().values()
                   if isinstance(key.data, Channel)}
        while readers and not deadline.expired:
            for key, _ in sel.select(deadline.remaining()):
                if key.fd in readers and not self._read(sel, key.fd, readers[key.fd]):
                    del readers[key.fd]

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to QEMU's process group (the exit is then handled as usual)."""
        self._kill_group(sig)

    def _kill_group(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, grace: float = 5.0, stuck: float = 10.0, before_kill: Callable[[], None] | None = None,
                  soft_stop: Callable[[], None] | None = None) -> Exit | None:
        """SIGTERM the process group (or ``soft_stop()``), SIGKILL after ``grace`` seconds
        (``before_kill`` runs first: what else must die with it); wait for the thread.

        Raises ``SupervisorStuck`` if the thread has not handled the exit ``stuck``
        seconds after the SIGKILL (it is blocked in a callback): the process group
        is dead by then, and the caller goes on without the thread.
        """
        if self.thread is None:
            return None
        if not self._exited.is_set():
            if soft_stop is not None:
                soft_stop()
            else:
                self._kill_group(signal.SIGTERM)
            if not self._exited.wait(grace):
                if before_kill is not None:
                    before_kill()
                self._kill_group(signal.SIGKILL)
        if not self._exited.wait(stuck):
            raise SupervisorStuck(f"the supervisor thread of {self.name} did not handle QEMU's exit "
                                  f"{stuck:g}s after SIGKILL to its process group")
        self.thread.join()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr) if self.process else ():
            if stream is not None:
                stream.close()
        return self.exit

    def release(self, report: Callable[[str], None], grace: float = 5.0, stuck: float = 10.0,
                before_kill: Callable[[], None] | None = None, soft_stop: Callable[[], None] | None = None) -> None:
        """``terminate`` at cleanup: a stuck thread is reported, not raised, so the
        cleanup of everything else goes on."""
        try:
            self.terminate(grace, stuck, before_kill, soft_stop)
        except SupervisorStuck as exc:
            report(f"{exc}; cleaning up without it")

    def wait_exit(self, timeout: float | None) -> Exit | None:
        """Wait until the process has exited and been handled; None on timeout."""
        return self.exit if self._exited.wait(timeout) else None
