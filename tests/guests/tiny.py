#!/usr/bin/env python3
"""Build the tiny test guest and write NixOS-style start scripts for it.

The guest is a Debian kernel plus an initramfs holding busybox-static, bash-static
and the few kernel modules a test VM needs (virtio console, 9p shared directory,
virtio net, pvpanic).  Busybox init runs ``/bin/backdoor``, which behaves exactly
like NixOS's ``backdoor.service``: stdin/stdout on /dev/hvc0 in raw mode, stderr
on the serial console, the greeting line, then a plain non-interactive bash.

Everything comes from Debian packages: the kernel .deb is fetched with
``apt-get download`` and unpacked, nothing is installed on the host.  The result
is cached (keyed by kernel version and this file's content).

    python3 tests/guests/tiny.py build                 # prints the guest directory
    python3 tests/guests/tiny.py start-script NAME DIR # writes DIR/run-NAME-vm
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

WANTED_MODULES = [
    "virtio_pci",
    "virtio_console",
    "virtio_net",
    "9pnet_virtio",
    "9p",
    "pvpanic-pci",
    "virtio_rng",
    "virtio_blk",  # a disk in the machine's state directory, as NixOS keeps its root disk
    "efivarfs",
    "8021q",  # VLAN-tagged interfaces (eth1.5), as NixOS tests of 802.1Q use
]

INIT = r"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mkdir -p /dev/pts /dev/shm /tmp /run /root /var/log
/bin/busybox mount -t devpts devpts /dev/pts
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox mount -t tmpfs tmpfs /run
for m in $(cat /lib/modules/load-order); do /bin/busybox insmod /lib/modules/$m 2>/dev/null; done
[ -d /sys/firmware/efi/efivars ] && /bin/busybox mount -t efivarfs efivarfs /sys/firmware/efi/efivars
exec /bin/busybox init
"""

INITTAB = """::sysinit:/etc/rc
::respawn:/bin/backdoor
::ctrlaltdel:/bin/busybox reboot
::shutdown:/bin/busybox sync
"""

# Boot-time setup driven by the kernel command line (td.* parameters).
RC = r"""#!/bin/sh
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    td.hostname=*) hostname "${arg#td.hostname=}" ;;
    td.ip=*) echo "${arg#td.ip=}" >> /run/td-ips ;;
    td.hosts=*) echo "${arg#td.hosts=}" | tr , '\n' | while IFS=: read -r n a; do echo "$a $n"; done >> /run/td-hosts ;;
  esac
done
echo "127.0.0.1 localhost $(hostname)" > /etc/hosts
[ -e /run/td-hosts ] && cat /run/td-hosts >> /etc/hosts
ip link set lo up
# td.ip=IFACE:ADDRESS/PREFIX: static addresses on the VLAN interfaces (eth1, eth2, ...).
[ -e /run/td-ips ] && while IFS=: read -r dev addr; do
  ip link set "$dev" up && ip addr add "$addr" dev "$dev"
done < /run/td-ips
if grep -q shared /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null; then
  mkdir -p /tmp/shared
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 shared /tmp/shared
fi
for dev in /sys/class/net/eth*; do [ -e "$dev" ] && ip link set "${dev##*/}" up; done
# eth0 is QEMU's user-mode network, whose DHCP gives NixOS machines this address (forward_port);
# no default route through it: QEMU's user network answers pings to anything, VLANs' isolation included
ip addr add 10.0.2.15/24 dev eth0 2>/dev/null
exit 0
"""

# The steps of NixOS's backdoor.service (nixos/modules/testing/test-instrumentation.nix), shared
# by every test guest after its own environment set-up: stdin/stdout on hvc0 in raw mode, stderr
# on the serial console, the greeting, then a plain non-interactive bash reading hvc0.
BACKDOOR_STEPS = r"""cd /tmp
exec < /dev/hvc0 > /dev/hvc0
while ! exec 2> /dev/ttyS0; do sleep 0.1; done
echo "connecting to host..." >&2
stty -F /dev/hvc0 raw -echo
echo "Spawning backdoor root shell..."
PS1="" exec /bin/bash --norc /dev/hvc0
"""

