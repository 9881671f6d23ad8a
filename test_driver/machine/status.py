"""What a machine is doing now: ``machine.status()`` and the ``status()`` table of all machines.

A status is read without waiting for anything the machine does (no lock a command holds
for its duration), so it can be asked from the shell while another thread's command
runs, and of a crashed machine.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import Enum

from ..terminal_text import plain

class State(str, Enum):
    NOT_STARTED = "not started"
    BOOTING = "booting"
    READY = "ready"
    RUNNING = "running a command"
    SHUT_DOWN = "shut down"
    SHUT_ITSELF_DOWN = "shut itself down"
    CRASHED = "crashed"
    RESTARTING = "restarting"


class OutputTail:
    """The last line a running command wrote to its stdout, as its bytes arrive (the reply
    port's frames, NUL-led, left out)."""

    KEEP = 512

    def __init__(self) -> None:
        self._data = b""
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._data = b""

    def add(self, data: bytes) -> None:
        with self._lock:
            self._data = (self._data + data)[-self.KEEP:]

    def line(self) -> str | None:
        with self._lock:
            data = self._data
        for raw in reversed(data.split(b"\n")):
            text = plain(raw.split(b"\0", 1)[0].decode(errors="replace")).strip()
            if text:
                return text
        return None


@dataclass(frozen=True)
class MachineStatus:
    """One machine, now."""

    name: str
    kind: str  # "VM" or "container"
    state: State
    pid: int | None
    uptime: float | None  # seconds since it was started
    restarts: int
    command: str | None  # the command running now
    command_seconds: float | None  # for how long
    last_output: str | None  # the running command's last output line
    last_console_line: str | None
    post_mortem: str | None  # the first line of the crash's post-mortem

    def __str__(self) -> str:
        return table([self])


def since(moment: float | None) -> float | None:
    return None if moment is None else time.monotonic() - moment


def _cut(text: str | None, width: int) -> str:
    if not text:
        return "-"
    return text if len(text) <= width else text[:width - 1] + "…"


COLUMNS = ("machine", "kind", "state", "pid", "uptime", "restarts", "command", "for", "last output",
           "last console line")


def table(statuses: list[MachineStatus]) -> str:
    """The statuses as a text table, a row each (a crashed machine's post-mortem line below it)."""
    rows = [list(COLUMNS)]
    notes: dict[int, str] = {}
    for status in statuses:
        rows.append([status.name, status.kind, status.state.value, str(status.pid or "-"),
                     f"{status.uptime:.1f} s" if status.uptime is not None else "-", str(status.restarts),
                     _cut(status.command, 40),
                     f"{status.command_seconds:.1f} s" if status.command_seconds is not None else "-",
                     _cut(status.last_output, 40), _cut(status.last_console_line, 50)])
        if status.post_mortem:
            notes[len(rows) - 1] = f"  {status.name}: {status.post_mortem}"
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index in notes:
            lines.append(notes[index])
    return "\n".join(lines)
