"""The ``machine`` symbol of a test whose only machine has another name, as upstream's.

nixpkgs keeps the old alias working for now but warns at every use of it (the
alias is to go in NixOS 27.05).  Like upstream's, it is a proxy, not the machine:
each attribute read warns and is then the machine's; ``msg`` and ``machine`` are
its own.
"""

from __future__ import annotations

import warnings
from typing import Any


class MachineDeprecationWrapper:
    """The only machine, reached under the deprecated name ``machine``."""

    def __init__(self, msg: str, machine: Any) -> None:
        self.msg = msg
        self.machine = machine

    def __getattribute__(self, name: str) -> Any:
        if name in ("msg", "machine"):
            return object.__getattribute__(self, name)
        machine = object.__getattribute__(self, "machine")
        msg = object.__getattribute__(self, "msg")
        warnings.warn(f"invoking '{type(machine).__name__}.{name}' is deprecated: {msg}", stacklevel=2)
        return getattr(machine, name)


def alias_warning(name: str) -> str:
    """What using ``machine`` for the only machine, called ``name``, is told."""
    return (f"the only machine is called '{name}'; `machine` as its name is deprecated and "
            "stops working in NixOS 27.05")
