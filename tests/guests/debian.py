#!/usr/bin/env python3
"""Build the Debian systemd test guest and write NixOS-style start scripts for it.

A debootstrap'ed Debian (minbase + systemd) from the configured Debian mirror, put
into an ext4 image with ``mkfs.ext4 -d`` (no mounting), booted through a small
stage-1 initramfs that loads the virtio modules and switch_roots to systemd.
``backdoor.service`` runs the same steps as NixOS's test instrumentation on hvc0.
Test services: ``echo-tcp`` (TCP 8000), ``echo-unix`` (/run/echo.sock), both
enabled; ``late-port`` (TCP 8001, opens 3 s after it starts) and ``failing``
(exits 1), not enabled; user ``alice`` with a lingering user manager.

Parts that imitate the ``nodes`` of nixpkgs' own driver tests, off unless the kernel
command line asks (``append``): ``systemd.wants=generate-output.service`` (prints "match
that", 15 lines a second later, then "match this", to the console),
``test.service`` (5 s in each of activating, reloading and deactivating, then failed),
``td.autologin`` (root logged in on tty1, in place of its getty), ``td.fb`` (the bochs
framebuffer console: 128 columns, as NixOS's), ``td.busybox`` (busybox's applets first
on the backdoor shell's PATH).  iptables and ping are installed, with the netfilter
modules (loaded on demand, as on NixOS).

Networking is systemd-networkd's: eth0 is QEMU's user-mode network (10.0.2.15, as NixOS's
DHCP gets it), eth1 a second user-mode network (10.0.3.15) unless the start script puts the
machine on VLANs (``vlans``, ``hosts``: as tiny.py's, vde NICs eth1, eth2, ... with addresses
192.168.<vlan>.<n>/24 and /etc/hosts entries, which ``td-network.service`` turns into runtime
.network files before networkd starts).  ``network-online.target`` waits for
``systemd-networkd-wait-online --any``, as NixOS's ``systemd.network.wait-online.anyInterface``.

Each VM writes to a qcow2 overlay in its state directory (as NixOS keeps its disk
image there), so the base image stays untouched and ``--keep-vm-state`` works.
``Platform`` holds what depends on the guest's architecture: this module builds the host's
(amd64), debian_arm64.py the same guest for arm64.

    python3 tests/guests/debian.py build                 # prints the guest directory
    python3 tests/guests/debian.py start-script NAME DIR # writes DIR/run-NAME-vm
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

PACKAGES = ["systemd", "systemd-sysv", "udev", "netcat-openbsd", "procps", "iproute2", "kmod",
            "socat", "psmisc", "dbus", "libpam-systemd", "iptables", "iputils-ping", "busybox"]
ROOTFS_MODULES = ["kernel/net/netfilter", "kernel/net/ipv4/netfilter", "kernel/net/ipv6/netfilter", "bochs"]
"""Kernel modules the root file system gets (folders, or a module with what it needs), for modprobe."""
STAGE1_MODULES = tiny.WANTED_MODULES + ["virtio_blk", "ext4", "crc32c_generic", "autofs4"]

STAGE1_INIT = r"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/load-order); do /bin/busybox insmod /lib/modules/$m 2>/dev/null; done
/bin/busybox mkdir -p /newroot
n=0
until /bin/busybox mount -t ext4 /dev/vda /newroot 2>/dev/null; do
  n=$((n+1)); [ $n -gt 100 ] && { echo "stage 1: cannot mount /dev/vda"; exec /bin/busybox sh; }
  /bin/busybox sleep 0.05
done
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/init
"""

BACKDOOR = r"""#!/bin/bash
export USER=root HOME=/root DISPLAY=:0.0 PAGER=
source /etc/profile
if grep -qw td.busybox /proc/cmdline; then  # as a NixOS machine with busybox in systemPackages
  mkdir -p /run/busybox-bin && busybox --install -s /run/busybox-bin && export PATH=/run/busybox-bin:$PATH
fi
""" + tiny.BACKDOOR_STEPS

