"""The nix files parse and the manual lists every public method (the module: test_nix_module.py)."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_driver.machine import QemuMachine

ROOT = Path(__file__).resolve().parents[2]
NIX_FILES = sorted([ROOT / "default.nix", ROOT / "flake.nix", *(ROOT / "nix").glob("*.nix"),
                    *(ROOT / "tests" / "nix").glob("*.nix")])


def test_the_nix_files_exist():
    assert {p.relative_to(ROOT).as_posix() for p in NIX_FILES} >= {
        "default.nix", "flake.nix", "nix/module.nix", "nix/package.nix", "nix/typecheck.nix"}


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nix_file_parses(path):
    assert shutil.which("nix-instantiate"), "nix-instantiate missing: scripts/setup.sh installs nix-bin"
    result = subprocess.run(["nix-instantiate", "--parse", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def public_methods() -> set[str]:
    return {name for name, value in inspect.getmembers(QemuMachine)
            if not name.startswith("_") and inspect.isfunction(value)
            and any(name in vars(cls) for cls in QemuMachine.__mro__  # itself, its mixins, BaseMachine
                    if cls.__module__.startswith("test_driver.machine"))}


def test_extract_docstrings_lists_every_public_machine_method():
    result = subprocess.run([sys.executable, str(ROOT / "extract-docstrings.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sections = re.split(r"^## ", result.stdout, flags=re.M)[1:]
    documented = {section.split("(", 1)[0].strip("`") for section in sections}
    assert documented == public_methods()
    for section in sections:
        heading, _, body = section.partition("\n")
        assert body.strip(), f"empty entry: {heading}"
    assert "## `succeed(*commands: str, timeout: Duration | None=None)`" in result.stdout


def test_extract_docstrings_refuses_an_undocumented_method(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("class QemuMachine:\n    def documented(self):\n        'Yes.'\n"
                      "    def bare(self, x: int) -> None:\n        pass\n")
    result = subprocess.run([sys.executable, str(ROOT / "extract-docstrings.py"), str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "bare" in result.stderr
