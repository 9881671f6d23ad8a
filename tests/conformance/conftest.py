"""nixpkgs' own driver tests (nixos/tests/nixos-test-driver/), as we run them.

Each module here stands for one file of that folder: its docstring says what the nixpkgs
test sets up and asserts, which of our guests imitates its ``nodes``, and, where it cannot
run here, exactly why.  The scripts are our own words for the same steps and assertions;
they run through our command line as nix runs the driver: one run per test, the start
scripts named ``run-NODE-vm``, the script from a file, the exit status and the log checked.

``nixos_test(script, nodes)`` runs one.  A node is ``Node("tiny")`` (the busybox/bash
initramfs guest: seconds to boot, no systemd), ``Node("debian")`` (the debootstrap'ed
systemd guest) or ``Node("container")`` (that tree under systemd-nspawn); ``append``
adds kernel parameters, for the Debian guest's optional parts (``systemd.wants=UNIT``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

import debian
import tiny

COMMON = r'''
# nixpkgs' common.py, in our words: a binary example file on the host (every byte value),
# a diff of two host files, a no_sleep() that (as nixpkgs' does) does not put time.sleep back
# when its block raises, then start_all().
import time
from contextlib import contextmanager
from pathlib import Path
import subprocess as _subprocess

exampleDir = Path(os.environ["CONFORMANCE_HOST_DIR"]) / "exampleDir"
exampleDir.mkdir(parents=True, exist_ok=True)
exampleFile = exampleDir / "exampleFile"
exampleFile.write_bytes(bytes(range(256)))
assert exampleFile.exists()

def host_files_same(a, b):
    return _subprocess.check_call(["diff", str(a), str(b)])

@contextmanager
def no_sleep():
    kept = time.sleep
    time.sleep = lambda *_: None
    yield
    time.sleep = kept

start_all()
'''
"""nixpkgs' common.py prelude, which its default.nix puts before each of its scripts."""


@dataclass
class Node:
    kind: str = "tiny"
    append: str = ""
    vlans: dict[int, int] = field(default_factory=dict)  # tiny: VLAN -> this node's number on it
    hosts: dict[str, str] = field(default_factory=dict)  # tiny: /etc/hosts
    efi: bool = False
    seabios: bool = False
    memory: int | None = None


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    out: Path

    @property
    def log(self) -> str:
        return self.stdout + self.stderr

    def check(self) -> "Run":
        assert self.returncode == 0, f"exit status {self.returncode}\n{self.log[-6000:]}"
        return self


@pytest.fixture(scope="session")
def debian_guest() -> debian.DebianGuest:
    return debian.build()


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
            elif node.kind == "debian":
                guest = request.getfixturevalue("debian_guest")
                scripts.append(str(debian.write_start_script(tmp_path, name, guest, node.append,
                                                             node.memory or 1024, seabios=node.seabios,
                                                             efi=node.efi)))
            elif node.kind == "container":
                import nspawn

                containers.append(str(nspawn.write_start_script(tmp_path, name)))
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
