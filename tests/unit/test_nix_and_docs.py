"""The nix files parse, the module evaluates (with a nixpkgs checkout), the manual lists every method."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_driver.machine import BaseMachine, QemuMachine

ROOT = Path(__file__).resolve().parents[2]
NIX_FILES = sorted([ROOT / "default.nix", ROOT / "flake.nix", *(ROOT / "nix").glob("*.nix")])


def test_the_nix_files_exist():
    assert {p.relative_to(ROOT).as_posix() for p in NIX_FILES} >= {
        "default.nix", "flake.nix", "nix/module.nix", "nix/package.nix", "nix/typecheck.nix"}


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nix_file_parses(path):
    assert shutil.which("nix-instantiate"), "nix-instantiate missing: scripts/setup.sh installs nix-bin"
    result = subprocess.run(["nix-instantiate", "--parse", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# nixpkgs' test framework declares pythonTestDriverPackage (nixos/lib/testing/driver.nix), testScript,
# skipTypeCheck and skipLint; the stand-in below declares them the same way.
EVAL = """
let
  lib = import (NIXPKGS + "/lib");
  fake = name: { type = "derivation"; inherit name; outPath = "/" + name; };
  eval = extra: lib.evalModules {
    modules = [
      MODULE
      {
        options.pythonTestDriverPackage = lib.mkOption {
          type = lib.types.package; default = fake "upstream"; readOnly = true;
        };
        options.testScript = lib.mkOption { type = lib.types.str; default = "python"; };
        options.skipTypeCheck = lib.mkOption { type = lib.types.bool; default = false; };
        options.skipLint = lib.mkOption { type = lib.types.bool; default = false; };
        config._module.args.hostPkgs = { };
        config.testDriver.package = fake "replacement";
      }
      extra
    ];
  };
in [
  (eval { }).config.pythonTestDriverPackage.name
  (eval { testDriver.implementation = "replacement"; }).config.pythonTestDriverPackage.name
  (eval { testDriver = { implementation = "replacement"; steps.steps = [ ]; }; }).config.testScript
]
"""


def test_module_selects_the_driver_with_nixpkgs_lib():
    nixpkgs = os.environ.get("NIXPKGS")
    if not nixpkgs:
        print("skipped: set NIXPKGS to a nixpkgs checkout to evaluate nix/module.nix with its lib.evalModules")
        pytest.skip("NIXPKGS (a nixpkgs checkout) is not set")
    expression = EVAL.replace("NIXPKGS", f'"{nixpkgs}"').replace("MODULE", str(ROOT / "nix" / "module.nix"))
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expression],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["upstream", "replacement", '{"steps":[]}']


def public_methods() -> set[str]:
    return {name for name, value in inspect.getmembers(QemuMachine)
            if not name.startswith("_") and inspect.isfunction(value)
            and any(name in vars(cls) for cls in (BaseMachine, QemuMachine))}


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


# Without nixpkgs: the module applied to a minimal stand-in of lib shows how it wires the option.
STANDALONE = """
let
  lib = {
    mkOption = o: o;
    types = { enum = values: { inherit values; }; package = "package"; };
    literalExpression = text: text;
    mkIf = condition: content: { inherit condition content; };
    mkMerge = contents: contents;
    mkDefault = value: value;
  };
  module = import MODULE;
  fake = { type = "derivation"; name = "replacement"; };
  result = implementation: steps: module {
    inherit lib;
    hostPkgs = { };
    config.testDriver = { inherit implementation steps; package = fake; };
  };
  driver = implementation: builtins.elemAt (result implementation null).config 0;
  withSteps = builtins.elemAt (result "replacement" { steps = [ { action = "start_all"; } ]; }).config 1;
in {
  values = (result "upstream" null).options.testDriver.implementation.type.values;
  default = (result "upstream" null).options.testDriver.implementation.default;
  upstream = (driver "upstream").condition;
  replacement = (driver "replacement").condition;
  package = (driver "replacement").content.pythonTestDriverPackage.name;
  noSteps = (builtins.elemAt (result "replacement" null).config 1).condition;
  steps = withSteps.content.testScript;
  skipTypeCheck = withSteps.content.skipTypeCheck;
}
"""


def test_module_wiring_without_nixpkgs():
    expression = STANDALONE.replace("MODULE", str(ROOT / "nix" / "module.nix"))
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expression],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "values": ["upstream", "replacement"], "default": "upstream", "upstream": False, "replacement": True,
        "package": "replacement", "noSteps": False, "steps": '{"steps":[{"action":"start_all"}]}',
        "skipTypeCheck": True}
