"""UEFI variables in OVMF's variable store: the pflash file a VM's firmware keeps them in.

NixOS VMs with ``virtualisation.useEFIBoot`` boot OVMF with a writable copy of the
variable store in their state directory (``$NIX_EFI_VARS``).  This module reads and
writes that file while the VM is off, so a test can plant variables before boot and
inspect what the guest or the firmware wrote afterwards.

The store is an EDK II firmware volume (UEFI PI spec, volume 3):

- a firmware volume header (``gEfiSystemNvDataFvGuid``), then the variable store
  header (``gEfiAuthenticatedVariableGuid``, formatted 0x5A, healthy 0xFE);
- variables, each an authenticated variable header (start id 0x55AA, state,
  attributes, monotonic count, timestamp, public key index, name size, data size,
  vendor GUID), the UTF-16LE name with its NUL, the data, padded to 4 bytes.  The
  firmware never rewrites a variable in place: it appends the new copy and clears
  state bits of the old one, so only copies in state "added" are live;
- the fault tolerant write (FTW) working block and its spare area.

Two layouts exist, told apart by the volume's length: OVMF's 4 MiB build (528 KiB of
variables, what nixpkgs uses) and its 2 MiB build (128 KiB).  New stores get the
4 MiB layout; an existing store keeps its own.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .errors import RequestedAssertionFailed


class EfiGuid:
    """Vendor GUIDs that OVMF's own variables use, by their EDK II names."""

    gEfiGlobalVariableGuid = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
    gEfiImageSecurityDatabaseGuid = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
    gEfiCustomModeEnableGuid = uuid.UUID("c076ec0c-7028-4399-a072-71ee5c448b9f")
    gEfiSecureBootEnableDisableGuid = uuid.UUID("f0a30bc7-af08-4556-99c4-001009c93a44")
    gEfiVendorKeysNvGuid = uuid.UUID("9073e4e0-60ec-4b6e-9903-4c223c260f3c")
    gEfiCertDbGuid = uuid.UUID("d9bee56e-75dc-49d9-b4d7-b534210f637a")
    gEfiMemoryTypeInformationGuid = uuid.UUID("4c19049f-4137-4dd3-9c10-8b97a83ffdfa")
    gMtcVendorGuid = uuid.UUID("eb704011-1402-11d3-8e77-00a0c969723b")
    gEdkiiVarErrorFlagGuid = uuid.UUID("04b37fe8-f6ae-480b-bdd5-37d98c5e89aa")
    gIScsiConfigGuid = uuid.UUID("4b47d616-a8d6-4552-9d44-ccad2e0f4cf9")
    gEfiIScsiInitiatorNameProtocolGuid = uuid.UUID("59324945-ec44-4c0d-b1cd-9db139df070c")
    gEfiSystemNvDataFvGuid = uuid.UUID("fff12b8d-7696-4c8b-a985-2747075b4f50")
    gEfiAuthenticatedVariableGuid = uuid.UUID("aaf32c78-947b-439a-a180-2e144ec37792")
    gEdkiiWorkingBlockSignatureGuid = uuid.UUID("9e58292b-7c68-497d-a0ce-6500fd9f1b95")


def guid_name(guid: uuid.UUID) -> str:
    """The EDK II name of a vendor GUID, or the GUID itself."""
    for name, value in vars(EfiGuid).items():
        if value == guid:
            return name
    return str(guid)