UNITS = {
    "backdoor.service": """[Unit]
Description=Backdoor root shell for the test driver
Requires=dev-hvc0.device dev-@SERIAL@.device
After=dev-hvc0.device dev-@SERIAL@.device
[Service]
ExecStart=/usr/local/bin/backdoor
KillSignal=SIGHUP
Restart=always
RestartSec=0
[Install]
WantedBy=multi-user.target
""",
    "echo-tcp.service": """[Unit]
Description=TCP echo service on port 8000
[Service]
ExecStart=/usr/bin/socat TCP-LISTEN:8000,fork,reuseaddr EXEC:/bin/cat
SuccessExitStatus=143
[Install]
WantedBy=multi-user.target
""",
    "echo-unix.service": """[Unit]
Description=Unix socket echo service on /run/echo.sock
[Service]
ExecStart=/usr/bin/socat UNIX-LISTEN:/run/echo.sock,fork,unlink-early EXEC:/bin/cat
SuccessExitStatus=143
[Install]
WantedBy=multi-user.target
""",
    "late-port.service": """[Unit]
Description=TCP service on port 8001 that opens 3 s after it starts
[Service]
ExecStart=/bin/sh -c 'sleep 3; exec /usr/bin/socat TCP-LISTEN:8001,fork,reuseaddr EXEC:/bin/cat'
SuccessExitStatus=143
""",
    "failing.service": """[Unit]
Description=A service that fails
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo failing on purpose; exit 1'
""",
    "generate-output.service": """[Unit]
Description=Console output in two bursts a second apart (nixpkgs' console-timeout test)
[Service]
ExecStart=/bin/sh -c 'echo "match that"; sleep 1; seq 15 | sed "s/^/line /"; echo "match this"'
StandardOutput=journal+console
""",
    "test.service": """[Unit]
Description=Five seconds in each of activating, reloading and deactivating, then failed
# deactivating is ExecStop's sleep, not a sleep in the TERM trap: systemd signals the
# cgroup again and again until no new process appears, so a sleep forked by the trap
# was often killed at once and the unit went from active straight to failed.
[Service]
Type=notify
NotifyAccess=all
ExecStart=/bin/bash -c 'trap "exit 1" TERM; sleep 5; systemd-notify --ready; while :; do sleep 1 & wait $!; done'
ExecReload=/bin/sleep 5
ExecStop=/bin/sleep 5
""",
    "autologin-tty1.service": """[Unit]
Description=root logged in on tty1 (NixOS's services.getty.autologinUser)
ConditionKernelCommandLine=td.autologin
After=systemd-user-sessions.service td-fb.service
[Service]
ExecStart=-/sbin/agetty --autologin root --noclear tty1 linux
Type=idle
Restart=always
UtmpIdentifier=tty1
TTYPath=/dev/tty1
TTYReset=yes
TTYVHangup=yes
[Install]
WantedBy=multi-user.target
""",
    "td-fb.service": """[Unit]
Description=The bochs framebuffer console (128 columns, as NixOS's)
ConditionKernelCommandLine=td.fb
DefaultDependencies=no
After=systemd-modules-load.service
Before=sysinit.target
[Service]
Type=oneshot
ExecStart=/sbin/modprobe bochs
[Install]
WantedBy=sysinit.target
""",
    # NixOS's layout: eth0 user-mode networking (slirp's fixed address), eth1 the machine's
    # link to the others: a VLAN (td-network.service's .network files, which sort first), or a
    # second user-mode network standing in for one when the machine is on none.
    "../network/10-eth0.network": """[Match]
Name=eth0
[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
""",
    "../network/20-eth1.network": """[Match]
Name=eth1
[Network]
Address=10.0.3.15/24
""",
    "td-network.service": """[Unit]
Description=VLAN addresses and host names from the kernel command line (td.ip=, td.hosts=)
ConditionKernelCommandLine=|td.ip
ConditionKernelCommandLine=|td.hosts
DefaultDependencies=no
After=systemd-remount-fs.service
Before=systemd-networkd.service network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/td-network
[Install]
WantedBy=systemd-networkd.service
""",
    # NixOS's systemd.network.wait-online.anyInterface: network-online.target is reached when
    # one link is online (the unit is Debian's, wanted by network-online.target)
    "systemd-networkd-wait-online.service.d/td-any.conf": """[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any
""",
    "tmp-shared.mount": """[Unit]
Description=The driver's shared directory
ConditionPathExists=/sys/bus/virtio/drivers/9pnet_virtio
[Mount]
What=shared
Where=/tmp/shared
Type=9p
Options=trans=virtio,version=9p2000.L,msize=262144
[Install]
WantedBy=multi-user.target
""",
}

# td.ip=IFACE:ADDRESS/PREFIX (one per VLAN NIC) and td.hosts=NAME:ADDRESS,... (tiny.vlan_options):
# a .network file per interface, sorting before the image's own (the first match wins), and
# /etc/hosts with the other machines' names.
NETWORK = r"""#!/bin/sh
mkdir -p /run/systemd/network
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    td.ip=*)
      spec=${arg#td.ip=}
      printf '[Match]\nName=%s\n[Network]\nAddress=%s\n' "${spec%%:*}" "${spec#*:}" \
        > "/run/systemd/network/15-td-${spec%%:*}.network" ;;
    td.hosts=*)
      printf '127.0.0.1 localhost\n::1 localhost\n' > /etc/hosts
      echo "${arg#td.hosts=}" | tr , '\n' | while IFS=: read -r host address; do
        echo "$address $host"
      done >> /etc/hosts ;;
  esac
done
"""

