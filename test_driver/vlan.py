"""VLan: one vde_switch per virtual LAN, always stopped and removed."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
from pathlib import Path

from .deadline import Deadline
from .errors import DriverError
from .logger import AbstractLogger
from .machine.supervisor import die_with_parent


class VLan:
    """A vde_switch whose control socket lives in ``tmp_dir/vde<nr>.ctl``.

    Start scripts find it through the environment variable ``QEMU_VDE_SOCKET_<nr>``,
    as with upstream's driver.
    """

    def __init__(self, nr: int, tmp_dir: Path, logger: AbstractLogger, timeout: float = 30) -> None:
        self.nr = nr
        self.logger = logger
        self.socket_dir = Path(tmp_dir) / f"vde{nr}.ctl"
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if shutil.which("vde_switch") is None:
            raise DriverError("vde_switch not found on PATH (Debian: apt-get install vde2)")
        logger.info(f"start vlan {nr}")
        self.process = subprocess.Popen(
            ["vde_switch", "-s", str(self.socket_dir), "--dirmode", "0700"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)
        self.pid = self.process.pid
        self.stopping = False
        self.died: str | None = None  # why the switch ended, if it died during the test
        try:
            self._wait_ready(Deadline(timeout))
        except BaseException:
            self.stop()
            raise
        self.watcher = threading.Thread(target=self._watch, name=f"vlan{nr}-watch", daemon=True)
        self.watcher.start()
        logger.info(f"running vlan (pid {self.pid}; ctl {self.socket_dir})")

    def _watch(self) -> None:
        """Report at once a switch that dies while the test still needs it."""
        status = self.process.wait()
        if not self.stopping:
            self.died = f"vde_switch of vlan {self.nr} (pid {self.pid}) died with status {status}"
            self.logger.error(f"{self.died}: machines on vlan {self.nr} are cut off from each other")

    @property
    def env(self) -> dict[str, str]:
        """What a start script needs to attach to this VLAN."""
        return {f"QEMU_VDE_SOCKET_{self.nr}": str(self.socket_dir)}

    def _wait_ready(self, deadline: Deadline) -> None:
        """vde_switch answers a console command once its control socket exists."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"version\n")
        self.process.stdin.flush()
        seen = b""
        while b"\n" not in seen:
            ready, _, _ = select.select([self.process.stdout], [], [], deadline.remaining())
            if not ready:
                raise DriverError(f"vde_switch for vlan {self.nr} not ready after {deadline.timeout:g}s")
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                raise DriverError(f"vde_switch for vlan {self.nr} exited: {seen.decode(errors='replace')}")
            seen += chunk

    def stop(self) -> None:
        """Terminate the switch (SIGKILL after 5 s) and remove its socket directory."""
        self.stopping = True
        if self.process.poll() is None:
            self.logger.info(f"kill vlan (pid {self.pid})")
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
