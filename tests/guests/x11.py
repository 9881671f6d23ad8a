#!/usr/bin/env python3
"""Build the X11 test guest (NixOS's ``x11`` test node, imitated) and write start scripts for it.

nixpkgs' driver tests ``x11.py`` and ``ocr.py`` run on a machine with an X server, a display
manager that logs ``root`` in automatically, IceWM, and ``xwininfo`` for the driver's window
queries.  This guest is the Debian systemd guest (``debian.py``: same kernel, stage-1
initramfs, backdoor and services) with, on top:

- Xorg (the modesetting driver on QEMU's std VGA through the kernel's ``bochs`` DRM driver;
  no GLX and no glamor: there is no GPU, and mesa's software renderer only costs boot time);
- lightdm logging root in at once (lightdm-autologin's PAM rule against root relaxed, as
  NixOS's ``auto`` display manager does) into an IceWM session;
- the session wrapper of NixOS's display managers (in place of Debian's Xsession): before
  the window manager it starts a user target that ``BindsTo=graphical-session.target``
  (NixOS's "fake graphical session" target), so that root's user manager logs "Reached
  target Current graphical user session." -- what the driver's ``wait_for_x`` greps the
  journal for, next to ``/tmp/.X11-unix/X0``;
- xterm (root's prompt ``root@x11:/tmp#``, the title left alone: a window named ``xterm``),
  x11-utils (``xwininfo``) and the ``fixed`` bitmap fonts xterm draws with;
- root's X cookie in ``/root/.Xauthority`` (lightdm writes it), which the backdoor's
  ``HOME=/root`` and ``DISPLAY=:0.0`` reach, as NixOS's backdoor reaches its X server.

Debian's systemd (252) would log "Reached target graphical-session.target - Current
graphical user session.", which that grep misses: the user manager gets
``StatusUnitFormat=description``, so that the message has the description alone.  The guest
boots to ``graphical.target``; alice has no lingering user manager here.  Under TCG the
backdoor answers after about 18 s and ``wait_for_x`` returns after about 29 s, when IceWM has
drawn its taskbar; an xterm started then shows its prompt about 2 s later.

    python3 tests/guests/x11.py build                 # prints the guest directory
    python3 tests/guests/x11.py start-script NAME DIR # writes DIR/run-NAME-vm
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import debian  # noqa: E402
import tiny  # noqa: E402

PACKAGES = debian.PACKAGES + ["xserver-xorg-core", "lightdm", "icewm", "xterm",
                              "x11-utils", "xfonts-base", "xauth", "dbus-user-session",
                              "xvfb", "x11vnc"]  # (the last two: the tree as a container, nspawn_x11.py)
IMAGE_SIZE = "2G"

XORG_CONF = """# No GPU under QEMU: the modesetting driver on bochs' KMS device, drawing in software.
Section "ServerFlags"
    Option "AutoAddGPU" "false"
EndSection
Section "Module"
    Disable "glx"
EndSection
Section "Device"
    Identifier "bochs"
    Driver "modesetting"
    Option "AccelMethod" "none"
EndSection
Section "Screen"
    Identifier "screen"
    Device "bochs"
    SubSection "Display"
        Modes "1024x768"
    EndSubSection
EndSection
"""

LIGHTDM_CONF = """# NixOS's "auto" display manager: lightdm logs root in at once, into IceWM.
[Seat:*]
autologin-user=root
autologin-user-timeout=0
autologin-session=td-icewm
user-session=td-icewm
session-wrapper=/usr/local/bin/td-x-session
"""

SESSION_DESKTOP = """[Desktop Entry]
Type=Application
Name=IceWM (test session)
Exec=icewm
"""

SESSION = """#!/bin/sh
# The session wrapper of NixOS's display managers, in short (in place of Debian's Xsession):
# the user manager learns the display and reaches graphical-session.target (through a target
# bound to it, which may be started by hand) once the session's command (the window manager) runs.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  # logind made no session (in a container the seat has no VT for it): root's user manager by hand
  systemctl start user@0.service
  export XDG_RUNTIME_DIR=/run/user/0 DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus
fi
systemctl --user import-environment DISPLAY XAUTHORITY
# The window manager first, the graphical session (what wait_for_x waits for) once it has
# drawn the desktop (its taskbar is on the screen): under TCG IceWM takes seconds to come up,
# and it names its check window on the root window long before it draws anything, so that a
# test reading the screen right after wait_for_x saw it black, and an xterm started then
# appeared only when IceWM was done (on NixOS under KVM all of this takes a fraction of a second).
"$@" &
wm=$!
trap 'kill $wm 2>/dev/null' TERM INT HUP
i=0
while [ $i -lt 300 ] && ! xwininfo -name TaskBar 2>/dev/null | grep -q "IsViewable"; do
  sleep 0.2; i=$((i + 1))
