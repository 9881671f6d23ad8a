"""VLan: one vde_switch per virtual LAN, always stopped and removed."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Callable

from .deadline import Deadline
from .errors import DriverError
from .logger import AbstractLogger
from .machine.supervisor import die_with_parent, end_process


class VLan:
    """A vde_switch in hub mode whose control socket lives in ``tmp_dir/vde<nr>.ctl``.

    As upstream's: start scripts find it through ``QEMU_VDE_SOCKET_<nr>``, also set in
    the driver's own environment while the VLAN runs; the switch floods every frame
    to every port (``--hub``: VLAN-tagged frames pass too); and ``vde_plug2tap``
    plugs a tap interface ``vde-tap<nr>`` of the driver's network namespace into it,
    which containers' start scripts bridge to.  Creating a tap needs CAP_NET_ADMIN:
    without it (an unprivileged build user) there is no tap, as upstream.
    """

    def __init__(self, nr: int, tmp_dir: Path, logger: AbstractLogger,
                 wrap: Callable[[list[str]], list[str]] = lambda argv: argv, timeout: float = 30) -> None:
        self.nr = nr
        self.logger = logger
        self.socket_dir = Path(tmp_dir) / f"vde{nr}.ctl"
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if shutil.which("vde_switch") is None:
            raise DriverError("vde_switch not found on PATH (Debian: apt-get install vde2)")
        logger.info(f"start vlan {nr}")
        self.process = subprocess.Popen(
            ["vde_switch", "-s", str(self.socket_dir), "--dirmode", "0700", "--hub"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)
        self.pid = self.process.pid
        self.stopping = False
        self.died: str | None = None  # why the switch ended, if it died during the test
        self.tap_name = f"vde-tap{nr}"
        self.plug: subprocess.Popen[bytes] | None = None  # vde_plug2tap, once the switch runs
        try:
            self._wait_ready(Deadline(timeout))
        except BaseException:
            self.stop()
            raise
        self.watcher = threading.Thread(target=self._watch, name=f"vlan{nr}-watch", daemon=True)
        self.watcher.start()
        if shutil.which("vde_plug2tap"):
            logger.info(f"creating tap interface {self.tap_name}")
            self.plug = subprocess.Popen(  # in the run's network namespace, where containers bridge to it
                wrap(["vde_plug2tap", "-s", str(self.socket_dir), self.tap_name]),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=die_with_parent)
        os.environ.update(self.env)
        logger.info(f"running vlan (pid {self.pid}; ctl {self.socket_dir})")

    def _watch(self) -> None:
        """Report at once a switch that dies while the test still needs it."""
        status = self.process.wait()
        if not self.stopping:
            self.died = f"vde_switch of vlan {self.nr} (pid {self.pid}) died with status {status}"
            self.logger.report_error(f"{self.died}: machines on vlan {self.nr} are cut off from each other")

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
        for name in self.env:
            if os.environ.get(name) == self.env[name]:
                del os.environ[name]
        if self.plug is not None:
            end_process(self.plug)
        if self.process.poll() is None:
            self.logger.info(f"kill vlan (pid {self.pid})")
            end_process(self.process)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
