"""Fixtures of tests/conformance (the modules' shared parts are in nixos_tests.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

import debian
import tiny
from nixos_tests import COMMON, Node, Run


@pytest.fixture(scope="session")
def debian_guest() -> debian.DebianGuest:
    return debian.build()


@pytest.fixture(scope="session")
def debian_arm64_guest() -> debian.DebianGuest:
    import debian_arm64

    return debian_arm64.build()


@pytest.fixture(scope="session")
def x11_guest() -> debian.DebianGuest:
    import x11

    return x11.build()


@pytest.fixture(scope="session")
def tiny_guest() -> tiny.Guest:
    return tiny.build()


@pytest.fixture
def nixos_test(tmp_path: Path, tiny_guest: tiny.Guest, request: pytest.FixtureRequest,
               private_tmp: Path) -> Callable[..., Run]:
    """nixos_test(script, {"machine": Node(...)}, vlans=[...], args=[...], env={...}) -> Run."""

    def run(script: str, nodes: dict[str, Node] | None = None, vlans: list[int] = [],
            args: list[str] = [], env: dict[str, str] = {}, timeout: float = 300,
            common: bool = False) -> Run:
        scripts: list[str] = []
        containers: list[str] = []
        for name, node in (nodes or {}).items():
            if node.kind == "tiny":
                scripts.append(str(tiny.write_start_script(
                    tmp_path, name, tiny_guest, node.append, node.memory or 512, seabios=node.seabios,
                    vlans=node.vlans, hosts=node.hosts, efi=node.efi)))
            elif node.kind in ("debian", "debian-arm64"):
                guest = request.getfixturevalue(node.kind.replace("-", "_") + "_guest")
                scripts.append(str(debian.write_start_script(tmp_path, name, guest, node.append,
                                                             node.memory or 1024, seabios=node.seabios,
                                                             efi=node.efi, vlans=node.vlans,
                                                             hosts=node.hosts)))
            elif node.kind == "x11":
                import x11

                scripts.append(str(x11.write_start_script(tmp_path, name, request.getfixturevalue("x11_guest"))))
            elif node.kind in ("container", "x11-container"):
                import nspawn

                x11 = node.kind == "x11-container"  # the X11 guest's tree, X under Xvfb
                guest = request.getfixturevalue("x11_guest" if x11 else "debian_guest")
                containers.append(str(nspawn.write_start_script(tmp_path, name, guest, vlans=node.vlans,
                                                                hosts=node.hosts, x11=x11)))
            else:
                raise ValueError(f"unknown node kind {node.kind!r}")
        test = tmp_path / "testScript.py"
        test.write_text((COMMON if common else "") + script)
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "test_driver.cli_main", "-o", str(out)]
        if scripts:
            command += ["--start-scripts", *scripts]
        if containers:
            command += ["--container-start-scripts", *containers]
        if vlans:
            command += ["--vlans", *map(str, vlans)]
        command += [*args, "--", str(test)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                              env={**os.environ, "CONFORMANCE_HOST_DIR": str(tmp_path), **env})
        return Run(done.returncode, done.stdout, done.stderr, out)

    return run
