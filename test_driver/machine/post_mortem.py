"""What is known of a machine that died (its post-mortem), and how it comes back (restart policy)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .supervisor import Exit

SERIAL_TAIL = 50
"""Console lines a post-mortem keeps."""


@dataclass
class RestartPolicy:
    """How a supervised machine comes back after a crash (see ``QemuMachine.supervise``)."""

    max_restarts: int = 3
    backoff: float = 1.0
    restarts: int = 0

    def next_delay(self) -> float | None:
        """Seconds to wait before the next restart, or None when none is left."""
        if self.restarts >= self.max_restarts:
            return None
        delay = self.backoff * 2 ** self.restarts
        self.restarts += 1
        return delay


@dataclass
class PostMortem:
    """What is known about a machine that died."""

    machine: str
    cause: str
    exit: Exit
    serial_tail: list[str]
    qmp_events: list[dict[str, Any]]
    running_command: str | None
    process: str = "QEMU"
    """What ran the machine and ended (QEMU, systemd-nspawn)."""
    screenshot: Path | None = None
    at: float = field(default_factory=time.time)
    path: Path | None = None
    """Where it was written (``write``)."""
    abnormal: bool = True
    """It died (a signal, a failure, a panic), even if its end was awaited; not a clean shutdown."""

    def summary(self) -> str:
        lines = [f"post-mortem of machine {self.machine!r}: {self.cause}",
                 f"  {self.process} {self.exit.describe()}"]
        if self.running_command is not None:
            lines.append(f"  while running: {self.running_command}")
        if self.qmp_events:
            lines.append("  last QMP events: " + ", ".join(
                e.get("event", "?") + (f"({e['data']})" if e.get("data") else "") for e in self.qmp_events))
        if self.screenshot is not None:
            lines.append(f"  screenshot: {self.screenshot}")
        if self.path is not None:
            lines.append(f"  written to: {self.path}")
        lines.append(f"  last {len(self.serial_tail)} serial lines:")
        lines += [f"    | {line}" for line in self.serial_tail]
        return "\n".join(lines)

    def write(self, out_dir: Path) -> str | None:
        """Write the summary to ``OUT_DIR/NAME-post-mortem.txt`` (then named in it); the
        reason it could not be written, or None."""
        path = out_dir / f"{self.machine}-post-mortem.txt"
        self.path = path
        try:
            path.write_text(self.summary() + "\n")
        except OSError as exc:
            self.path = None
            return str(exc)
        return None
