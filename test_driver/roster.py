"""The run's machines and VLANs, named and checked before anything starts.

Each machine has one name (its start script's ``run-NAME-vm`` / ``run-NAME-nspawn``, or
the name given with it) and one start script that can run; VLANs are numbers 0 to 255,
each once.  A mistake is a ``DriverError`` naming it.
"""

from __future__ import annotations

import os

from .errors import DriverError, MachineError
from .machine.nspawn import machine_name_from_start_command
from .machine.start_command import StartCommand


def virtual_machines(scripts: list[str], names: list[str] | None) -> list[tuple[str, StartCommand]]:
    """``(name, start command)`` of each VM, its start script checked."""
    commands = [StartCommand(script) for script in scripts]
    if names is not None and len(names) != len(commands):
        raise DriverError(f"{len(names)} machine names for {len(commands)} start scripts")
    for command in commands:
        command.validate()
    return list(zip(names or [command.machine_name for command in commands], commands))


def containers(scripts: list[str], names: list[str] | None) -> list[tuple[str, str]]:
    """``(name, start script)`` of each container, its start script checked."""
    if names is not None and len(names) != len(scripts):
        raise DriverError(f"{len(names)} container names for {len(scripts)} container start scripts")
    pairs = []
    for i, script in enumerate(scripts):
        if not (os.path.isfile(script) and os.access(script, os.X_OK)):
            raise DriverError(f"container start script {script!r} is not an executable file")
        try:
            pairs.append((names[i] if names else machine_name_from_start_command(script), script))
        except MachineError as exc:
            raise DriverError(str(exc)) from None
    return pairs


def check_names(machines: list[tuple[str, str]]) -> None:
    """No two start scripts for one name."""
    seen: dict[str, str] = {}
    for name, script in machines:
        if name in seen:
            raise DriverError(f"two start scripts for machine {name!r}: {seen[name]} and {script}")
        seen[name] = script


def vlan_numbers(vlans: list[int] | list[str]) -> list[int]:
    """The VLAN numbers as given, each once (as upstream's configuration lists them)."""
    numbers: dict[int, None] = {}
    for vlan in vlans:
        try:
            number = int(vlan)
        except (TypeError, ValueError):
            number = -1
        if not 0 <= number < 256:  # (a NIC's MAC address holds the number)
            raise DriverError(f"bad VLAN number {vlan!r}: VLANs are numbered 0 to 255")
        numbers[number] = None
    return list(numbers)