START_SCRIPT = """#!/bin/sh
# run-{name}-vm: a start script in the shape of NixOS's qemu-vm.nix for the Debian systemd guest.
# The test driver appends its own QEMU arguments ("$@") and sets SHARED_DIR, TMPDIR.
{efi_setup}disk="${{TMPDIR:?}}/{name}.qcow2"
[ -e "$disk" ] || qemu-img create -q -f qcow2 -F raw -b {image} "$disk"
exec {qemu} -name {name} {machine}-accel tcg -smp 1 -m {memory} {firmware}\\
  -kernel {kernel} -initrd {initrd} \\
  -append "console={serial} panic=-1 quiet root=/dev/vda net.ifnames=0 systemd.hostname={name} {append} $QEMU_KERNEL_PARAMS" \\
  -drive file="$disk",if=virtio,format=qcow2 \\
  -virtfs local,path="${{SHARED_DIR:?SHARED_DIR must be set}}",security_model=none,mount_tag=shared \\
  -netdev user,id=user.0 -device virtio-net-pci,netdev=user.0,romfile= \\
  {links} \\
  {devices}$QEMU_OPTS "$@"
"""
SECOND_LINK = "-netdev user,id=link.1,net=10.0.3.0/24 -device virtio-net-pci,netdev=link.1,romfile="
"""eth1 of a machine on no VLAN: a user-mode network of its own."""


@dataclass(frozen=True)
class Platform:
    """What the guest takes from its architecture.  This class describes the host's own
    (amd64: the host's kernel package and busybox, the kernel booted through PVH, pvpanic);
    debian_arm64.py subclasses it."""

    arch: str = "amd64"  # Debian's name, for debootstrap
    serial: str = "ttyS0"  # the serial console: console=, and the backdoor's stderr
    qemu: str = "qemu-system-x86_64"
    machine: str = ""  # QEMU's board and CPU, when its defaults will not do
    firmware: str = "-bios qboot.rom "  # unless the start script asks for SeaBIOS or OVMF (amd64 only)
    devices: str = "-device pvpanic-pci "  # QEMU devices beyond the disk, the shared directory and the NICs
    stage1_modules: tuple[str, ...] = tuple(STAGE1_MODULES)
    kernel_file: str = "vmlinux"  # in the guest's directory: what -kernel boots

    def prepare(self) -> None:
        """Fail early, with the package to install, when this host cannot build the guest."""

    def kernel_package(self) -> str:
        return tiny.kernel_package()

    def unpack_kernel(self, package: str, cache: Path, staging: Path) -> Path:
        """The kernel package's unpacked tree (cached: tiny.py and the variants share it)."""
        return tiny.unpack_kernel(package, cache / package)

    def busybox(self, cache: Path, staging: Path) -> bytes:
        """A static busybox of this architecture, stage 1's only program."""
        return Path(shutil.which("busybox") or "/bin/busybox").read_bytes()

    def install_kernel(self, boot: Path, version: str, staging: Path) -> None:
        """Put the kernel(s) into the guest's directory (STAGING)."""
        (staging / "vmlinux").write_bytes(tiny.extract_vmlinux(boot / f"vmlinuz-{version}"))
        shutil.copy(boot / f"vmlinuz-{version}", staging / "vmlinuz")  # OVMF boots its EFI stub


AMD64 = Platform()


@dataclass(frozen=True)
class DebianGuest(tiny.Guest):
    platform: Platform = field(default=AMD64)

    @property
    def image(self) -> Path:
        return self.directory / "rootfs.img"

    @property
    def kernel(self) -> Path:
        return self.directory / self.platform.kernel_file

    def complete(self) -> bool:
        """Whether the build has left every file (amd64's OVMF boots the compressed kernel too)."""
        files = [self.image, self.initrd, self.kernel] + ([self.bzimage] if self.platform.arch == "amd64" else [])
        return all(path.exists() for path in files)


