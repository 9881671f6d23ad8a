"""nixpkgs' nixos-test-driver/multi-arch-test.nix: two machines of different architectures on
one VLAN, ``vmIntel`` (x86_64-linux) and ``vmArm`` (aarch64-linux), both emulated; no DHCP,
systemd-networkd with ``wait-online`` for any interface; a global timeout of 5 minutes, since
software emulation is slow.  Our Debian systemd guest stands in for ``vmIntel`` and its arm64
build (tests/guests/debian_arm64.py, ``qemu-system-aarch64 -M virt`` under TCG) for ``vmArm``;
each has a static address on VLAN 1 and the other's name in /etc/hosts, as NixOS gives them.

What it asserts: after ``start_all()``, ``systemctl start network-online.target`` and
``wait_for_unit("network-online.target")`` succeed on both; each machine pings the other by
name once; ``uname -m`` contains ``x86_64`` on vmIntel and ``aarch64`` on vmArm
(``t.assertIn``) -- all within the global timeout.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
start_all()

vmIntel.systemctl("start network-online.target")
vmArm.systemctl("start network-online.target")
vmIntel.wait_for_unit("network-online.target")
vmArm.wait_for_unit("network-online.target")

vmIntel.succeed("ping -c 1 vmArm")
vmArm.succeed("ping -c 1 vmIntel")

archIntel = vmIntel.succeed("uname -m")
t.assertIn("x86_64", archIntel, "vmIntel is an Intel VM")
archArm = vmArm.succeed("uname -m")
t.assertIn("aarch64", archArm, "vmArm is an ARM VM")
print("MULTI-ARCH PASSED")
'''


def test_multi_arch_test_nix(nixos_test):
    hosts = {"vmArm": "192.168.1.1", "vmIntel": "192.168.1.2"}  # NixOS numbers the nodes by name
    nodes = {"vmIntel": Node("debian", vlans={1: 2}, hosts=hosts),
             "vmArm": Node("debian-arm64", vlans={1: 1}, hosts=hosts)}
    run = nixos_test(SCRIPT, nodes, vlans=[1], args=["--global-timeout", "300"], timeout=360).check()
    assert "MULTI-ARCH PASSED" in run.stdout
