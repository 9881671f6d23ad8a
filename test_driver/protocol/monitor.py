"""The QEMU human monitor: one command at a time, answer ends at the ``(qemu)`` prompt."""

from __future__ import annotations

import re
import threading
from typing import Callable

from ..deadline import Deadline
from .stream import Stream

PROMPT = re.compile(rb"\(qemu\) ")


class Monitor:
    def __init__(self, stream: Stream, send: Callable[[bytes], None]) -> None:
        self.stream = stream
        self.send = send
        self.lock = threading.Lock()

    def wait_for_prompt(self, deadline: Deadline) -> str:
        before, _ = self.stream.expect(PROMPT, deadline, "the QEMU monitor prompt")
        return before.decode(errors="replace")

    def command(self, command: str, deadline: Deadline) -> str:
        """Send one command line; return everything up to the next prompt."""
        if "\n" in command:
            raise ValueError("a monitor command is one line")
        with self.lock:
            self.send(command.encode() + b"\n")
            return self.wait_for_prompt(deadline)
