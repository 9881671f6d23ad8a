"""The QEMU human monitor: one command at a time, each answer ends with the ``(qemu) `` prompt."""

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
        """Read through the next prompt; return all of it, the prompt included (as upstream)."""
        before, prompt = self.stream.expect(PROMPT, deadline, "the QEMU monitor prompt")
        return (before + prompt[0]).decode(errors="replace")

    def command(self, command: str, deadline: Deadline) -> str:
        """Send one command line; return the answer through the next prompt (``... (qemu) ``)."""
        if "\n" in command:
            raise ValueError("a monitor command is one line")
        with self.lock:
            self.send(command.encode() + b"\n")
            return self.wait_for_prompt(deadline)
