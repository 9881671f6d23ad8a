"""Files between the host and a machine: through the shell, or through the shared directory
(the host's ``shared_dir``, at /tmp/shared in the guest).

A mixin of ``QemuMachine`` and ``NspawnMachine``.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

from .base import BaseMachine, make_command


class HostFiles(BaseMachine):
    """Copying files into and out of the machine."""

    def copy_from_host_via_shell(self, source: str, target: str) -> None:
        """Copy a host file into the machine through the shell (no shared directory needed)."""
        content = base64.b64encode(Path(source).read_bytes()).decode()
        self.succeed(f"mkdir -p $(dirname {target})", f"echo -n {content} | base64 -d > {target}")

    def copy_from_host(self, source: str, target: str) -> None:
        """Copy a host file or directory to ``target`` in the machine, through the
        shared directory (mounted at /tmp/shared in the guest)."""
        host_src = Path(source)
        with tempfile.TemporaryDirectory(dir=self.shared_dir) as shared_td:
            host_mid = Path(shared_td) / host_src.name
            vm_mid = Path("/tmp/shared") / Path(shared_td).name / host_src.name
            if host_src.is_dir():
                shutil.copytree(host_src, host_mid)
            else:
                shutil.copy(host_src, host_mid)
            self.succeed(make_command(["mkdir", "-p", Path(target).parent]),
                         make_command(["cp", "-r", vm_mid, Path(target)]))  # (Path drops a trailing /)

    def copy_from_machine(self, source: str, target_dir: str = "") -> None:
        """Copy a file or directory from the machine to ``target_dir/NAME`` in the output
        directory (an absolute ``target_dir`` is used as it is), through a temporary
        directory in the shared directory, as upstream's newest."""
        vm_src = Path(source)
        with tempfile.TemporaryDirectory(dir=self.shared_dir) as shared_td:
            host_mid = Path(shared_td) / vm_src.name
            vm_mid = Path("/tmp/shared") / Path(shared_td).name / vm_src.name
            self.succeed(make_command(["mkdir", "-p", vm_mid.parent]))
            self.succeed(make_command(["cp", "-r", vm_src, vm_mid]))
            target = self.out_dir / target_dir / vm_src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if host_mid.is_dir():
                shutil.copytree(host_mid, target)
            else:
                shutil.copy(host_mid, target)

    def copy_from_vm(self, source: str, target_dir: str = "") -> None:
        """Old name of ``copy_from_machine``."""
        self.copy_from_machine(source, target_dir)
