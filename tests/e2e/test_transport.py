"""The backdoor's transport on a real QEMU: what happens while the host does not read.

QEMU writes the guest's hvc0 output to the shell socket without blocking and, for a
console, drops what the socket does not take.  The tiny guest is started by hand with
the driver's own QEMU arguments, and a reader that can be paused stands in for a
driver that is not scheduled for a while.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import socket
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import tiny

from test_driver.deadline import Deadline
from test_driver.errors import BackdoorError
from test_driver.machine.start_command import Sockets, StartCommand, shell_socketpair
from test_driver.machine.supervisor import die_with_parent
from test_driver.protocol.backdoor import Backdoor
from test_driver.protocol.stream import Stream


class HandStartedGuest:
    def __init__(self, guest: tiny.Guest, workdir: Path, shell: socket.socket, qemus: socket.socket) -> None:
        (workdir / "shared").mkdir()
        sockets = Sockets.inside(workdir)
        self.listeners = []
        for path in (sockets.qmp, sockets.monitor):  # QEMU connects; nobody needs to answer
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(str(path))
            listener.listen(1)
            self.listeners.append(listener)
        script = tiny.write_start_script(workdir, "machine", guest)
        self.proc = subprocess.Popen(
            StartCommand(str(script)).argv(sockets, qemus.fileno()),
            env=StartCommand.environment(workdir, workdir / "shared"), cwd=workdir,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent, pass_fds=(qemus.fileno(),))
        qemus.close()
        self.shell = shell
        self.stream = Stream("shell")
        self.reading = threading.Event()
        self.reading.set()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.backdoor = Backdoor(self.stream, shell.sendall)
        self.backdoor.wait_for_greeting(Deadline(60))
        self.backdoor.install(Deadline(10))

    def _read(self) -> None:
        while self.reading.wait() and (data := self.shell.recv(1 << 16)):
            self.stream.feed(data)
        self.stream.feed_eof()

    def run_unread(self, command: str, pause: float, timeout: float = 60) -> tuple[int, bytes]:
        """Run ``command`` while the host reads nothing for ``pause`` seconds."""
        self.reading.clear()
        nonce = self.backdoor.run(command, interruptible=False)
        time.sleep(pause)
        self.reading.set()
        return self.backdoor.reply(nonce, Deadline(timeout))

    def run_past_a_full_socket(self, command: str, timeout: float = 60) -> tuple[int, bytes]:
        """Run ``command``; read nothing until QEMU's end of the socket is full (the
        bytes queued for us stop growing: QEMU drops output from then on)."""
        self.reading.clear()
        nonce = self.backdoor.run(command, interruptible=False)
        deadline, last = Deadline(30), -1
        while (queued := self.queued()) < 2000 or queued != last:  # (the header alone: ~40)
            assert deadline.remaining() != 0.0, f"the socket never filled ({queued} bytes queued)"
            last = queued
            time.sleep(0.01)
        self.reading.set()
        return self.backdoor.reply(nonce, Deadline(timeout))

    def queued(self) -> int:
        count = array.array("i", [0])
        fcntl.ioctl(self.shell.fileno(), termios.FIONREAD, count)
        return count[0]

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reading.set()
        self.shell.close()
        for listener in self.listeners:
            listener.close()


@pytest.fixture
def start(guest: tiny.Guest, tmp_path: Path) -> Iterator:
    started: list[HandStartedGuest] = []

    def go(shell: socket.socket, qemus: socket.socket) -> HandStartedGuest:
        workdir = tmp_path / str(len(started))
        workdir.mkdir()
        started.append(HandStartedGuest(guest, workdir, shell, qemus))
        return started[-1]

    yield go
    for g in started:
        g.close()


# 3 MB take the guest about a second to print; the host reads nothing for 4 s.
BIG = "head -c 3000000 /dev/zero | tr '\\0' a"


def test_the_driver_s_transport_holds_seconds_of_output_unread(start):
    g = start(*shell_socketpair())
    assert g.run_unread(BIG, pause=4) == (0, b"a" * 3_000_000)
    assert g.run_unread("echo still in step", pause=0) == (0, b"still in step\n")


def test_bytes_qemu_dropped_fail_the_reply_at_once_and_the_shell_goes_on(start):
    shell, qemus = socket.socketpair()
    qemus.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the kernel's minimum, about
    g = start(shell, qemus)
    tic = time.monotonic()
    with pytest.raises(BackdoorError, match=r"lost \d+ of its 12000000 bytes on the way"):
        # 12 MB: once QEMU drops, the guest prints unhindered, yet not all of it within 10 ms
        g.run_past_a_full_socket("head -c 12000000 /dev/zero | tr '\\0' a", timeout=60)
    assert time.monotonic() - tic < 20  # not the 60 s of the deadline
    assert g.run_unread("echo still in step", pause=0) == (0, b"still in step\n")
