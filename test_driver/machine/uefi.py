"""A VM's UEFI variable store (OVMF's), read and written while the machine is off.

A mixin of ``QemuMachine``; the store's format is ``test_driver.efi``'s.
"""

from __future__ import annotations

from pathlib import Path

from ..efi import EfiVariable, EfiVars
from .base import BaseMachine


class UefiVariables(BaseMachine):
    """The variable store at ``$NIX_EFI_VARS`` of the start script."""

    extra_env: dict[str, str]

    @property
    def efi_vars_path(self) -> Path:
        """The OVMF variable store of this machine: ``$NIX_EFI_VARS`` of its start script."""
        return Path(self.extra_env.get("NIX_EFI_VARS") or self.state_dir / f"{self.name}-efi-vars.fd")

    def create_efi_vars(self) -> None:
        """Create an empty UEFI variable store for the next boot (OVMF's 4 MiB layout).
        Fails if the store exists or the machine runs."""
        with self.nested(f"creating UEFI variable store {self.efi_vars_path}"):
            EfiVars(self.efi_vars_path, self).create_empty()

    def write_efi_vars(self, add: list[EfiVariable]) -> None:
        """Add UEFI variables (``add``, upstream's keyword) to the store, replacing those with
        the same vendor and name, creating it if needed; the firmware sees them at the next boot."""
        with self.nested(f"writing {len(add)} UEFI variable(s)"):
            EfiVars(self.efi_vars_path, self).write(add)

    def read_efi_vars(self) -> list[EfiVariable]:
        """The live UEFI variables in the store, as the firmware left them; none (``[]``)
        if there is no store yet, as upstream.  Fails while the machine runs."""
        return EfiVars(self.efi_vars_path, self).variables() or []

    def dump_efi_vars(self) -> None:
        """Log every live UEFI variable of the store: vendor, name, attributes, data."""
        variables = self.read_efi_vars()
        with self.nested(f"{len(variables)} UEFI variables in {self.efi_vars_path}"):
            for var in variables:
                self.log(var.describe())
