"""nixpkgs' nixos-test-driver/junit.nix: a VM with systemd-networkd and an
``/etc/something`` holding "nothing" (no newline), and the driver given ``--junit=junit.xml``
(argparse's abbreviation of ``--junit-xml``).  Our Debian systemd guest has both.

What it asserts: the flag is taken; systemd-networkd is active; ``cat /etc/something`` is
exactly "nothing" (``t.assertEqual``).  We also read the report: well formed, in the
output directory, one case per subtest, both passed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from nixos_tests import Node

SCRIPT = r'''
machine.start()
machine.wait_for_unit("multi-user.target")
with subtest("systemd-networkd is started"):
    machine.succeed("systemctl status systemd-networkd.service")
with subtest("/etc is populated correctly"):
    output = machine.succeed("cat /etc/something")
    t.assertEqual(output, "nothing")
'''


def test_junit_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian")}, args=["--junit=junit.xml"]).check()
    cases = ET.parse(run.out / "junit.xml").getroot().iter("testcase")
    names = {case.get("name"): case for case in cases}
    assert set(names) == {"systemd-networkd is started", "/etc is populated correctly"}, names
    assert not [n for n, case in names.items() if case.find("failure") is not None]
