"""``--config FILE``: the JSON that nixpkgs' driver-configuration.nix writes.

    {"vms": {"NAME": {"name": "NAME", "start_script": "/nix/store/...-run-NAME-vm"}, ...},
     "containers": {"NAME": {"name": ..., "start_script": ...,
                             "vnc": {"x11vnc": "/nix/store/...", "tigervnc": "/nix/store/..."}}},
     "vlans": [1, 2], "global_timeout": 3600,
     "enable_ssh_backdoor": false, "test_script": "/nix/store/...-test-script",
     "display_viewers": {...}}

Every field is checked, and a wrong one named, before any VM starts.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DriverError
from .machine.nspawn_display import NspawnVncConfiguration


@dataclass(frozen=True)
class MachineConfiguration:
    """One machine of the configuration, as upstream's model."""

    name: str
    start_script: Path


class QemuMachineConfiguration(MachineConfiguration):
    """A virtual machine of ``vms``."""


@dataclass(frozen=True)
class NspawnMachineConfiguration(MachineConfiguration):
    """A container of ``containers``; ``vnc`` shows its X display on the host in interactive runs."""

    vnc: NspawnVncConfiguration | None = None


@dataclass(frozen=True)
class DriverConfiguration:
    """The run's configuration, in upstream's shape (``driver.config``): machines by name."""

    vms: dict[str, QemuMachineConfiguration]
    containers: dict[str, NspawnMachineConfiguration]
    vlans: list[int]
    global_timeout: datetime.timedelta
    enable_ssh_backdoor: bool
    test_script: Path


def _machines(data: dict[str, Any], key: str, path: Path) -> dict[str, dict[str, Any]]:
    """``{name: machine}`` of the ``vms`` or ``containers`` table, each with a start script."""
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise DriverError(f"{path}: {key!r} must be an object of machines, not {table!r}")
    machines = {}
    for attr, machine in table.items():
        if not isinstance(machine, dict) or not isinstance(machine.get("start_script"), str):
            raise DriverError(f"{path}: {key}.{attr} needs a \"start_script\" string")
        name = machine.get("name", attr)
        if not isinstance(name, str) or not name:
            raise DriverError(f"{path}: {key}.{attr}.name must be a non-empty string")
        machines[name] = machine
    return machines


def _vnc(machine: dict[str, Any], where: str) -> NspawnVncConfiguration | None:
    """A container's ``vnc``: null, or the paths of x11vnc and TigerVNC's viewer."""
    vnc = machine.get("vnc")
    if vnc is None:
        return None
    if not isinstance(vnc, dict) or not all(isinstance(vnc.get(key), str) for key in ("x11vnc", "tigervnc")):
        raise DriverError(f"{where}.vnc must be null or {{\"x11vnc\": PATH, \"tigervnc\": PATH}}, not {vnc!r}")
    return NspawnVncConfiguration(Path(vnc["x11vnc"]), Path(vnc["tigervnc"]))


# An ISO 8601 duration, as upstream's pydantic reads a timedelta: P1DT2H, PT1H30M, PT90.5S...
ISO_DURATION = re.compile(r"P(?:(?P<W>\d+(?:\.\d+)?)W)?(?:(?P<D>\d+(?:\.\d+)?)D)?"
                          r"(?:T(?:(?P<H>\d+(?:\.\d+)?)H)?(?:(?P<M>\d+(?:\.\d+)?)M)?(?:(?P<S>\d+(?:\.\d+)?)S)?)?")
UNIT_SECONDS = {"W": 604800, "D": 86400, "H": 3600, "M": 60, "S": 1}


def _seconds(value: Any, path: Path) -> float:
    """Seconds of ``global_timeout``: a number, a numeric string or an ISO 8601 duration."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = ISO_DURATION.fullmatch(value.strip())
        if match and any(match.groupdict().values()) and not value.strip().endswith("T"):
            seconds = sum(float(n) * UNIT_SECONDS[unit] for unit, n in match.groupdict().items() if n)
        else:
            try:
                seconds = float(value)
            except ValueError:
                pass
    if seconds is not None and seconds > 0:
        return seconds
    raise DriverError(f"{path}: \"global_timeout\" must be a positive number of seconds or an ISO 8601 "
                      f"duration such as \"PT1H\", not {value!r}")


def load_driver_configuration(file_path: str | Path) -> DriverConfiguration:
    """Read and check the configuration file (also ``test_driver.driver.load_driver_configuration``,
    as upstream's, for a script that runs a driver of its own)."""
    path = Path(file_path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise DriverError(f"cannot read the driver configuration: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DriverError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DriverError(f"{path}: the configuration must be a JSON object")
    missing = [key for key in ("vms", "vlans", "test_script") if key not in data]
    if missing:
        raise DriverError(f"{path}: missing {', '.join(missing)}")
    vms = _machines(data, "vms", path)
    containers = _machines(data, "containers", path)
    vlans = data["vlans"]
    if not isinstance(vlans, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in vlans):
        raise DriverError(f"{path}: \"vlans\" must be a list of numbers, not {vlans!r}")
    if not isinstance(data["test_script"], str):
        raise DriverError(f"{path}: \"test_script\" must be a path")
    return DriverConfiguration(
        vms={name: QemuMachineConfiguration(name, Path(vm["start_script"])) for name, vm in vms.items()},
        containers={name: NspawnMachineConfiguration(name, Path(box["start_script"]),
                                                     _vnc(box, f"{path}: containers.{name}"))
                    for name, box in containers.items()},
        vlans=vlans, global_timeout=datetime.timedelta(seconds=_seconds(data.get("global_timeout", 3600), path)),
        enable_ssh_backdoor=bool(data.get("enable_ssh_backdoor", False)),
        test_script=Path(data["test_script"]))
