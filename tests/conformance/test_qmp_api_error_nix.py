"""nixpkgs' nixos-test-driver/qmp-api-error.nix: one VM, started but not waited for.

What it asserts: ``QMPAPIError`` imports from ``test_driver.machine.qmp``; after
``start()`` the machine has a ``qmp_client``; sending a command QEMU does not know raises
``QMPAPIError`` with ``class_name`` "CommandNotFound", a ``description``, and no
``transaction_id`` (the command went without an id).
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
from test_driver.machine.qmp import QMPAPIError

machine.start()
assert machine.qmp_client is not None
try:
    machine.qmp_client.send("this-command-does-not-exist")
except QMPAPIError as error:
    assert error.class_name == "CommandNotFound", error.class_name
    assert error.description
    assert error.transaction_id is None, error.transaction_id
else:
    raise AssertionError("expected QMPAPIError")
print("QMP-API-ERROR PASSED")
'''


def test_qmp_api_error_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("tiny")}).check()
    assert "QMP-API-ERROR PASSED" in run.stdout