class EfiVariable:
    """One UEFI variable: vendor GUID, name, data, attributes (``flags``) and state.

    ``flags`` defaults to non-volatile, boot service and runtime access (what a guest
    sees in efivarfs); ``state`` is the on-disk state byte, ``State.VAR_ADDED`` by default.
    """

    class Flags:
        NON_VOLATILE = 0x01
        BOOTSERVICE_ACCESS = 0x02
        RUNTIME_ACCESS = 0x04
        HARDWARE_ERROR_RECORD = 0x08
        AUTHENTICATED_WRITE_ACCESS = 0x10
        TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x20
        APPEND_WRITE = 0x40

    class State:
        """The on-disk state byte: bits are cleared as a write progresses."""
        VAR_HEADER_VALID_ONLY = 0x7F
        VAR_ADDED = 0x3F
        IN_DELETED_TRANSITION = 0xFE  # mask: the variable is being replaced
        DELETED = 0xFD                # mask: the variable is gone

    DEFAULT_FLAGS = Flags.NON_VOLATILE | Flags.BOOTSERVICE_ACCESS | Flags.RUNTIME_ACCESS
    START_ID = 0x55AA
    # start id, state, reserved, attributes, monotonic count, timestamp (EFI_TIME),
    # public key index, name size, data size, vendor GUID
    HEADER = struct.Struct("<HBBIQ16sIII16s")

    def __init__(self, vendor_uuid: uuid.UUID | None = None, name: str | None = None,
                 data: bytes | None = None, state: int | None = None, flags: int | None = None,
                 *, monotonic_count: int = 0, timestamp: bytes = bytes(16),
                 pubkey_index: int = 0) -> None:
        self.vendor_uuid = vendor_uuid or uuid.UUID(int=0)
        self.name = name or ""
        self.data = data or b""
        self.state = EfiVariable.State.VAR_ADDED if state is None else state
        self.flags = self.DEFAULT_FLAGS if flags is None else flags
        self.monotonic_count = monotonic_count
        self.timestamp = timestamp
        self.pubkey_index = pubkey_index

    # The names nixpkgs' scripts use.  ``vendorUUID`` is the GUID's bytes as stored
    # (mixed endian) read as a big-endian UUID: ``UUID(bytes=guid.bytes_le)``.
    @property
    def vendorUUID(self) -> uuid.UUID:  # noqa: N802
        return uuid.UUID(bytes=self.vendor_uuid.bytes_le)

    @property
    def isDeleted(self) -> bool:  # noqa: N802
        return not self.is_live

    @property
    def is_live(self) -> bool:
        """Added and not deleted (a copy being replaced still counts until its successor lands)."""
        return self.state in (self.State.VAR_ADDED, self.State.VAR_ADDED & self.State.IN_DELETED_TRANSITION)

    def _flag(self, bit: int) -> bool:
        return bool(self.flags & bit)

    volatile = property(lambda self: not self._flag(EfiVariable.Flags.NON_VOLATILE))
    boot_access = property(lambda self: self._flag(EfiVariable.Flags.BOOTSERVICE_ACCESS))
    runtime_access = property(lambda self: self._flag(EfiVariable.Flags.RUNTIME_ACCESS))
    hardware_error_record = property(lambda self: self._flag(EfiVariable.Flags.HARDWARE_ERROR_RECORD))
    authenticated_write_access = property(lambda self: self._flag(EfiVariable.Flags.AUTHENTICATED_WRITE_ACCESS))
    time_based_authenticated_write_access = property(
        lambda self: self._flag(EfiVariable.Flags.TIME_BASED_AUTHENTICATED_WRITE_ACCESS))
    append_write = property(lambda self: self._flag(EfiVariable.Flags.APPEND_WRITE))

    @property
    def key(self) -> tuple[uuid.UUID, str]:
        return self.vendor_uuid, self.name

    def serialize(self) -> bytes:
        """Header, name and data, padded with 0xFF to the next 4-byte boundary."""
        name = (self.name + "\0").encode("utf-16-le")
        header = self.HEADER.pack(self.START_ID, self.state, 0, self.flags, self.monotonic_count,
                                 self.timestamp, self.pubkey_index, len(name), len(self.data),
                                 self.vendor_uuid.bytes_le)
        raw = header + name + self.data
        return raw + b"\xff" * (-len(raw) % 4)

    @classmethod
    def parse(cls, store: bytes, offset: int) -> tuple[EfiVariable, int] | None:
        """The variable at ``offset`` and the offset of the next one, or None at the end."""
        if offset + cls.HEADER.size > len(store):
            return None
        (start, state, _, flags, count, timestamp, pubkey, name_size, data_size,
         guid) = cls.HEADER.unpack_from(store, offset)
        if start != cls.START_ID:
            return None
        name_at = offset + cls.HEADER.size
        end = name_at + name_size + data_size
        if end > len(store):
            raise ValueError(f"variable at {offset:#x} runs past the end of the store")
        name = store[name_at:name_at + name_size].decode("utf-16-le", errors="replace").rstrip("\0")
        var = cls(uuid.UUID(bytes_le=guid), name, store[name_at + name_size:end], state, flags,
                  monotonic_count=count, timestamp=timestamp, pubkey_index=pubkey)
        return var, end + (-end % 4)

    def describe(self) -> str:
        """One line: vendor, name, attributes, data (text when it is UTF-16 text, else hex)."""
        attrs = "|".join(n for n, v in vars(EfiVariable.Flags).items()
                         if isinstance(v, int) and self.flags & v) or "none"
        return (f"{guid_name(self.vendor_uuid)} {self.name} [{attrs}] "
                f"{len(self.data)} bytes: {self._show_data()}")

    def _show_data(self) -> str:
        for encoding in ("utf-16-le", "ascii"):
            try:
                text = self.data.decode(encoding).rstrip("\0")
            except UnicodeDecodeError:
                continue
            if len(text) >= 2 and text.isascii() and text.isprintable():
                return repr(text)
        shown = self.data[:32].hex(" ")
        return shown + (" ..." if len(self.data) > 32 else "")

    def print(self) -> None:
        print(self.describe())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EfiVariable) and self.serialize() == other.serialize()

    def __repr__(self) -> str:
        return f"EfiVariable({self.vendor_uuid}, {self.name!r}, {self.data!r}, flags={self.flags:#x})"


