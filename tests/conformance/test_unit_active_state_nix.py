"""nixpkgs' nixos-test-driver/unit-active-state.nix: a VM with ``test.service`` of
``Type=notify-reload`` (not started at boot) that spends 5 s in activating, 5 s in
reloading on a reload, 5 s in deactivating on a stop, then fails.

Our Debian systemd guest's ``test.service`` has the same states and windows.  Debian 12's
systemd (252) predates ``notify-reload`` and ``systemd-notify --reloading/--stopping``
(253), so it gets there with ``Type=notify``, an ``ExecReload`` and an ``ExecStop`` of
5 s each, and a main process that exits 1 on SIGTERM: what the driver sees, ActiveState
over time, is the same.

What it asserts: with no ``start_all()``, ``wait_for_unit_active_state`` (10 s timeouts)
sees inactive, then after a start activating and active, after a reload reloading and
active (no timeout given), after a stop (``succeed(..., timeout=10)``, a bare number)
deactivating and failed.

Ours on top, in the same run: three more stops each find the unit deactivating at once and
still 2 s later (the guest's stand-in once went from active straight to failed in about
one stop of three, which made the nixpkgs assertion fail by chance).
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
machine.wait_for_unit_active_state("test.service", "inactive", timeout=10)
machine.succeed("systemctl start --no-block test.service")
machine.wait_for_unit_active_state("test.service", "activating", timeout=10)
machine.wait_for_unit_active_state("test.service", "active", timeout=10)
machine.succeed("systemctl reload --no-block test.service")
machine.wait_for_unit_active_state("test.service", "reloading", timeout=10)
machine.wait_for_unit_active_state("test.service", "active")
machine.succeed("systemctl stop --no-block test.service", timeout=10)
machine.wait_for_unit_active_state("test.service", "deactivating", timeout=10)
machine.wait_for_unit_active_state("test.service", "failed", timeout=10)
print("UNIT-ACTIVE-STATE PASSED")
for _ in range(3):
    machine.succeed("systemctl start test.service")
    states = machine.succeed(
        "systemctl stop --no-block test.service; systemctl show -P ActiveState test.service;"
        " sleep 2; systemctl show -P ActiveState test.service"
    ).split()
    assert states == ["deactivating", "deactivating"], states
print("EVERY STOP DEACTIVATES")
'''


def test_unit_active_state_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian")}).check()
    assert "UNIT-ACTIVE-STATE PASSED" in run.stdout
    assert "EVERY STOP DEACTIVATES" in run.stdout
