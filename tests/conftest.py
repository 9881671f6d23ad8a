"""What every test folder shares: the guest builders on sys.path, and a private TMPDIR
whose run must leave no process behind."""

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
