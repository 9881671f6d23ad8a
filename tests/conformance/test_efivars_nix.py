"""nixpkgs' nixos-test-driver/efivars.nix: a VM booting OVMF (``useEFIBoot``) that may
write EFI variables, with a python helper that checks a variable holds 0x2a and rewrites
it to 0x2b.  Our Debian systemd guest booting OVMF (``efi=True``; systemd mounts
efivarfs), the helper's steps in the guest's shell (it has no python): the same file, the
same check, ``chattr -i`` for its ioctl, the same write.

What it asserts: before the first start, ``create_efi_vars()`` and ``write_efi_vars()``
plant ``Demo`` (0x2a; non-volatile, boot-service and runtime access); the guest sees it
and rewrites it to 0x2b; ``read_efi_vars()`` on the running machine raises
``RequestedAssertionFailed``; after ``crash()``, ``dump_efi_vars()`` works and
``read_efi_vars()`` finds ``Demo`` (looked up by ``vendorUUID ==
UUID(bytes=vendor_uuid.bytes_le)``, the on-flash byte order) with data 0x2b.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
import unittest
import uuid

from test_driver.efi import EfiVariable
from test_driver.errors import RequestedAssertionFailed

class TestConcurrentRead(unittest.TestCase):
    def __init__(self, machine):
        super().__init__()
        self.machine = machine

    def runTest(self):
        pass

    def test_concurrent_read(self):
        with self.assertRaises(RequestedAssertionFailed):
            self.machine.read_efi_vars()

vendor_uuid = uuid.UUID("a19f72f8-b554-4bd7-a0c2-2762bd854691")
flags = EfiVariable.Flags.NON_VOLATILE | EfiVariable.Flags.BOOTSERVICE_ACCESS | EfiVariable.Flags.RUNTIME_ACCESS
machine.create_efi_vars()
machine.write_efi_vars([EfiVariable(vendor_uuid=vendor_uuid, name="Demo", data=bytes([0x2a]), flags=flags)])
machine.start()
machine.wait_for_unit("multi-user.target")
path = f"/sys/firmware/efi/efivars/Demo-{vendor_uuid}"
print(machine.succeed(
    f"test -e {path} || {{ echo '{path}: does not exist' >&2; exit 1; }}; "
    f"data=$(cat {path} | tail -c +5 | od -An -tx1 | tr -d ' '); "
    f"[ \"$data\" = 2a ] || {{ echo \"0x2a value expected, got $data\" >&2; exit 1; }}; "
    f"chattr -i {path}; "
    f"{{ head -c 4 {path}; printf '\\053'; }} > /tmp/new && cat /tmp/new > {path}; echo rewritten"))
TestConcurrentRead(machine).test_concurrent_read()
machine.crash()
machine.dump_efi_vars()
found = [v for v in machine.read_efi_vars()
         if v.name == "Demo" and v.vendorUUID == uuid.UUID(bytes=vendor_uuid.bytes_le)]
if not found:
    raise ValueError("Could not find Demo variable")
found[0].print()
if found[0].data != bytes([0x2b]):
    raise ValueError("Value 0x2b expected")
print("EFIVARS PASSED")
'''


def test_efivars_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian", efi=True)}).check()
    assert "EFIVARS PASSED" in run.stdout and "rewritten" in run.stdout
