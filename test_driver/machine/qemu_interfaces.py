"""What QEMU itself offers a test: the human monitor, QMP events, the serial console (typing
on it, waiting for its text), and the network links the monitor switches.

A mixin of ``QemuMachine``.
"""

from __future__ import annotations

import datetime
import sys
from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import Any, Callable

from ..deadline import Deadline, Duration
from ..duration import warn_if_number
from ..errors import MachineStopped
from ..protocol.monitor import Monitor
from ..protocol.qmp import QMPClient
from .supervised import SupervisedMachine
from .supervisor import Supervisor


class QemuInterfaces(SupervisedMachine):
    """QEMU's monitor, QMP, serial console and links."""

    monitor: Monitor
    qmp_client: QMPClient
    supervisor: Supervisor | None
    _qmp_cursor: int

    @abstractmethod
    def _or_gone(self, what: str) -> AbstractContextManager[None]: ...

    @abstractmethod
    def _stopped_error(self, fallback: str) -> MachineStopped: ...

    def send_monitor_command(self, command: str) -> str:
        """Send one line to the QEMU human monitor; return its answer."""
        self.run_callbacks()
        with self._or_gone(f"the monitor during `{command}`"):
            return self.monitor.command(command, Deadline(60))

    def wait_for_qmp_event(self, event_filter: Callable[[dict[str, Any]], bool],
                           timeout: Duration = datetime.timedelta(minutes=10)) -> dict[str, Any]:
        """Wait for the next QMP event for which ``event_filter`` is true, and return it.

        Events are considered from the one after the last event an earlier call
        returned (or from the start of QEMU), so an event that arrived just before
        the call is not missed; non-matching events before the match are skipped.
        """
        warn_if_number(timeout, "wait_for_qmp_event")
        seq, event = self.qmp_client.wait_event(event_filter, timeout, since=self._qmp_cursor)
        self._qmp_cursor = seq
        return event

    def send_console(self, chars: str) -> None:
        """Type ``chars`` on the serial console (QEMU's stdin)."""
        proc = self.supervisor.process if self.supervisor else None
        if proc is None or proc.stdin is None or not self.booted:
            raise self._stopped_error("is not running")
        proc.stdin.write(chars.encode())
        proc.stdin.flush()

    def wait_for_console_text(self, regex: str, timeout: Duration | None = None) -> None:
        """Wait until ``regex`` matches the serial console lines not consumed by an earlier
        wait, as upstream: lines joined with nothing between them (each without its line
        end), searched after each line; the lines up to the one completing the match are
        consumed, as are all of them on a timeout.  ``timeout=None`` waits as long as the
        machine runs (upstream waits forever even on a dead machine; ours raises)."""
        warn_if_number(timeout, "wait_for_console_text")
        with self.nested(f"waiting for {regex} to appear on console"), \
                self.logger.activity(f"{self.name}: waiting for /{regex}/ on the console",
                                     lambda: f"last console line: {self.console.last()}"):
            self.console.wait_for(regex, Deadline(timeout),
                                  lambda: self.stopped if not self.booted else None)

    def get_console_log(self) -> str:
        """All serial console output of this run, one string."""
        return self.console.text()

    def wait_for_monitor_prompt(self) -> str:
        """Read the monitor up to its next prompt; return what came before it."""
        with self._or_gone("the monitor"):
            return self.monitor.wait_for_prompt(Deadline(60))

    def forward_port(self, host_port: int = 8080, guest_port: int = 80) -> None:
        """Forward TCP ``host_port`` on the host to ``guest_port`` in the guest (user networking)."""
        self.send_monitor_command(f"hostfwd_add tcp::{host_port}-:{guest_port}")

    def _set_link(self, up: bool) -> None:
        answer = self.send_monitor_command(f"set_link virtio-net-pci.1 {'on' if up else 'off'}")
        if "not found" in answer or "rror" in answer:  # upstream ignores it; we say so, and go on
            self.logger.warning(f"{self.name}: cannot {'unblock' if up else 'block'}: no second network "
                                f"interface (virtio-net-pci.1): {answer.strip()}")

    def block(self) -> None:
        """Unplug the network cable to the other machines: the link of the second NIC
        (eth1, virtio-net-pci.1) goes down; eth0 (user-mode networking) stays up."""
        self._set_link(False)

    def unblock(self) -> None:
        """Plug the cable back in (undo ``block``)."""
        self._set_link(True)

    def console_interact(self) -> None:
        """Forward the terminal's input to the serial console (QEMU's stdin); Ctrl-D ends it."""
        self.log("Terminal is ready (there is no prompt):")
        while True:
            try:
                char = sys.stdin.buffer.read(1)
            except KeyboardInterrupt:
                break
            if not char:
                self.log("Closing connection to the console")
                break
            self.send_console(char.decode(errors="replace"))
