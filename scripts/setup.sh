#!/usr/bin/env bash
# Install what the driver and its tests need on a Debian machine (run as root), then the project.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(qemu-system-x86 qemu-utils ovmf vde2 busybox-static bash-static socat tesseract-ocr procps
          debootstrap e2fsprogs nix-bin systemd-container iproute2
          qemu-system-arm qemu-user-static  # the arm64 guest: its VM, and its build's arm64 programs
          chromium  # chromium: the HTML report tests read the page in a real browser
          xvfb xdotool tigervnc-viewer)  # nspawn-interactive.nix: a container's display on the host
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ ! -d /var/lib/apt/lists/partial ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial -e auxfiles)" ]; then
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q -e '.[test]'
# The test guests, cached after the first build: the tiny guest (Debian kernel + busybox/bash
# initramfs, seconds) and the Debian systemd guest (debootstrap, about a minute).
python3 tests/guests/tiny.py build
python3 tests/guests/debian.py build
python3 tests/guests/x11.py build  # the Debian guest with Xorg, lightdm and IceWM (x11.py, ocr.py; two minutes)
# The Debian guest for arm64 (multi-arch-test.nix; under three minutes; needs binfmt_misc for
# qemu-user). A machine where it cannot be built still runs every other test: that one test
# then fails, saying why.
python3 tests/guests/debian_arm64.py build || echo "setup: the arm64 guest could not be built (see above)" >&2
