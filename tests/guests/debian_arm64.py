#!/usr/bin/env python3
"""Build the arm64 Debian systemd test guest and write start scripts for it.

The Debian guest of debian.py (same packages, backdoor, test services and VLAN support) for
aarch64, as nixpkgs' multi-arch test has an ``aarch64-linux`` node beside an x86_64 one:

- the kernel is Debian's arm64 package of the version the host's ``linux-image-amd64``
  points at (``linux-image-<version>-arm64``), and stage 1's busybox is ``busybox-static``
  for arm64.  Both .debs come from ``apt-get download`` with a private apt state
  (``<cache>/apt-arm64``: the host's Debian suites, indexed for arm64), so the host's dpkg
  architectures stay as they are;
- the root file system is ``debootstrap --arch=arm64``, whose second stage (and the
  customisation's chroot commands) run under qemu-user through binfmt_misc: the build mounts
  binfmt_misc and registers qemu-user-static's aarch64 handler when they are missing;
- the arm64 kernel package's ``vmlinuz`` is an uncompressed ``Image`` (with an EFI stub)
  that ``qemu-system-aarch64 -M virt -kernel`` boots directly, no firmware; the CPU is a
  ``cortex-a57``: ``-cpu max`` adds pointer authentication, whose emulation makes the boot
  three times as slow (80 s to the backdoor);
- the serial console is the virt board's PL011, ``ttyAMA0``: the kernel's ``console=`` and
  the backdoor's stderr (the driver's ``-serial stdio`` lands there);
- the kernel has no pvpanic driver, so the machine has no pvpanic device; its virtio
  drivers are modules, loaded by stage 1 as on amd64.

Measured on this host (2 cores, TCG, QEMU 7.2, the other core often busy): building takes
2 min 20 s to 2 min 30 s (debootstrap with its second stage under qemu-user is nearly all of it; the amd64
guest builds in about 50 s); the cache holds the image (1 GB sparse, 180 MB used), the 32 MB
Image and a 2 MB initrd (the unpacked kernel package is not kept), plus 19 MB of apt lists.  A VM's backdoor
answers 25-37 s after QEMU starts, multi-user.target follows within 2 s and
network-online.target 2 s after that (the amd64 guest: about 10 s to the backdoor).  Booted
beside an amd64 VM on the two cores, its backdoor took 32-52 s and the amd64 VM's 24 s;
pytest ran the multi-arch test in 41-42 s (the guests built already).

    python3 tests/guests/debian_arm64.py build                 # prints the guest directory
    python3 tests/guests/debian_arm64.py start-script NAME DIR # writes DIR/run-NAME-vm
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import debian  # noqa: E402
import tiny  # noqa: E402

BINFMT = Path("/proc/sys/fs/binfmt_misc")
HANDLER = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # qemu-user-static's aarch64 handler
STAGE1_MODULES = tuple(m for m in debian.STAGE1_MODULES if m != "pvpanic-pci")  # no such driver on arm64


def apt_sources() -> str:
    """The host's Debian suites (the release, its updates and its security suite), one-line
    format: what the private arm64 apt state indexes."""
    mirror, suite = debian.debian_source()
    security = "http://deb.debian.org/debian-security"
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file():
            match = re.search(r"(?:URIs:|deb)\s+(\S*debian-security\S*)", path.read_text(errors="replace"))
            if match:
                security = match.group(1)
                break
    keyring = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
    return "".join(f"deb {keyring} {url} {s} main\n" for url, s in
                   ((mirror, suite), (mirror, f"{suite}-updates"), (security, f"{suite}-security")))


_updated: set[Path] = set()


def download(packages: list[str], into: Path, cache: Path) -> list[Path]:
    """Fetch the arm64 .debs of PACKAGES into INTO: ``apt-get download`` on a private apt
    state under CACHE/apt-arm64 (updated once per build: a build is rare, the update seconds)."""
    state = cache / "apt-arm64"
    for d in ("lists/partial", "archives/partial", "parts"):
        (state / d).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    (state / "sources.list").write_text(apt_sources())
    options = ["-q", "-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64",
               "-o", f"Dir::State={state}", "-o", f"Dir::State::Lists={state}/lists",
               "-o", f"Dir::State::status={state}/status", "-o", f"Dir::Cache={state}",
               "-o", f"Dir::Cache::Archives={state}/archives",
               "-o", f"Dir::Etc::SourceList={state}/sources.list", "-o", f"Dir::Etc::SourceParts={state}/parts",
               "-o", "APT::Sandbox::User=root"]
    if state not in _updated:
        subprocess.run(["apt-get", *options, "update"], check=True, stdout=subprocess.DEVNULL)
        _updated.add(state)
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", *options, "download", *packages], cwd=into, check=True, stdout=subprocess.DEVNULL)
    return [next(into.glob(f"{package}_*_arm64.deb")) for package in packages]


def unpack(deb: Path, into: Path) -> Path:
    subprocess.run(["dpkg", "-x", str(deb), str(into)], check=True)
    deb.unlink()
    return into


@dataclass(frozen=True)
class Arm64(debian.Platform):
    arch: str = "arm64"
    serial: str = "ttyAMA0"
    qemu: str = "qemu-system-aarch64"
    machine: str = "-M virt -cpu cortex-a57 "
    firmware: str = ""  # -kernel on the virt board: no firmware
    devices: str = ""
    stage1_modules: tuple[str, ...] = STAGE1_MODULES
    kernel_file: str = "Image"

    def prepare(self) -> None:
        """debootstrap's second stage runs arm64 programs: through qemu-user, registered with
        binfmt_misc (mounted first if it is not)."""
        if os.uname().machine == "aarch64":
            return
        if not (BINFMT / "register").exists():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
        handler = BINFMT / "qemu-aarch64"
        if not handler.exists():
            if not HANDLER.exists():
                raise SystemExit(f"{HANDLER} is missing, so arm64 programs cannot run here: "
                                 "apt-get install qemu-user-static")
            (BINFMT / "register").write_text(HANDLER.read_text())
        if handler.read_text().splitlines()[0] != "enabled":
            handler.write_text("1")

    def kernel_package(self) -> str:
        return tiny.kernel_package().removesuffix("-amd64") + "-arm64"

    def unpack_kernel(self, package: str, cache: Path, staging: Path) -> Path:
        """Unpacked in the build's staging directory: only the build needs it."""
        [deb] = download([package], staging / "debs", cache)
        return unpack(deb, staging / "kernel")

    def busybox(self, cache: Path, staging: Path) -> bytes:
        [deb] = download(["busybox-static"], staging / "debs", cache)
        return (unpack(deb, staging / "busybox") / "bin/busybox").read_bytes()

    def install_kernel(self, boot: Path, version: str, staging: Path) -> None:
        image = (boot / f"vmlinuz-{version}").read_bytes()
        if image[0x38:0x3c] != b"ARMd":  # the arm64 Image header's magic
            raise SystemExit(f"{boot}/vmlinuz-{version} is not an uncompressed arm64 Image")
        (staging / self.kernel_file).write_bytes(image)


ARM64 = Arm64()


def build(cache: Path | None = None) -> debian.DebianGuest:
    """Build (or reuse) the arm64 Debian guest; a few minutes the first time."""
    return debian.build(cache, "debian-arm64", debian.PACKAGES, None, [Path(__file__)], platform=ARM64)


def write_start_script(directory: Path, name: str, guest: debian.DebianGuest | None = None,
                       append: str = "", memory: int = 1024, seabios: bool = False,
                       vlans: dict[int, int] | None = None, hosts: dict[str, str] | None = None) -> Path:
    """Write DIRECTORY/run-NAME-vm starting the arm64 guest (debian.py's script for this platform)."""
    return debian.write_start_script(directory, name, guest or build(), append, memory, seabios,
                                     vlans=vlans, hosts=hosts)


def main() -> None:
    tiny.run_cli(__doc__ or "", build, write_start_script, vlans=True)


if __name__ == "__main__":
    main()