BACKDOOR = r"""#!/bin/sh
export USER=root HOME=/root PATH=/bin:/sbin:/usr/bin:/usr/sbin PAGER=
grep -q td.nobackdoor /proc/cmdline && exec sleep 1000000
# td.askpass: a stage-1 prompt on the serial console (like a LUKS passphrase) before the backdoor.
if grep -q td.askpass /proc/cmdline; then
  echo "passphrase:" > /dev/ttyS0; read -r pass < /dev/ttyS0; echo "$pass" > /run/passphrase
fi
""" + BACKDOOR_STEPS

NC = r"""#!/bin/bash
# nc: the driver's port probes (nc -z HOST PORT) answered as NixOS's netcat-openbsd answers them
# (busybox's nc has no -z); anything else is busybox's nc.
if [ "$#" -eq 3 ] && [ "$1" = -z ]; then
  address=$(awk -v name="$2" '{ for (i = 2; i <= NF; i++) if ($i == name) { print $1; exit } }' /etc/hosts)
  (: <>"/dev/tcp/${address:-$2}/$3") 2>/dev/null
  exit
fi
exec busybox nc "$@"
"""

START_SCRIPT = """#!/bin/sh
# run-{name}-vm: a start script in the shape of NixOS's qemu-vm.nix for the tiny test guest.
# The test driver appends its own QEMU arguments ("$@") and sets SHARED_DIR, TMPDIR.
{efi_setup}exec qemu-system-x86_64 -name {name} -accel tcg -smp 1 -m {memory} {firmware}\\
  -kernel {kernel} -initrd {initrd} \\
  -append "console=ttyS0 panic=-1 quiet td.hostname={name} {append} $QEMU_KERNEL_PARAMS" \\
  -virtfs local,path="${{SHARED_DIR:?SHARED_DIR must be set}}",security_model=none,mount_tag=shared \\
  -netdev user,id=user.0 -device virtio-net-pci,netdev=user.0,romfile= \\
  -device pvpanic-pci {vlan_args}\\
  $QEMU_OPTS "$@"
"""


# With OVMF (``efi=True``), as qemu-vm.nix does for useEFIBoot: the variable store is
# $NIX_EFI_VARS, a copy of the firmware's empty store unless it exists already.
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
EFI_SETUP = """NIX_EFI_VARS=$(readlink -f "${NIX_EFI_VARS:-./@NAME@-efi-vars.fd}")
if ! test -e "$NIX_EFI_VARS"; then cp @VARS@ "$NIX_EFI_VARS" && chmod 0644 "$NIX_EFI_VARS"; fi
"""
EFI_FIRMWARE = (f"-drive if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE} "
                '-drive if=pflash,format=raw,unit=1,file="$NIX_EFI_VARS" ')


@dataclass(frozen=True)
class Guest:
    directory: Path

    @property
    def kernel(self) -> Path:
        """The uncompressed vmlinux: QEMU boots it through PVH, skipping the slow
        real-mode setup and XZ decompression under TCG (about 1 s per boot here)."""
        return self.directory / "vmlinux"

    @property
    def bzimage(self) -> Path:
        """The compressed kernel, booted the classic way: it gets the VGA text console
        from the BIOS (a PVH-booted kernel has no screen)."""
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd"


def cache_root() -> Path:
    base = os.environ.get("TD_GUEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "nixos-test-driver-guests",
    )
    return Path(base)


def kernel_package() -> str:
    """The versioned kernel package that Debian's linux-image-amd64 points at."""
    out = subprocess.run(
        ["apt-cache", "depends", "linux-image-amd64"], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"Depends: (linux-image-\S+)", out)
    if not match:
        raise SystemExit("cannot find the kernel package behind linux-image-amd64 (run apt-get update)")
    return match.group(1)


def unpack_kernel(package: str, into: Path) -> Path:
    """apt-get download + dpkg -x the kernel package; return the unpacked root."""
    root = into / "root"
    if (root / "boot").is_dir():
        return root
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", package], cwd=into, check=True,
                   stdout=subprocess.DEVNULL)
    debs = sorted(into.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(root)], check=True)
    debs[-1].unlink()
    return root


def module_depends(ko: bytes) -> list[str]:
    match = re.search(rb"\0depends=([^\0]*)\0", b"\0" + ko)
    return [d.decode() for d in match.group(1).split(b",") if d] if match else []


