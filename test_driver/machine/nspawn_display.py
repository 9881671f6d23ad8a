"""A container's X display, shown on the host in an interactive run (nixpkgs' ``nspawn_display.py``).

Once the container's X server runs, x11vnc is started in it as a transient unit
(``nixos-test-vnc``) that serves display ``:0`` on a unix socket in the shared directory
and on no TCP port; TigerVNC's viewer then opens that socket on the host, in a window
titled "NAME (nspawn)".  Closing the viewer stops x11vnc and leaves the container
running; stopping the container, or the run, closes the viewer.  It all happens in a
thread of its own, beside the script: a failure is logged, never raised into the script.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .start_command import MAX_SOCKET_PATH
from .supervisor import die_with_parent, end_process
from .x11 import X_RUNS

if TYPE_CHECKING:
    from .nspawn import NspawnMachine

UNIT = "nixos-test-vnc"
"""The transient unit x11vnc runs as, in the container."""


@dataclass(frozen=True)
class NspawnVncConfiguration:
    """``vnc`` of a container in the driver configuration: the two programs to run."""

    x11vnc: Path
    """x11vnc, as the container sees it."""
    tigervnc: Path
    """TigerVNC's viewer, on the host."""


@contextmanager
def short_path(directory: Path) -> Iterator[Path]:
    """``directory``, or a short link to it if a socket in it would have too long a path
    (the shared directory is in the driver's, which is in ``$TMPDIR``)."""
    if len(os.fsencode(directory / "vnc.sock")) <= MAX_SOCKET_PATH:
        yield directory
        return
    link_dir = Path(tempfile.mkdtemp(prefix="td-vnc-", dir="/tmp"))
    try:
        (link_dir / "d").symlink_to(directory)
        yield link_dir / "d"
    finally:
        shutil.rmtree(link_dir, ignore_errors=True)


class ContainerDisplay:
    """Shows one container's X display on the host while the container runs."""

    def __init__(self, machine: NspawnMachine, config: NspawnVncConfiguration) -> None:
        self.machine = machine
        self.config = config
        self.stopping = threading.Event()
        self.ready = threading.Event()  # the container is ready for commands
        self.viewer: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"display-{machine.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Close the viewer and stop x11vnc (if the container still runs); wait for it."""
        self.stopping.set()
        with self.lock:
            viewer = self.viewer
        if viewer is not None and viewer.poll() is None:
            viewer.terminate()
        # (still waiting for the container to be ready, it ends when the container does)
        if self.ready.is_set() and self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(15)
            if self.thread.is_alive():
                self.machine.log("the display worker did not stop within 15 s")

    def _running(self) -> bool:
        return not self.stopping.is_set() and self.machine.booted

    def _run(self) -> None:
        try:
            if not self._wait_for_x():
                return
            with tempfile.TemporaryDirectory(dir=self.machine.shared_dir, prefix="vnc-") as directory, \
                    short_path(Path(directory)) as reachable:
                self._start_server(Path(directory) / "vnc.sock")
                try:
                    if self._wait_for_server(reachable / "vnc.sock"):
                        self._show(reachable / "vnc.sock")
                finally:
                    self._stop_server()
        except Exception as exc:
            if self._running():
                self.machine.log(f"cannot show the container's display: {exc}")

    def _wait_for_x(self) -> bool:
        """Whether the X server came up (False: the container or the run ended first)."""
        self.machine.await_ready(None)  # (raises if the container ends first)
        self.ready.set()
        while self._running():
            if self.machine.side_command(X_RUNS, 10) == 0:
                return True
            self.stopping.wait(1)
        return False

    def _start_server(self, socket_path: Path) -> None:
        in_container = Path("/tmp/shared") / socket_path.relative_to(self.machine.shared_dir)
        x11vnc = [str(self.config.x11vnc), "-display", ":0", "-auth", "/root/.Xauthority",
                  "-unixsock", str(in_container), "-desktop", f"{self.machine.name} (nspawn)",
                  "-nopw", "-rfbport", "0", "-rfbportv6", "0"]  # the unix socket only, no TCP port
        command = shlex.join(["systemd-run", "--quiet", "--collect", "--service-type=exec", f"--unit={UNIT}",
                              *x11vnc])
        if self.machine.side_command(command, 10) != 0:
            raise RuntimeError(f"x11vnc did not start: {command}")
        self.machine.log("x11vnc serves the X display on a unix socket in the shared directory")

    def _wait_for_server(self, host_socket: Path) -> bool:
        while self._running():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1)
                try:
                    probe.connect(str(host_socket))
                    return True
                except (FileNotFoundError, ConnectionRefusedError, TimeoutError):
                    pass
            if self.machine.side_command(f"systemctl is-active --quiet {UNIT}.service", 10) != 0:
                raise RuntimeError("x11vnc ended before it took connections")
            self.stopping.wait(0.2)
        return False

    def _show(self, host_socket: Path) -> None:
        """Run the viewer until it is closed, the container ends or the display is stopped."""
        with self.lock:
            if self.stopping.is_set():
                return
            # its own session: a Ctrl-C at the driver's terminal is not for it; it dies with this thread
            self.viewer = subprocess.Popen([str(self.config.tigervnc), str(host_socket)],
                                           start_new_session=True, preexec_fn=die_with_parent)
        viewer = self.viewer
        self.machine.log(f"VNC viewer running (pid {viewer.pid})")
        try:  # stop() ends the viewer, as does the container's end (which calls stop())
            viewer.wait()
            if not self.stopping.is_set():
                self.machine.log(f"VNC viewer exited (status {viewer.returncode})")
        finally:
            end_process(viewer)

    def _stop_server(self) -> None:
        if self.machine.booted and self.machine.side_command(f"systemctl stop {UNIT}.service", 10) is None:
            self.machine.log("stopping x11vnc timed out")
