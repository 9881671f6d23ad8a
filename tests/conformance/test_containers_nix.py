"""nixpkgs' nixos-test-driver/containers.nix: containers ``c1`` (VLAN 1), ``c2`` (VLAN 2),
``c12`` (both) and VMs ``n1`` (VLAN 1), ``n2`` (VLAN 2), no firewalls; addresses
192.168.VLAN.N with N by sorted name (c1 1, c12 2, c2 3, n1 4, n2 5) and each machine's
first address in every /etc/hosts.  Ours: containers of the Debian systemd tree whose start
script joins VLANs as nixpkgs' run-nspawn does (a network namespace with a veth link per
VLAN on the bridge brN, which holds the driver's vde-tapN), VMs of the tiny guest.

What it asserts: ``copy_from_machine`` works on a container; the containers reach
network-online.target; machines on a VLAN reach each other by name (container to container,
container to VM and back), machines on different VLANs do not (``ping -W 1`` fails).  (The
tiny VMs have no systemd: their network-online.target step is a command that needs the
link up.)
"""

from __future__ import annotations

import os

import pytest

from nixos_tests import Node

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="systemd-nspawn needs root")

HOSTS = {"c1": "192.168.1.1", "c12": "192.168.1.2", "c2": "192.168.2.3", "n1": "192.168.1.4", "n2": "192.168.2.5"}

SCRIPT = r'''
c1.start()
c2.start()
c12.start()
c1.succeed("echo hello > /hello.txt")
c1.copy_from_machine("/hello.txt")
for c in [c1, c2, c12]:
    c.systemctl("start network-online.target")
for c in [c1, c2, c12]:
    c.wait_for_unit("network-online.target")
c1.succeed("ping -c 1 c12")
c12.succeed("ping -c 1 c1")
c12.succeed("ping -c 1 c2")
c1.fail("ping -c 1 -W 1 c2")
n1.start()
n2.start()
for n in [n1, n2]:
    n.succeed("ip -o addr show eth1 | grep 'inet 192.168'")
c1.succeed("ping -c 1 n1")
n1.succeed("ping -c 1 c1")
c2.succeed("ping -c 1 n2")
n2.succeed("ping -c 1 c2")
c1.fail("ping -c 1 -W 1 n2")
n1.fail("ping -c 1 -W 1 c2")
c2.fail("ping -c 1 -W 1 n1")
n2.fail("ping -c 1 -W 1 c1")
print("CONTAINERS PASSED")
'''


def test_containers_nix(nixos_test):
    nodes = {
        "c1": Node("container", vlans={1: 1}, hosts=HOSTS),
        "c2": Node("container", vlans={2: 3}, hosts=HOSTS),
        "c12": Node("container", vlans={1: 2, 2: 2}, hosts=HOSTS),
        "n1": Node("tiny", vlans={1: 4}, hosts=HOSTS),
        "n2": Node("tiny", vlans={2: 5}, hosts=HOSTS),
    }
    run = nixos_test(SCRIPT, nodes, vlans=[1, 2]).check()
    assert "CONTAINERS PASSED" in run.stdout
    assert (run.out / "hello.txt").read_text() == "hello\n"
