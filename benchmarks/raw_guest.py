"""A guest started by hand, without the driver: the references the driver is measured against.

``RawGuest(script, workdir, devices)`` runs a start script with QEMU arguments of one of two
sets, on the same sockets:

- ``"driver"``: what this driver adds (test_driver.machine.start_command): the shell's
  console, the reply and alive ports, the commands' stdin console (hvc1), rng, QMP, monitor;
- ``"upstream"``: what nixpkgs' driver adds: the shell's console, rng, QMP, monitor.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from test_driver.machine.start_command import Sockets, StartCommand, shell_socketpair
from test_driver.machine.supervisor import die_with_parent
from test_driver.protocol.guest_helpers import bootstrap

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def upstream_argv(script: Path, sockets: Sockets, shell_fd: int) -> list[str]:
    """nixpkgs' driver's QEMU arguments (its start command), the shell on an inherited socket."""
    argv = [str(script), "-monitor", f"unix:{sockets.monitor}",
            "-chardev", f"socket,id=shell,fd={shell_fd}",
            "-chardev", f"socket,id=qmp,path={sockets.qmp}", "-mon", "chardev=qmp,mode=control",
            "-no-reboot", "-device", "virtio-serial", "-device", "virtconsole,chardev=shell",
            "-device", "virtio-rng-pci", "-serial", "stdio"]
    if not any(var in os.environ for var in ("DISPLAY", "WAYLAND_DISPLAY")):
        argv.append("-nographic")
    return argv


class RawGuest:
    """The guest started by hand with one set of QEMU arguments: no driver involved."""

    def __init__(self, script: Path, workdir: Path, devices: str = "driver") -> None:
        self.dir = Path(tempfile.mkdtemp(dir=workdir))
        (self.dir / "shared").mkdir()
        sockets = Sockets.inside(self.dir)
        listeners = []
        for path in (sockets.qmp, sockets.monitor):
            s = socket.socket(socket.AF_UNIX)
            s.bind(str(path))
            s.listen(1)
            listeners.append(s)
        self.shell, qemus_shell = shell_socketpair()
        fds = [qemus_shell]
        self.reply: socket.socket | None = None
        if devices == "upstream":
            argv = upstream_argv(script, sockets, qemus_shell.fileno())
        else:
            self.reply, qemus_reply = socket.socketpair()
            fds.append(qemus_reply)
            argv = StartCommand(str(script)).argv(sockets, qemus_shell.fileno(), reply_fd=qemus_reply.fileno())
        env = StartCommand.environment(self.dir, self.dir / "shared")
        self.start = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=die_with_parent,
                                     pass_fds=tuple(fd.fileno() for fd in fds))
        for fd in fds:
            fd.close()
        self.others = [listener.accept()[0] for listener in listeners]
        for listener in listeners:
            listener.close()
        self.buf = b""

    def cpu_seconds(self) -> float:
        """QEMU's CPU seconds so far: the guest's work under TCG, and QEMU's own."""
        return cpu_seconds(self.proc.pid)

    def read_until(self, pattern: bytes) -> bytes:
        """Read up to ``pattern``; return what came before it (searching new bytes only)."""
        buf = bytearray(self.buf)
        start = 0
        while (at := buf.find(pattern, start)) < 0:
            start = max(0, len(buf) - len(pattern) + 1)
            data = self.shell.recv(1 << 16)
            if not data:
                raise EOFError("guest closed the shell")
            buf += data
        self.buf = bytes(buf[at + len(pattern):])
        return bytes(buf[:at])

    def wait_greeting(self) -> float:
        self.read_until(b"Spawning backdoor root shell...\n")
        return time.monotonic() - self.start

    def roundtrip(self, line: bytes, until: bytes) -> float:
        tic = time.monotonic()
        self.shell.sendall(line)
        self.read_until(until)
        return time.monotonic() - tic

    def install_helpers(self) -> None:
        """The driver's helper installation at connect, sent by hand: the bootstrap line, then
        the helpers through the reply port (``test_driver.protocol.guest_helpers``)."""
        assert self.reply is not None, "a guest with the driver's devices"
        line, helpers = bootstrap("1", "2", "c0ffee")
        self.shell.sendall(line)
        self.read_until(b"TD1 1 1 0\n\0")
        self.reply.sendall(helpers)
        self.read_until(b"TD1 2 2 0\n\0")

    def upstream_succeed_true(self) -> float:
        """What upstream's execute() sends for succeed("true"): output, then status."""
        tic = time.monotonic()
        self.shell.sendall(b"bash -c 'set -euo pipefail; true' | (base64 -w 0; echo)\n")
        self.read_until(b"\n")
        self.shell.sendall(b"echo ${PIPESTATUS[0]}\n")
        self.read_until(b"\n")
        return time.monotonic() - tic

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for s in (self.shell, *self.others, *([self.reply] if self.reply else [])):
            s.close()