def debian_source() -> tuple[str, str]:
    """(mirror URL, suite) of this machine's Debian, from apt's configuration."""
    text = ""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file():
            text += path.read_text(errors="replace") + "\n"
    mirror = "http://deb.debian.org/debian"
    for match in re.finditer(r"(?:URIs:|deb)\s+(\S*debian\S*)", text):
        if "security" not in match.group(1):
            mirror = match.group(1)
            break
    release = Path("/etc/os-release").read_text()
    suite = re.search(r"VERSION_CODENAME=(\w+)", release)
    return mirror, suite.group(1) if suite else "bookworm"


def customize(root: Path, serial: str = "ttyS0") -> None:
    """Add the backdoor, the test services and the test user to the debootstrap'ed tree
    (``serial``: the serial console's tty, the backdoor's stderr)."""
    tiny.write_executable(root / "usr/local/bin/backdoor", BACKDOOR.replace("/dev/ttyS0", f"/dev/{serial}"))
    tiny.write_executable(root / "usr/local/sbin/td-network", NETWORK)
    units = root / "etc/systemd/system"
    for name, text in UNITS.items():
        (units / name).parent.mkdir(parents=True, exist_ok=True)
        (units / name).write_text(text.replace("@SERIAL@", serial))
    wants = units / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    for name in ("backdoor.service", "echo-tcp.service", "echo-unix.service", "tmp-shared.mount",
                 "autologin-tty1.service", "/lib/systemd/system/systemd-networkd.service"):
        link = wants / Path(name).name
        if not link.is_symlink():
            link.symlink_to(name if name.startswith("/") else f"/etc/systemd/system/{name}")
    # hvc0 is the backdoor and the serial console its stderr: no login prompts there.  The ext4 scrub
    # and periodic jobs only slow a test VM down under TCG (e2scrub_reap holds up
    # multi-user.target for minutes).
    for masked in (f"serial-getty@{serial}.service", "serial-getty@hvc0.service", "e2scrub_reap.service",
                   "e2scrub_all.timer", "apt-daily.timer", "apt-daily-upgrade.timer", "fstrim.timer"):
        (units / masked).unlink(missing_ok=True)
        (units / masked).symlink_to("/dev/null")
    sysinit = units / "sysinit.target.wants"
    sysinit.mkdir(exist_ok=True)
    (sysinit / "td-fb.service").symlink_to("/etc/systemd/system/td-fb.service")
    for unit, wanted_by in (("/etc/systemd/system/td-network.service", "systemd-networkd.service"),
                            ("/lib/systemd/system/systemd-networkd-wait-online.service", "network-online.target")):
        (units / f"{wanted_by}.wants").mkdir(exist_ok=True)
        (units / f"{wanted_by}.wants" / Path(unit).name).symlink_to(unit)
    getty = units / "getty@tty1.service.d"
    getty.mkdir(exist_ok=True)
    (getty / "td-autologin.conf").write_text("[Unit]\nConditionKernelCommandLine=!td.autologin\n")
    # bochs only when td.fb asks: the other tests' screens are VGA text (720x400)
    (root / "etc/modprobe.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/modprobe.d/td-fb.conf").write_text("blacklist bochs\n")
    (root / "etc/something").write_text("nothing")  # nixpkgs' junit test's environment.etc
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults 0 1\n")
    (root / "etc/machine-id").write_text("")
    subprocess.run(["chroot", str(root), "useradd", "-m", "-s", "/bin/bash", "alice"], check=True)
    linger = root / "var/lib/systemd/linger"
    linger.mkdir(parents=True, exist_ok=True)
    (linger / "alice").touch()
    for junk in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                 "usr/share/locale"):
        shutil.rmtree(root / junk, ignore_errors=True)
        (root / junk).mkdir(parents=True, exist_ok=True)


def install_modules(source: Path, target: Path) -> None:
    """Copy ROOTFS_MODULES (with every module they depend on) from the kernel package's
    module tree into the guest's, uncompressed, for depmod and modprobe."""
    by_name = {path.name.split(".ko")[0].replace("-", "_"): path for path in source.rglob("*.ko*")}
    wanted = [path for entry in ROOTFS_MODULES for path in
              ((source / entry).rglob("*.ko*") if (source / entry).is_dir() else [by_name[entry]])]
    done: set[Path] = set()
    while wanted:
        path = wanted.pop()
        if path in done:
            continue
        done.add(path)
        data = path.read_bytes()
        if path.suffix == ".xz":
            data = lzma.decompress(data)
        relative = path.relative_to(source)
        copy = target / relative.parent / (path.name.split(".ko")[0] + ".ko")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(data)
        wanted += [by_name[dep.replace("-", "_")] for dep in tiny.module_depends(data)
                   if dep.replace("-", "_") in by_name]
    for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)


