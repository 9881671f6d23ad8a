"""nixpkgs' driver tests that cannot run on these machines, each with the exact reason.

- lib-extend.nix: evaluation only (it builds a node's system through ``nixosTest`` and
  ``runNixOSTest`` with ``pkgs.extend``ed ``lib``; there is no script).  It needs a nixpkgs
  checkout and NixOS module evaluation; these machines have Debian's nix but no nixpkgs.
- options-doc-regression.nix: evaluation only (a NixOS system with its manual, where
  ``pkgs`` depends on ``config``: an option of the test framework needs a ``defaultText``).
  Needs nixpkgs.  What it guards in our module is checked below: every option of
  nix/module.nix whose default is computed from the configuration has a ``defaultText``.
- multi-os.nix and multi-os/qemu-vm.nix: a macOS guest (nix-darwin's VM module, an
  OpenCore/macOS image through ``getFlake``) under KVM; there is no macOS image to build here
  (it cannot be redistributed) and no KVM.
- ssh-backdoor.nix: the vsock ssh backdoor through ``vhost-device-vsock``, which Debian does
  not package and cannot be fetched here (docs/upstream-semantics.md: blocked here).
- nspawn-writable-store.nix: two NixOS containers with a writable and a read-only
  ``/nix/store`` running ``nix-build`` inside: it tests the NixOS container module's store
  mounts, nothing of the driver; our container guest is a Debian tree without nix.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

NOT_HERE = ["lib-extend.nix", "options-doc-regression.nix", "multi-os.nix", "multi-os/qemu-vm.nix",
            "ssh-backdoor.nix", "nspawn-writable-store.nix"]


@pytest.mark.parametrize("name", NOT_HERE)
def test_cannot_run_here(name: str) -> None:
    assert name in (__doc__ or "")
    pytest.skip(f"nixpkgs' {name}: see this module's docstring for why it cannot run here")


def test_module_options_computed_from_the_configuration_have_a_default_text():
    module = (Path(__file__).parents[2] / "nix" / "module.nix").read_text()
    options = re.findall(r"(\w+) = lib\.mkOption \{(.*?)\n    \};", module, re.S)
    assert options, "no options found in nix/module.nix"
    for name, body in options:
        default = re.search(r"default = (.*?);\n", body, re.S)
        if default and ("config" in default.group(1) or "pkgs" in default.group(1)):
            assert "defaultText" in body, f"option {name}: default from the configuration without defaultText"
