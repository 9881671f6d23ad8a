"""Machines: the shared API (BaseMachine) and QEMU virtual machines (QemuMachine).

``Machine`` is the old name of ``QemuMachine`` and stays importable.
"""

from .base import BaseMachine, make_command, retry
from .qemu import PostMortem, QemuMachine
from .start_command import StartCommand

Machine = QemuMachine

__all__ = ["BaseMachine", "Machine", "PostMortem", "QemuMachine", "StartCommand", "make_command", "retry"]
