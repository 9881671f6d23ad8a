"""nixpkgs' own driver tests (nixos/tests/nixos-test-driver/), as we run them: what the
modules share (conftest.py has the fixture ``nixos_test``).

Each module here stands for one file of that folder: its docstring says what the nixpkgs
test sets up and asserts, which of our guests imitates its ``nodes``, and, where it cannot
run here, exactly why.  The scripts are our own words for the same steps and assertions;
they run through our command line as nix runs the driver: one run per test, the start
scripts named ``run-NODE-vm``, the script from a file, the exit status and the log checked.

``nixos_test(script, nodes)`` runs one.  A node is ``Node("tiny")`` (the busybox/bash
initramfs guest: seconds to boot, no systemd), ``Node("debian")`` (the debootstrap'ed
systemd guest), ``Node("debian-arm64")`` (that guest for aarch64, tests/guests/debian_arm64.py),
``Node("container")`` (the Debian tree under systemd-nspawn), ``Node("x11")`` (the Debian guest
with an X session, tests/guests/x11.py) or ``Node("x11-container")`` (that guest's tree under
systemd-nspawn, its X server Xvfb); ``append``
adds kernel parameters, for the Debian guest's optional parts (``systemd.wants=UNIT``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    vlans: dict[int, int] = field(default_factory=dict)  # not x11: VLAN -> this node's number on it
    hosts: dict[str, str] = field(default_factory=dict)  # not x11: /etc/hosts
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