def stage1_initrd(modules: list[tuple[str, bytes]], busybox: bytes) -> bytes:
    cpio = tiny.Cpio()
    for d in ("bin", "proc", "sys", "dev", "lib", "lib/modules", "newroot"):
        cpio.directory(d)
    cpio.file("bin/busybox", busybox, 0o755)
    cpio.file("init", STAGE1_INIT.encode(), 0o755)
    for name, data in modules:
        cpio.file(f"lib/modules/{name}", data)
    cpio.file("lib/modules/load-order", "".join(n + "\n" for n, _ in modules).encode())
    return cpio.finish()


def build(cache: Path | None = None, kind: str = "debian", packages: list[str] = PACKAGES,
          more: Callable[[Path], None] | None = None, recipe_of: list[Path] = [], size: str = "1G",
          platform: Platform = AMD64) -> DebianGuest:
    """Build (or reuse) the Debian guest; about a minute the first time.  A variant (x11.py,
    debian_arm64.py) names its ``kind``, its ``packages``, ``more`` customisation of the tree,
    the files of its recipe, the image's ``size`` and its ``platform``."""
    cache = cache or tiny.cache_root()
    package = platform.kernel_package()
    mirror, suite = debian_source()
    recipe = hashlib.sha256(b"".join(path.read_bytes() for path in [*recipe_of, Path(__file__), Path(tiny.__file__)])
                            + f"{package} {mirror} {suite}".encode()).hexdigest()[:12]
    guest = DebianGuest(cache / f"{kind}-{recipe}", platform)
    if guest.complete():
        return guest
    platform.prepare()
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".building-"))
    try:
        kernel_root = platform.unpack_kernel(package, cache, staging)
        version = package.removeprefix("linux-image-")
        modules = tiny.load_order(kernel_root / "lib/modules" / version, list(platform.stage1_modules))
        root = staging / "root"
        subprocess.run(["debootstrap", f"--arch={platform.arch}", "--variant=minbase",
                        f"--include={','.join(packages)}", suite, str(root), mirror],
                       check=True, stdout=subprocess.DEVNULL)
        customize(root, platform.serial)
        if more is not None:
            more(root)
        install_modules(kernel_root / "lib/modules" / version, root / "lib/modules" / version)
        subprocess.run(["chroot", str(root), "depmod", version], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root),
                        str(staging / "rootfs.img"), size], check=True)
        shutil.rmtree(root)
        platform.install_kernel(kernel_root / "boot", version, staging)
        busybox = platform.busybox(cache, staging)
        (staging / "initrd").write_bytes(gzip.compress(stage1_initrd(modules, busybox), 1))
        for leftover in staging.iterdir():  # what the platform unpacked there
            if leftover.is_dir():
                shutil.rmtree(leftover)
        os.rename(staging, guest.directory)
    except OSError:
        if not guest.complete():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return guest


def write_start_script(directory: Path, name: str, guest: DebianGuest | None = None,
                       append: str = "", memory: int = 1024, seabios: bool = False,
                       efi: bool = False, vlans: dict[int, int] | None = None,
                       hosts: dict[str, str] | None = None) -> Path:
    """Write DIRECTORY/run-NAME-vm starting the Debian guest, like NixOS's start scripts
    (``efi``: OVMF with a variable store, as tiny.py's; ``vlans``, ``hosts``: as tiny.py's).
    The firmware options are amd64's: another platform boots its kernel directly."""
    guest = guest or build()
    platform = guest.platform
    if platform.arch != "amd64" and (efi or seabios):
        raise ValueError(f"the {platform.arch} Debian guest boots its kernel directly, without a BIOS or OVMF")
    path = Path(directory) / f"run-{name}-vm"
    firmware = tiny.EFI_FIRMWARE if efi else "" if seabios else platform.firmware
    efi_setup = tiny.EFI_SETUP.replace("@NAME@", name).replace("@VARS@", tiny.OVMF_VARS) if efi else ""
    vlan_args, vlan_params = tiny.vlan_options(vlans or {}, hosts or {})
    return tiny.write_executable(path, START_SCRIPT.format(
        name=name, efi_setup=efi_setup, kernel=guest.bzimage if efi else guest.kernel, initrd=guest.initrd,
        image=guest.image, append=f"{append} {vlan_params}".strip(), memory=memory, firmware=firmware,
        qemu=platform.qemu, machine=platform.machine, serial=platform.serial, devices=platform.devices,
        links=vlan_args or SECOND_LINK))


def main() -> None:
    tiny.run_cli(__doc__ or "", build, write_start_script, vlans=True)


if __name__ == "__main__":
    main()
