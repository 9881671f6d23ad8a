"""The OVMF variable store format, checked against the stores Debian's ``ovmf`` ships."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_driver import efi
from test_driver.efi import EfiGuid, EfiVariable, EfiVars
from test_driver.errors import RequestedAssertionFailed

OVMF = Path("/usr/share/OVMF")
VENDOR = uuid.UUID("a19f72f8-b554-4bd7-a0c2-2762bd854691")
OFF = SimpleNamespace(name="m", booted=False)


@pytest.mark.parametrize("size, shipped", [(0x84000, "OVMF_VARS_4M.fd"), (0x20000, "OVMF_VARS.fd")])
def test_an_empty_store_is_byte_for_byte_ovmfs(size, shipped):
    assert efi.build_store([], efi.LAYOUTS[size]) == (OVMF / shipped).read_bytes()


def test_a_firmware_written_store_reads_as_its_newest_live_copies():
    # Debian's Secure Boot store was written by OVMF itself: replaced and deleted copies included.
    store = (OVMF / "OVMF_VARS_4M.ms.fd").read_bytes()
    records = efi.parse_store(store)
    live = {(v.vendor_uuid, v.name): v for v in efi.live_variables(store)}
    assert len(records) == 57 and len(live) == 31
    assert {"PK", "KEK", "db", "dbx", "SecureBootEnable"} <= {name for _, name in live}
    # BootOrder's last copy is deleted (state 0x3D): gone; ConOut was written 8 times: the newest wins
    assert not any(name == "BootOrder" for _, name in live)
    conout = live[EfiGuid.gEfiGlobalVariableGuid, "ConOut"]
    assert conout == [v for v in records if v.name == "ConOut"][-1] and len(conout.data) == 146
    pk = live[EfiGuid.gEfiGlobalVariableGuid, "PK"]
    assert pk.time_based_authenticated_write_access and not pk.volatile and pk.timestamp != bytes(16)


def test_rewriting_keeps_every_variable_and_its_authentication_fields(tmp_path):
    store = (OVMF / "OVMF_VARS_4M.ms.fd").read_bytes()
    before = efi.live_variables(store)
    path = tmp_path / "vars.fd"
    path.write_bytes(store)
    EfiVars(path, OFF).write([EfiVariable(VENDOR, "Demo", b"\x2a")])
    after = efi.live_variables(path.read_bytes())
    assert after[:-1] == before and after[-1] == EfiVariable(VENDOR, "Demo", b"\x2a")
    assert len(path.read_bytes()) == 0x84000 and len(efi.parse_store(path.read_bytes())) == 32


def test_a_store_keeps_its_layout_and_a_variable_is_replaced_not_duplicated(tmp_path):
    path = tmp_path / "vars.fd"
    path.write_bytes((OVMF / "OVMF_VARS.fd").read_bytes())
    vars_ = EfiVars(path, OFF)
    vars_.write([EfiVariable(VENDOR, "Demo", b"one")])
    vars_.write([EfiVariable(VENDOR, "Demo", b"two", flags=EfiVariable.Flags.NON_VOLATILE)])
    assert len(path.read_bytes()) == 0x20000
    content = vars_.read_content()
    assert content is not None and list(content) == [str(VENDOR)]
    demo = content[str(VENDOR)]["Demo"]
    assert demo.data == b"two" and demo.flags == 1 and not demo.runtime_access


def test_serialized_variables_are_what_edk2_expects():
    var = EfiVariable(VENDOR, "Ab", b"\x01\x02\x03")
    raw = var.serialize()
    # 60-byte header, "Ab\0" in UTF-16LE (6), 3 data bytes, padded with 0xFF to 4 bytes
    assert len(raw) == 72 and raw[:4] == b"\xaa\x55\x3f\x00" and raw[-3:] == b"\xff" * 3
    assert raw[44:60] == VENDOR.bytes_le and raw[60:66] == "Ab\0".encode("utf-16-le")
    assert var.vendorUUID == uuid.UUID(bytes=VENDOR.bytes_le)
    parsed, end = efi.EfiVariable.parse(raw, 0) or (None, 0)
    assert parsed == var and end == 72


def test_bad_stores_and_misuse_give_clear_errors(tmp_path):
    path = tmp_path / "vars.fd"
    vars_ = EfiVars(path, OFF)
    assert vars_.read_content() is None
    vars_.create_empty()
    with pytest.raises(RequestedAssertionFailed, match="exists already"):
        vars_.create_empty()
    with pytest.raises(RequestedAssertionFailed, match="do not fit"):
        vars_.write([EfiVariable(VENDOR, f"Big{i}", bytes(60000)) for i in range(5)])
    assert efi.live_variables(path.read_bytes()) == []  # a failed write leaves the store as it was
    path.write_bytes(b"\0" * 0x84000)
    with pytest.raises(RequestedAssertionFailed, match="not an OVMF variable store"):
        vars_.read_content()
    running = EfiVars(path, SimpleNamespace(name="m", booted=True))
    with pytest.raises(RequestedAssertionFailed, match="m is running"):
        running.read_content()
    with pytest.raises(RequestedAssertionFailed, match="m is running"):
        running.write([])
