"""Building the QEMU command line and environment from a NixOS start script.

A start script (``run-NAME-vm`` from nixos/modules/virtualisation/qemu-vm.nix)
execs QEMU with its own options and appends ``"$@"``: the driver passes its
sockets and devices as arguments.  The script is executed directly, never
through ``sh -c``, so the process the driver starts *is* QEMU.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

from ..errors import DriverError

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the NUL
REPLY_PORT = "org.nixos.test-driver.reply"  # the guest finds them in /sys/class/virtio-ports/*/name
ALIVE_PORT = "org.nixos.test-driver.alive"
ALIVE_PORT_ID = "td-alive"
SHELL_SEND_BUFFER = 64 << 20
_SO_SNDBUFFORCE = 32  # Linux; not in Python's socket module


def shell_socketpair() -> tuple[socket.socket, socket.socket]:
    """The backdoor's transport, connected before QEMU starts: (the driver's end, QEMU's end).

    QEMU writes what the guest prints on hvc0 without blocking, and for a console
    (unlike a virtserialport) it drops whatever the socket does not take at once.
    So QEMU's end gets a send buffer of 64 MB (SO_SNDBUFFORCE, which needs
    CAP_NET_ADMIN; else SO_SNDBUF, capped by net.core.wmem_max): seconds of output
    while the driver is not scheduled, where the default 208 KiB lasts ~0.1 s.
    """
    ours, qemus = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        qemus.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, SHELL_SEND_BUFFER)
    except PermissionError:
        qemus.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SHELL_SEND_BUFFER)
    return ours, qemus


@dataclass(frozen=True)
class Sockets:
    """The sockets QEMU connects to (the shell's is a socketpair, see ``shell_socketpair``)."""

    qmp: Path
    monitor: Path

    @classmethod
    def inside(cls, directory: Path) -> "Sockets":
        sockets = cls(directory / "qmp", directory / "monitor")
        for path in (sockets.qmp, sockets.monitor):
            if len(os.fsencode(path)) > MAX_SOCKET_PATH:
                raise DriverError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
                                  "use a shorter TMPDIR")
        return sockets


class StartCommand:
    """A start script path, or (legacy ``create_machine``) a shell command line."""

    def __init__(self, command: str) -> None:
        self.command = command

    @property
    def is_script(self) -> bool:
        return not any(ch.isspace() for ch in self.command.strip())

    @property
    def machine_name(self) -> str:
        """The NAME of ``run-NAME-vm``, or ``machine``."""
        match = re.search(r"run-(.+)-vm$", os.path.basename(self.command.strip()))
        return match.group(1) if match else "machine"

    def validate(self) -> None:
        """Fail early, before any VM starts, on a start script that cannot run."""
        if not self.is_script:
            return
        path = Path(self.command)
        if not path.exists():
            raise DriverError(f"start script {path} does not exist")
        if path.is_dir() or not os.access(path, os.X_OK):
            raise DriverError(f"start script {path} is not an executable file")

    def argv(self, sockets: Sockets, shell_fd: int, allow_reboot: bool = False,
             reply_fd: int | None = None) -> list[str]:
        """QEMU's arguments; ``shell_fd`` and ``reply_fd`` are QEMU's ends of the shell's and
        the reply port's socketpairs (inherited)."""
        extra = [
            "-chardev", f"socket,id=shell,fd={shell_fd}",
            "-device", "virtio-serial",
            "-device", "virtconsole,chardev=shell",
        ]
        if reply_fd is not None:
            # The commands' replies: a virtio serial port, not a console, so that QEMU throttles
            # the guest's writer when the host does not read instead of dropping output.  The
            # alive port carries nothing: the guest's shell alone holds it open, so QMP's
            # VSERPORT_CHANGE event for its id says when that shell died.
            extra += ["-chardev", f"socket,id=tdreply,fd={reply_fd}",
                      "-device", f"virtserialport,chardev=tdreply,name={REPLY_PORT}",
                      "-chardev", "null,id=tdalive",
                      "-device", f"virtserialport,chardev=tdalive,name={ALIVE_PORT},id={ALIVE_PORT_ID}"]
        extra += [
            # hvc1, the commands' stdin: a terminal the driver never writes to (see protocol/backdoor.py)
            "-chardev", "null,id=stdin",
            "-device", "virtconsole,chardev=stdin",
            "-device", "virtio-rng-pci",
            "-chardev", f"socket,id=qmp,path={sockets.qmp}",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"socket,id=monitor,path={sockets.monitor}",
            "-mon", "chardev=monitor,mode=readline",
            "-serial", "stdio",
            # On a guest panic (pvpanic), pause: the supervisor takes a screenshot, then ends it.
            "-action", "panic=pause",
        ]
        if not allow_reboot:
            extra.append("-no-reboot")
        if not any(var in os.environ for var in ("DISPLAY", "WAYLAND_DISPLAY")):
            extra.append("-nographic")
        if self.is_script:
            return [os.path.abspath(self.command.strip()), *extra]
        # A command line: let sh parse it, but exec it so that QEMU is our child.
        return ["/bin/sh", "-c", f'exec {self.command} "$@"', "sh", *extra]

    @staticmethod
    def environment(state_dir: Path, shared_dir: Path, extra: dict[str, str] = {}) -> dict[str, str]:
        env = {**os.environ, **extra}
        env.update({"TMPDIR": str(state_dir), "SHARED_DIR": str(shared_dir), "USE_TMPDIR": "1"})
        return env

    def __repr__(self) -> str:
        return f"StartCommand({shlex.quote(self.command)})"