@dataclass(frozen=True)
class Layout:
    """Where OVMF's build puts the variable region and the FTW blocks."""
    fv_length: int
    variables_end: int      # the firmware volume header and the variable store
    working_offset: int     # FTW working block
    working_size: int
    block_size: int = 0x1000


LAYOUTS = {0x84000: Layout(0x84000, 0x40000, 0x41000, 0x1000),   # OVMF 4 MiB build
           0x20000: Layout(0x20000, 0xE000, 0xF000, 0x1000)}     # OVMF 2 MiB build
DEFAULT_LAYOUT = LAYOUTS[0x84000]

FV_HEADER = struct.Struct("<16s16sQ4sIHHHBB")  # + block map
FV_ATTRIBUTES = 0x0004FEFF
STORE_HEADER = struct.Struct("<16sIBBHI")
STORE_FORMATTED, STORE_HEALTHY = 0x5A, 0xFE
WORKING_HEADER = struct.Struct("<16sIB3sQ")


def _checksum16(data: bytes) -> int:
    return (-sum(struct.unpack(f"<{len(data) // 2}H", data))) & 0xFFFF


def _fv_header(layout: Layout) -> bytes:
    blocks = struct.pack("<IIII", layout.fv_length // layout.block_size, layout.block_size, 0, 0)
    length = FV_HEADER.size + len(blocks)
    fields = [bytes(16), EfiGuid.gEfiSystemNvDataFvGuid.bytes_le, layout.fv_length, b"_FVH",
              FV_ATTRIBUTES, length, 0, 0, 0, 2]
    checksum = _checksum16(FV_HEADER.pack(*fields) + blocks)
    fields[6] = checksum
    return FV_HEADER.pack(*fields) + blocks


def _working_header(layout: Layout) -> bytes:
    """A fresh FTW working block header: valid, no write pending; CRC32 over the header
    with the CRC and the state byte in their erased form (0xFF)."""
    queue = layout.working_size - WORKING_HEADER.size
    signature = EfiGuid.gEdkiiWorkingBlockSignatureGuid.bytes_le
    crc = zlib.crc32(WORKING_HEADER.pack(signature, 0xFFFFFFFF, 0xFF, b"\xff" * 3, queue))
    return WORKING_HEADER.pack(signature, crc, 0xFE, b"\xff" * 3, queue)


def _layout_of(store: bytes) -> tuple[Layout, int]:
    """The layout of a store and the offset of its first variable; ValueError if it is not one."""
    if len(store) < FV_HEADER.size + STORE_HEADER.size:
        raise ValueError(f"{len(store)} bytes is too short for a variable store")
    _, fs_guid, fv_length, signature, _, header_length, *_ = FV_HEADER.unpack_from(store)
    if signature != b"_FVH" or uuid.UUID(bytes_le=fs_guid) != EfiGuid.gEfiSystemNvDataFvGuid:
        raise ValueError("not an OVMF variable store (no NV data firmware volume header)")
    if fv_length not in LAYOUTS or len(store) < fv_length:
        raise ValueError(f"unknown variable store size {fv_length:#x} (file has {len(store):#x} bytes)")
    store_guid, _, fmt, health, _, _ = STORE_HEADER.unpack_from(store, header_length)
    if uuid.UUID(bytes_le=store_guid) != EfiGuid.gEfiAuthenticatedVariableGuid:
        raise ValueError(f"variable store format {uuid.UUID(bytes_le=store_guid)} is not the authenticated one")
    if (fmt, health) != (STORE_FORMATTED, STORE_HEALTHY):
        raise ValueError(f"variable store not formatted/healthy (format {fmt:#x}, state {health:#x})")
    first = header_length + STORE_HEADER.size
    return LAYOUTS[fv_length], first + (-first % 4)


def parse_store(store: bytes) -> list[EfiVariable]:
    """Every variable record in the store, live or not, in the order they were written."""
    _, offset = _layout_of(store)
    records = []
    while (parsed := EfiVariable.parse(store, offset)) is not None:
        var, offset = parsed
        records.append(var)
    return records


def live_variables(store: bytes) -> list[EfiVariable]:
    """The live variables: the newest live copy of each (vendor, name)."""
    latest: dict[tuple[uuid.UUID, str], EfiVariable] = {}
    for var in parse_store(store):
        if var.is_live:
            latest.pop(var.key, None)
            latest[var.key] = var
    return list(latest.values())


def build_store(variables: Iterable[EfiVariable], layout: Layout = DEFAULT_LAYOUT) -> bytes:
    """A compact store holding ``variables``, its FTW working block fresh and its spare erased."""
    fv = _fv_header(layout)
    store = bytearray(b"\xff" * layout.fv_length)
    size = layout.variables_end - len(fv)
    header = STORE_HEADER.pack(EfiGuid.gEfiAuthenticatedVariableGuid.bytes_le, size,
                               STORE_FORMATTED, STORE_HEALTHY, 0, 0)
    body = b"".join(var.serialize() for var in variables)
    start = len(fv) + len(header)
    if start + len(body) > layout.variables_end:
        raise ValueError(f"{len(body)} bytes of variables do not fit a store of {size} bytes")
    store[:start] = fv + header
    store[start:start + len(body)] = body
    working = _working_header(layout)
    store[layout.working_offset:layout.working_offset + len(working)] = working
    return bytes(store)


class EfiVars:
    """The variable store of one machine, read and written only while it is off."""

    def __init__(self, state_path: Path, machine: Any) -> None:
        self.state_path = Path(state_path)
        self.machine = machine

    def _assert_stopped(self) -> None:
        if getattr(self.machine, "booted", False):
            raise RequestedAssertionFailed(
                f"{self.machine.name} is running: its firmware owns the UEFI variable store "
                f"{self.state_path}; shut it down (or crash() it) first")

    def _read(self) -> bytes | None:
        try:
            data = self.state_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            _layout_of(data)
        except ValueError as exc:
            raise RequestedAssertionFailed(f"{self.state_path}: {exc}") from None
        return data

    def variables(self) -> list[EfiVariable] | None:
        """The live variables, or None if there is no store yet."""
        self._assert_stopped()
        data = self._read()
        return None if data is None else live_variables(data)

    def read_content(self) -> dict[str, dict[str, EfiVariable]] | None:
        """The live variables by vendor (EDK II name or GUID) and name, or None without a store."""
        found = self.variables()
        if found is None:
            return None
        content: dict[str, dict[str, EfiVariable]] = {}
        for var in found:
            content.setdefault(guid_name(var.vendor_uuid), {})[var.name] = var
        return content

    def create_empty(self) -> None:
        """Write an empty store (OVMF 4 MiB layout); it must not exist yet."""
        self._assert_stopped()
        if self.state_path.exists():
            raise RequestedAssertionFailed(f"the UEFI variable store {self.state_path} exists already")
        self.state_path.write_bytes(build_store([]))

    def write(self, add: Iterable[EfiVariable]) -> None:
        """Add variables (replacing any with the same vendor and name), creating the store if needed."""
        self._assert_stopped()
        data = self._read()
        layout = DEFAULT_LAYOUT if data is None else _layout_of(data)[0]
        merged = {var.key: var for var in ([] if data is None else live_variables(data))}
        for var in add:
            merged.pop(var.key, None)
            merged[var.key] = var
        try:
            image = build_store(merged.values(), layout)
        except ValueError as exc:
            raise RequestedAssertionFailed(f"{self.state_path}: {exc}") from None
        tmp = self.state_path.with_name(self.state_path.name + ".new")
        tmp.write_bytes(image)
        tmp.replace(self.state_path)
