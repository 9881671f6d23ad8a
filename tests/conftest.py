"""What every test folder shares: the guest builders on sys.path, a private TMPDIR whose run
must leave no process behind, and the ``serial`` mark.

``scripts/test`` runs the suite in two phases: first every test not marked ``serial``, two
modules at a time (pytest-xdist, ``--dist loadfile``: a module's fixtures stay on one worker),
as many drivers share a builder; then the ``serial`` ones alone.  A module is ``serial`` when
it looks at the whole host (processes by name, links, network namespaces, mounts) or times
the machine (the benchmark)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent / "guests"))
sys.path.insert(0, str(Path(__file__).parent))

from conftest_shared import wait_no_processes  # noqa: E402  (found through the line above)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serial: looks at the whole host: runs with no other test beside it")


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """TMPDIR inside this test's tmp_path; after the test, no QEMU may mention it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    yield tmp
    left = wait_no_processes(str(tmp))
    for line in left:
        os.kill(int(line.split()[0]), 9)
    assert not left, f"processes left behind: {left}"
