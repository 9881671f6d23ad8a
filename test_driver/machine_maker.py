"""How the driver makes its machines, at the start and later (``create_machine``, a redeploy).

Each machine gets the run's directories (its sockets in a directory of its own under the
run's short socket root), its state kept at upstream's path when asked (``-K``: the next run
finds it there) or else reset, the run's VLANs, the driver's polling conditions before each
of its commands, and the driver told of its crashes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from .logger import AbstractLogger
from .machine import NspawnMachine, PostMortem, QemuMachine
from .machine.nspawn_display import NspawnVncConfiguration
from .sandbox import Sandbox
from .vlan import VLan


class MachineMaker:
    """Makes machines for one run; ``keep``: whether their state outlives it by default."""

    def __init__(self, out_dir: Path, tmp_dir: Path, socket_root: Path, logger: AbstractLogger,
                 keep: bool, sandbox: Sandbox, poll: Callable[[], None],
                 on_crash: Callable[[QemuMachine | NspawnMachine, PostMortem], None]) -> None:
        self.out_dir, self.tmp_dir, self.socket_root = out_dir, tmp_dir, socket_root
        self.logger, self.keep, self.sandbox = logger, keep, sandbox
        self.poll, self.on_crash = poll, on_crash
        self.kept_root = tmp_dir.parent
        """Where kept state lives: the temporary directory the run's own is made in."""

    def kept_state(self, name: str, keep: bool) -> Path | None:
        """Kept state must be found again by the next run, so it lives at upstream's path;
        as upstream, a run without -K resets it (the machine then uses the private dir)."""
        kept = self.kept_root / f"vm-state-{name}"
        if keep:
            return kept
        if kept.exists():
            shutil.rmtree(kept)
        return None

    def vm(self, start_command: str, name: str, vlans: list[VLan], keep: bool | None = None,
           allow_reboot: bool = False, polled: bool = True, interruptible: bool = False) -> QemuMachine:
        """A QEMU machine on ``vlans``; ``polled``: the driver's conditions run before its commands."""
        keep = self.keep if keep is None else keep
        socket_dir = self.socket_root / name
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        machine = QemuMachine(
            out_dir=self.out_dir, tmp_dir=self.tmp_dir, start_command=start_command,
            logger=self.logger, name=name, keep_machine_state=keep,
            callbacks=[self.poll] if polled else [], allow_reboot=allow_reboot,
            state_dir=self.kept_state(name, keep), socket_dir=socket_dir)
        for vlan in vlans:
            machine.extra_env.update(vlan.env)
        machine.crash_listeners.append(self.on_crash)
        machine.interruptible_commands = interruptible
        return machine

    def container(self, start_command: str, name: str,
                  vnc: NspawnVncConfiguration | None = None) -> NspawnMachine:
        """A systemd-nspawn container in the run's sandbox; ``vnc``: its display is shown."""
        machine = NspawnMachine(out_dir=self.out_dir, tmp_dir=self.tmp_dir, start_command=start_command,
                                logger=self.logger, name=name, keep_machine_state=self.keep,
                                callbacks=[self.poll], state_dir=self.kept_state(name, self.keep),
                                vnc=vnc, socket_dir=self.socket_root / name)
        machine.crash_listeners.append(self.on_crash)
        machine.sandbox = self.sandbox
        return machine