def load_order(moddir: Path, wanted: list[str]) -> list[tuple[str, bytes]]:
    """Modules (name, uncompressed bytes) in an order where dependencies come first."""
    paths: dict[str, Path] = {}
    for path in moddir.rglob("*.ko*"):
        name = path.name.split(".ko")[0]
        paths[name] = path
        paths.setdefault(name.replace("-", "_"), path)
    builtin = {Path(line).name.split(".ko")[0]
               for line in (moddir / "modules.builtin").read_text().split()}
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen or name in builtin or key in builtin:
            return
        seen.add(key)
        path = paths.get(name) or paths.get(key)
        if path is None:
            raise SystemExit(f"kernel module {name} not found under {moddir}")
        data = path.read_bytes()
        if path.suffix == ".xz":
            data = lzma.decompress(data)
        elif path.suffix == ".zst":
            raise SystemExit(f"zstd-compressed module {path} is not supported")
        for dep in module_depends(data):
            visit(dep)
        order.append((path.name.split(".ko")[0] + ".ko", data))

    for name in wanted:
        visit(name)
    return order


def extract_vmlinux(bzimage: Path) -> bytes:
    """The ELF kernel inside a bzImage (Debian compresses it with XZ)."""
    data = bzimage.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise SystemExit(f"{bzimage}: no XZ payload found")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    if not elf.startswith(b"\x7fELF"):
        raise SystemExit(f"{bzimage}: payload is not an ELF kernel")
    return elf


