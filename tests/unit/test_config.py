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
