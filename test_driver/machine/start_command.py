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
from dataclasses import dataclass
from pathlib import Path

from ..errors import DriverError

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the NUL


@dataclass(frozen=True)
class Sockets:
    shell: Path
    qmp: Path
    monitor: Path

    @classmethod
    def inside(cls, directory: Path) -> "Sockets":
        sockets = cls(directory / "shell", directory / "qmp", directory / "monitor")
        for path in (sockets.shell, sockets.qmp, sockets.monitor):
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

    def argv(self, sockets: Sockets, allow_reboot: bool = False) -> list[str]:
        extra = [
            "-chardev", f"socket,id=shell,path={sockets.shell}",
            "-device", "virtio-serial",
            "-device", "virtconsole,chardev=shell",
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
