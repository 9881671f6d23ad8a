"""UEFI variables on a machine booting OVMF (Debian's ``ovmf``): planted before boot, seen
by the guest; written by the guest and the firmware, read back after the VM is off."""

from __future__ import annotations

import re

SCRIPT = r'''
import uuid
from test_driver import efi
from test_driver.efi import EfiVariable
from test_driver.errors import RequestedAssertionFailed

vendor = uuid.UUID("a19f72f8-b554-4bd7-a0c2-2762bd854691")
vardir = "/sys/firmware/efi/efivars"

def guest_bytes(name):
    return machine.succeed(f"od -An -tx1 {vardir}/{name}-{vendor}").split()

machine.create_efi_vars()
machine.write_efi_vars([EfiVariable(vendor_uuid=vendor, name="Demo", data=bytes([0x2a]))])
machine.start()
assert guest_bytes("Demo") == ["07", "00", "00", "00", "2a"], guest_bytes("Demo")
# a new variable from the guest: attributes (NV|BS|RT) then the data, in one write
machine.succeed(f"printf '\\x07\\x00\\x00\\x00\\x2b' > {vardir}/FromGuest-{vendor}")
try:
    machine.read_efi_vars()
except RequestedAssertionFailed as exc:
    print("REFUSED WHILE RUNNING:", exc)
else:
    raise AssertionError("read_efi_vars() worked while the firmware owns the store")
machine.crash()

machine.dump_efi_vars()
found = {(v.vendor_uuid, v.name): v for v in machine.read_efi_vars()}
assert found[vendor, "FromGuest"].data == b"\x2b" and found[vendor, "FromGuest"].flags == 7
assert found[vendor, "Demo"].data == b"\x2a"
# upstream's way of finding a variable: vendorUUID in on-disk byte order
raw = uuid.UUID(bytes=vendor.bytes_le)
assert [v.name for v in machine.read_efi_vars() if v.vendorUUID == raw] == ["Demo", "FromGuest"]
mtc = found[efi.EfiGuid.gMtcVendorGuid, "MTC"]
first_count = int.from_bytes(mtc.data, "little")

# rewrite the store the firmware wrote: replace Demo, keep the rest; boot again
machine.write_efi_vars([EfiVariable(vendor_uuid=vendor, name="Demo", data=bytes([0x2c]))])
machine.start()
assert guest_bytes("Demo") == ["07", "00", "00", "00", "2c"]
assert guest_bytes("FromGuest") == ["07", "00", "00", "00", "2b"]
machine.crash()

# the firmware bumps its monotonic counter at each boot: a new copy, the old one deleted
store = machine.efi_vars_path.read_bytes()
copies = [v for v in efi.parse_store(store) if v.name == "MTC"]
assert len(copies) == 2 and not copies[0].is_live and copies[1].is_live, copies
second_count = int.from_bytes(copies[1].data, "little")
assert second_count == first_count + 1, (first_count, second_count)
print("MTC", first_count, second_count)
'''


def test_efi_variables_round_trip_through_ovmf(run):
    result = run(SCRIPT, efi=True)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "REFUSED WHILE RUNNING: machine is running" in out
    # dump_efi_vars: the guest's variable and the firmware's own, one line each
    assert re.search(r"a19f72f8-b554-4bd7-a0c2-2762bd854691 FromGuest \[NON_VOLATILE\|BOOTSERVICE_ACCESS"
                     r"\|RUNTIME_ACCESS\] 1 bytes: 2b", out), out
    assert "gEfiGlobalVariableGuid PlatformLang [NON_VOLATILE|BOOTSERVICE_ACCESS|RUNTIME_ACCESS] 3 bytes: 'en'" in out
    assert re.search(r"MTC (\d+) (\d+)", out)


def test_efi_store_of_a_machine_without_one(run):
    """As upstream: no store yet means no variables (``[]``), not an error; dumping shows none."""
    result = run("assert machine.read_efi_vars() == []\nmachine.dump_efi_vars()\nprint('NO VARIABLES')")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NO VARIABLES" in result.stdout