class Cpio:
    """A minimal writer of the 'newc' cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        header = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
        self.ino += 1
        self.out.write(header.encode() + name.encode() + b"\0")
        self.out.write(b"\0" * (-(110 + len(name) + 1) % 4))
        self.out.write(data + b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def build_initrd(modules: list[tuple[str, bytes]]) -> bytes:
    busybox = shutil.which("busybox") or "/bin/busybox"
    bash = shutil.which("bash-static") or "/bin/bash-static"
    for tool, pkg in ((busybox, "busybox-static"), (bash, "bash-static")):
        if not os.path.exists(tool):
            raise SystemExit(f"{tool} is missing: apt-get install {pkg}")
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    cpio = Cpio()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev",
              "tmp", "run", "root", "lib", "lib/modules"):
        cpio.directory(d)
    cpio.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    cpio.file("bin/bash", Path(bash).read_bytes(), 0o755)
    for applet in applets:
        if applet not in ("busybox", "bash", "nc"):
            cpio.symlink(f"bin/{applet}", "busybox")
    cpio.file("bin/nc", NC.encode(), 0o755)
    cpio.symlink("bin/sh", "bash")
    cpio.file("init", INIT.encode(), 0o755)
    cpio.file("etc/inittab", INITTAB.encode())
    cpio.file("etc/rc", RC.encode(), 0o755)
    cpio.file("bin/backdoor", BACKDOOR.encode(), 0o755)
    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    for name, data in modules:
        cpio.file(f"lib/modules/{name}", data)
    cpio.file("lib/modules/load-order", "".join(n + "\n" for n, _ in modules).encode())
    return cpio.finish()


def build(cache: Path | None = None) -> Guest:
    """Build (or reuse) the tiny guest; return where its kernel and initrd are."""
    cache = cache or cache_root()
    package = kernel_package()
    recipe = hashlib.sha256(Path(__file__).read_bytes() + package.encode()).hexdigest()[:12]
    guest = Guest(cache / f"tiny-{recipe}")
    if guest.initrd.exists() and guest.kernel.exists():
        return guest
    root = unpack_kernel(package, cache / package)
    version = package.removeprefix("linux-image-")
    modules = load_order(root / "lib/modules" / version, WANTED_MODULES)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".building-"))
    try:
        (staging / "vmlinux").write_bytes(extract_vmlinux(root / "boot" / f"vmlinuz-{version}"))
        shutil.copy(root / "boot" / f"vmlinuz-{version}", staging / "vmlinuz")
        (staging / "initrd").write_bytes(gzip.compress(build_initrd(modules), 1))
        os.rename(staging, guest.directory)  # atomic: concurrent builders never see half a guest
    except OSError:
        if not guest.initrd.exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return guest


def vlan_options(vlans: dict[int, int], hosts: dict[str, str]) -> tuple[str, str]:
    """QEMU arguments and kernel parameters putting a machine on VLANs, as NixOS does.

    ``vlans`` maps VLAN number -> this machine's number n on it: NIC eth1, eth2, ... in
    VLAN order, attached to the switch at ``$QEMU_VDE_SOCKET_<vlan>``, address
    192.168.<vlan>.<n>/24.  ``hosts`` (name -> address) goes to /etc/hosts.
    """
    args, params = [], []
    for index, (vlan, n) in enumerate(sorted(vlans.items()), start=1):
        args.append(f'-netdev vde,id=vlan{vlan},sock="${{QEMU_VDE_SOCKET_{vlan}:?no switch for vlan {vlan}}}" '
                    f"-device virtio-net-pci,netdev=vlan{vlan},mac=52:54:00:12:{vlan:02x}:{n:02x},romfile=")
        params.append(f"td.ip=eth{index}:192.168.{vlan}.{n}/24")
    if hosts:
        params.append("td.hosts=" + ",".join(f"{name}:{addr}" for name, addr in hosts.items()))
    return " ".join(args), " ".join(params)


def write_start_script(directory: Path, name: str, guest: Guest | None = None,
                       append: str = "", memory: int = 512, seabios: bool = False,
                       vlans: dict[int, int] | None = None, hosts: dict[str, str] | None = None,
                       efi: bool = False) -> Path:
    """Write DIRECTORY/run-NAME-vm starting the tiny guest, like NixOS's start scripts.

    By default the guest boots the uncompressed kernel through PVH with qboot (about
    1.5 s faster under TCG), without a screen; ``seabios=True`` boots the bzImage with
    SeaBIOS, whose VGA BIOS sets up the text console that screenshots show;
    ``efi=True`` boots the bzImage (an EFI stub) with OVMF and a variable store.
    """
    guest = guest or build()
    path = Path(directory) / f"run-{name}-vm"
    firmware = EFI_FIRMWARE if efi else "" if seabios else "-bios qboot.rom "
    kernel = guest.bzimage if seabios or efi else guest.kernel
    vlan_args, vlan_params = vlan_options(vlans or {}, hosts or {})
    efi_setup = EFI_SETUP.replace("@NAME@", name).replace("@VARS@", OVMF_VARS) if efi else ""
    return write_executable(path, START_SCRIPT.format(
        name=name, efi_setup=efi_setup, kernel=kernel, initrd=guest.initrd,
        append=f"{append} {vlan_params}".strip(), memory=memory, firmware=firmware,
        vlan_args=f"\\\n  {vlan_args} " if vlan_args else ""))


def write_executable(path: Path, text: str) -> Path:
    """Write a script and make it executable (start scripts, the guests' helpers)."""
    path.write_text(text)
    path.chmod(0o755)
    return path


def run_cli(doc: str, build: Callable[[], Guest], write_start_script: Callable[..., Path],
            vlans: bool) -> None:
    """The command line of a guest builder: ``build``, ``start-script NAME DIR [options]``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build")
    script = sub.add_parser("start-script")
    script.add_argument("name")
    script.add_argument("directory", type=Path)
    script.add_argument("--append", default="", help="extra kernel parameters")
    script.add_argument("--seabios", action="store_true", help="boot with SeaBIOS (VGA text console)")
    script.add_argument("--efi", action="store_true", help="boot with OVMF and a UEFI variable store")
    if vlans:
        script.add_argument("--vlan", action="append", default=[], metavar="VLAN:N",
                            help="a NIC on VLAN with address 192.168.VLAN.N (repeatable)")
        script.add_argument("--host", action="append", default=[], metavar="NAME:ADDRESS",
                            help="an /etc/hosts entry (repeatable)")
    args = parser.parse_args()
    if args.cmd == "build":
        print(build().directory)
        return
    options = {"append": args.append, "seabios": args.seabios}
    if args.efi:
        options["efi"] = True
    if vlans:
        options["vlans"] = {int(v): int(n) for v, n in (item.split(":") for item in args.vlan)}
        options["hosts"] = dict(item.split(":", 1) for item in args.host)
    print(write_start_script(args.directory, args.name, **options))


def main() -> None:
    run_cli(__doc__ or "", build, write_start_script, vlans=True)


if __name__ == "__main__":
    main()
