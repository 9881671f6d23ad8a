"""nix/module.nix inside the NixOS test framework, under the framework's own rules.

The framework is a stand-in (tests/nix/test-framework.nix) that declares what nixpkgs declares
around the driver: `pythonTestDriverPackage` read-only with the package set's driver as its
default, the `hostPkgs` argument at the default priority, nodes built from `node.pkgs`.  It is
evaluated by this project's model of the module system (tests/nix/module-system.nix) and, when
NIXPKGS names a nixpkgs checkout, by nixpkgs' own lib.evalModules: the same assertions hold for both.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NIX = ROOT / "tests" / "nix"
MODULE = ROOT / "nix" / "module.nix"

SYSTEMS = ["model", "nixpkgs"]


def eval_modules(system: str) -> str:
    if system == "model":
        return f"(import {NIX / 'module-system.nix'}).evalModules"
    nixpkgs = os.environ.get("NIXPKGS")
    if not nixpkgs:
        pytest.skip("NIXPKGS (a nixpkgs checkout) is not set: evaluated with this project's model only")
    return f'(import "{nixpkgs}/lib").evalModules'


def run(system: str, test_module: str, newest: bool = True) -> subprocess.CompletedProcess[str]:
    expression = (f"import {NIX / 'run-test.nix'} {{ evalModules = {eval_modules(system)}; "
                  f"newest = {'true' if newest else 'false'}; testModule = {test_module}; }}")
    return subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expression],
                          capture_output=True, text=True)


def evaluate(system: str, test_module: str, newest: bool = True) -> dict:
    result = run(system, test_module, newest)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def failure(system: str, test_module: str, newest: bool = True) -> str:
    result = run(system, test_module, newest)
    assert result.returncode != 0, result.stdout
    return " ".join(result.stderr.split())


# A test module: the module under test imported, and the test's own settings.
def with_module(settings: str = "") -> str:
    return f'{{ lib, ... }}: {{ imports = [ {MODULE} ]; testScript = "start_all()"; {settings} }}'


# A package that stands for ours, recording what the framework's `.override` gave it.
OURS = ('testDriver.package = let p = args: { type = "derivation"; name = "ours"; inherit args; '
        'outPath = "/nix/store/00000000000000000000000000000000-ours"; override = more: p (args // more); }; in p { };')

UNCHANGED = {
    "nodePkgsIsTheOriginal": True, "nodePkgsDriver": "upstream-driver", "hostPkgsOptionIsTheOriginal": True,
    "nodeQemu": "/nix/store/00000000000000000000000000000000-qemu-test",
    "originalQemu": "/nix/store/00000000000000000000000000000000-qemu-test",
}


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("definition", [
    'testScript = "x"; pythonTestDriverPackage = DRV;',
    'testScript = "x"; pythonTestDriverPackage = lib.mkForce DRV;',
    'testScript = "x"; pythonTestDriverPackage = lib.mkIf false DRV;',
    'config = lib.mkMerge [ { testScript = "x"; } (lib.mkIf false { pythonTestDriverPackage = DRV; }) ];',
], ids=["plain", "mkForce", "mkIf-false", "mkMerge-mkIf-false"])
def test_no_module_may_define_the_read_only_driver_option(system, definition):
    """The rule that broke the previous module: the option's default already is its one definition."""
    drv = '{ type = "derivation"; name = "mine"; outPath = "/nix/store/x-mine"; }'
    module = f'{{ lib, ... }}: {{ {definition.replace("DRV", drv)} }}'
    assert "The option `pythonTestDriverPackage' is read-only, but it's set multiple times" in failure(system, module)


@pytest.mark.parametrize("system", SYSTEMS)
def test_without_the_module_the_framework_runs_upstream(system):
    result = evaluate(system, '{ testScript = "start_all()"; }')
    assert result["driver"] == "upstream-driver"
    assert result["driverArgs"] == {"enableNspawn": False, "enableOCR": False,
                                    "qemu_pkg": "/nix/store/00000000000000000000000000000000-qemu-test"}


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("settings", ["", 'testDriver.implementation = "upstream";'], ids=["default", "explicit"])
def test_upstream_changes_nothing(system, settings):
    without = evaluate(system, '{ testScript = "start_all()"; }')
    assert evaluate(system, with_module(settings + " " + OURS)) == without


@pytest.mark.parametrize("system", SYSTEMS)
def test_replacement_changes_the_driver_and_only_the_driver(system):
    result = evaluate(system, with_module(
        f'testDriver.implementation = "replacement"; {OURS} enableOCR = true; '
        'extraPythonPackages = p: [ "requests" ]; containers.box = { };'))
    assert result["driver"] == "ours"
    # The framework's own .override reached our package, with the test's settings.
    assert result["driverArgs"] == {"enableNspawn": True, "enableOCR": True,
                                    "qemu_pkg": "/nix/store/00000000000000000000000000000000-qemu-test"}
    assert result["extraPythonPackages"] == ["requests"]
    # The nodes: the same package set, the same QEMU.
    assert {key: result[key] for key in UNCHANGED} == UNCHANGED


@pytest.mark.parametrize("system", SYSTEMS)
def test_replacement_builds_our_package_from_the_tests_host_packages(system):
    result = evaluate(system, with_module('testDriver.implementation = "replacement";'))
    assert result["driver"] == "callPackage-default.nix"  # nix/package.nix: hostPkgs.callPackage ../default.nix
    assert {key: result[key] for key in UNCHANGED} == UNCHANGED


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_framework_without_the_driver_option_is_named_not_ignored(system):
    """Before pythonTestDriverPackage, nixpkgs built its driver from a path: nothing can swap it."""
    assert evaluate(system, with_module(OURS), newest=False)["driver"] == "callPackage-test-driver"
    message = failure(system, with_module(f'testDriver.implementation = "replacement"; {OURS}'), newest=False)
    assert 'testDriver.implementation = "replacement" needs a nixpkgs' in message
    assert "pythonTestDriverPackage" in message


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_steps_document_becomes_the_test_script(system):
    result = evaluate(system, with_module(
        f'testDriver.implementation = "replacement"; {OURS} testDriver.steps.steps = [ {{ action = "start_all"; }} ];'
    ).replace('testScript = "start_all()";', ""))
    assert result["testScript"] == '{"steps":[{"action":"start_all"}]}'
    assert result["skipTypeCheck"] is True and result["driver"] == "ours"
    message = failure(system, with_module('testDriver.steps.steps = [ ];').replace('testScript = "start_all()";', ""))
    assert 'testDriver.steps needs testDriver.implementation = "replacement"' in message


def test_a_module_defining_an_undeclared_option_fails_in_the_model():
    """The model checks definitions against declarations, as nixpkgs does."""
    assert "The option `testDriverr' (in" in failure("model", '{ testScript = "x"; testDriverr = 1; }')
