"""--config: the JSON of nixpkgs' driver-configuration.nix, read as upstream's pydantic model reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_driver.config import load_driver_configuration
from test_driver.errors import DriverError


def write(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"vms": {"m": {"name": "m", "start_script": "/run-m-vm"}}, "vlans": [1],
                                "test_script": "/t.py", **fields}))
    return path


@pytest.mark.parametrize("value, seconds", [(3600, 3600.0), (90.5, 90.5), ("7200", 7200.0),
                                            ("PT1H", 3600.0), ("PT1H30M", 5400.0), ("P1DT2H", 93600.0)])
def test_the_global_timeout_is_seconds_or_an_iso_duration(tmp_path: Path, value: object, seconds: float):
    assert load_driver_configuration(write(tmp_path, global_timeout=value)).global_timeout.total_seconds() == seconds


@pytest.mark.parametrize("value", [0, -1, "PT", "an hour", True])
def test_a_bad_global_timeout_is_named(tmp_path: Path, value: object):
    with pytest.raises(DriverError, match='"global_timeout" must be a positive number of seconds'):
        load_driver_configuration(write(tmp_path, global_timeout=value))


def machines_config(tmp_path: Path, vnc: object) -> Path:
    for name in ("run-m-vm", "run-box-nspawn"):
        (tmp_path / name).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / name).chmod(0o755)
    (tmp_path / "t.py").write_text("x = 1\n")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "vms": {"m": {"name": "m", "start_script": str(tmp_path / "run-m-vm")}},
        "containers": {"box": {"name": "box", "start_script": str(tmp_path / "run-box-nspawn"), "vnc": vnc}},
        "vlans": [], "global_timeout": 60, "enable_ssh_backdoor": False, "test_script": str(tmp_path / "t.py")}))
    return path


def test_a_driver_made_from_a_configuration_as_upstreams_newest(tmp_path: Path):
    """nspawn-interactive.nix's nested driver: ``Driver(config=..., out_dir=..., logger=...,
    interactive=True)``, the configuration read by ``test_driver.driver.load_driver_configuration``;
    only an interactive driver gives its containers their display."""
    from test_driver.driver import Driver, load_driver_configuration
    from test_driver.logger import CompositeLogger
    from test_driver.machine.nspawn_display import NspawnVncConfiguration

    path = machines_config(tmp_path, {"x11vnc": "/bin/x11vnc", "tigervnc": "/bin/vncviewer"})
    config = load_driver_configuration(str(path))
    with Driver(config=config, out_dir=tmp_path, logger=CompositeLogger([]), interactive=True) as driver:
        assert [m.name for m in driver.machines] == ["box", "m"]
        assert driver.machines_nspawn[0].vnc == NspawnVncConfiguration(Path("/bin/x11vnc"), Path("/bin/vncviewer"))
        assert driver.tests == "x = 1\n" and driver.config is config and driver.interactive
        assert driver.global_timeout == 60
    with Driver(config, tmp_path, CompositeLogger([])) as driver:  # upstream's positional form
        assert driver.machines_nspawn[0].vnc is None and not driver.interactive


def test_a_bad_vnc_entry_is_named(tmp_path: Path):
    with pytest.raises(DriverError, match=r"containers\.box\.vnc must be null or"):
        load_driver_configuration(machines_config(tmp_path, {"x11vnc": "/bin/x11vnc"}))
    assert load_driver_configuration(machines_config(tmp_path, None)).containers["box"].vnc is None
