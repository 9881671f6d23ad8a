"""Machines: the shared API (BaseMachine), QEMU virtual machines (QemuMachine) and
systemd-nspawn containers (NspawnMachine); ``machine`` for a test's only machine of
another name (MachineDeprecationWrapper).

``Machine`` is the old name of ``QemuMachine`` and stays importable.
"""

from .base import BaseMachine, make_command, retry
from .deprecation import MachineDeprecationWrapper
from .nspawn import NspawnMachine
from .post_mortem import PostMortem
from .qemu import QemuMachine
from .start_command import StartCommand

Machine = QemuMachine

__all__ = ["BaseMachine", "Machine", "MachineDeprecationWrapper", "NspawnMachine", "PostMortem", "QemuMachine", "StartCommand", "make_command", "retry"]