done
systemctl --user start td-graphical-session.target
wait $wm
"""

FAKE_TARGET = """[Unit]
Description=Graphical session of a window manager that does not know systemd
BindsTo=graphical-session.target
"""

STATUS_FORMAT = "[Manager]\nStatusUnitFormat=description\n"

CONTAINER_LIGHTDM_CONF = """# The same session in a container (nspawn_x11.py links this in): no GPU, no VT, a seat
# that logind does not call graphical; the X server is Xvfb.
[LightDM]
logind-check-graphical=false
[Seat:*]
xserver-command=/usr/local/bin/td-xvfb
"""

XVFB = """#!/bin/sh
# lightdm's X server in a container: Xvfb, given lightdm's arguments but the VT ones.
for arg; do
  shift
  case $arg in vt[0-9]*|-novtswitch) ;; *) set -- "$@" "$arg" ;; esac
done
exec Xvfb -screen 0 1024x768x24 "$@"
"""


# fontconfig's caches, valid in the image: a cache holds its directory's mtime to the
# nanosecond, and mkfs.ext4 -d keeps whole seconds only, so that every boot found all of them
# stale and rescanned every font (IceWM, the first to ask, spent 13 s of TCG on it while the
# screen stayed black).  The directories' times cut to the second first, then the caches made.
FONT_CACHE = """find -L /usr/share/fonts /usr/local/share/fonts -type d -exec sh -c '
  for d; do touch -c -m -d "@$(stat -L -c %Y "$d")" "$d"; done' sh {} +
fc-cache --system-only --force
"""


def customize(root: Path) -> None:
    """The X parts, on top of debian.customize()."""
    (root / "etc/modprobe.d/td-fb.conf").unlink()  # bochs for every boot: X draws on it
    (root / "var/lib/systemd/linger/alice").unlink()
    conf = root / "etc/X11/xorg.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "10-td-qemu.conf").write_text(XORG_CONF)
    lightdm = root / "etc/lightdm/lightdm.conf.d"
    lightdm.mkdir(parents=True, exist_ok=True)
    (lightdm / "50-td-autologin.conf").write_text(LIGHTDM_CONF)
    pam = root / "etc/pam.d/lightdm-autologin"
    pam.write_text("".join(line for line in pam.read_text().splitlines(keepends=True)
                           if not ("pam_succeed_if.so" in line and "user != root" in line)))
    sessions = root / "usr/share/xsessions"
    sessions.mkdir(parents=True, exist_ok=True)
    (sessions / "td-icewm.desktop").write_text(SESSION_DESKTOP)
    tiny.write_executable(root / "usr/local/bin/td-x-session", SESSION)
    user_units = root / "etc/systemd/user"
    user_units.mkdir(parents=True, exist_ok=True)
    (user_units / "td-graphical-session.target").write_text(FAKE_TARGET)
    (root / "etc/systemd/user.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/user.conf.d/td-status.conf").write_text(STATUS_FORMAT)
    (root / "usr/local/share/td").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/share/td/lightdm-container.conf").write_text(CONTAINER_LIGHTDM_CONF)
    tiny.write_executable(root / "usr/local/bin/td-xvfb", XVFB)
    units = root / "etc/systemd/system"
    link = units / "display-manager.service"
    link.unlink(missing_ok=True)
    link.symlink_to("/lib/systemd/system/lightdm.service")
    default = units / "default.target"
    default.unlink(missing_ok=True)
    default.symlink_to("/lib/systemd/system/graphical.target")
    subprocess.run(["chroot", str(root), "sh", "-c", FONT_CACHE], check=True)


def build(cache: Path | None = None) -> debian.DebianGuest:
    """Build (or reuse) the X11 guest; a few minutes the first time (debootstrap of X, lightdm, IceWM)."""
    return debian.build(cache, "x11", PACKAGES, customize, [Path(__file__)], IMAGE_SIZE)


def write_start_script(directory: Path, name: str, guest: debian.DebianGuest | None = None,
                       append: str = "", memory: int = 1024, seabios: bool = False) -> Path:
    """Write DIRECTORY/run-NAME-vm starting the X11 guest (the Debian guest's script, this image)."""
    return debian.write_start_script(directory, name, guest or build(), append, memory, seabios)


def main() -> None:
    tiny.run_cli(__doc__ or "", build, write_start_script, vlans=False)


if __name__ == "__main__":
    main()
