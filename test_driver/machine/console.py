"""A machine's serial console, as lines: what waits search, and what errors and post-mortems show.

The bytes come in pieces (a QEMU's stdout, a container's console pipe); a line is complete
at its newline.  Each line is kept twice: as it came (carriage returns dropped), for
``wait_for_console_text`` and ``get_console_log`` as upstream searches and returns them;
and as shown (``plain``: without terminal control sequences), the last ``SERIAL_TAIL`` of
them, for status lines, errors and post-mortems.
"""

from __future__ import annotations

import collections
import re
import threading
from typing import Callable

from ..deadline import Deadline, wait_for
from ..terminal_text import plain
from .post_mortem import SERIAL_TAIL


class SerialConsole:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.lines: list[str] = []
        """Every line of this run, as it came."""
        self.tail: collections.deque[str] = collections.deque(maxlen=SERIAL_TAIL)
        """The last lines, as shown."""
        self._partial = b""
        self._cursor = 0  # the first line no wait has consumed

    def reset(self) -> None:
        """A new run of the machine begins."""
        with self.cond:
            self.lines.clear()
            self._cursor = 0
            self.tail.clear()
            self._partial = b""

    def feed(self, data: bytes, errors: str = "ignore") -> list[str]:
        """Take ``data``; return its complete lines as shown (a line of control sequences
        alone is not shown).  ``errors``: how undecodable bytes are decoded."""
        *complete, self._partial = (self._partial + data).split(b"\n")
        shown = (self.add(raw.decode(errors=errors)) for raw in complete)
        return [line for line in shown if line is not None]

    def flush(self, errors: str = "ignore") -> list[str]:
        """The console ended: its last line, if it had no newline."""
        return self.feed(b"\n", errors) if self._partial else []

    def add(self, line: str, shown_as: str = "") -> str | None:
        """Add one line (``shown_as`` goes before it in the tail); return it as shown, or None."""
        line = line.replace("\r", "").rstrip()
        with self.cond:
            self.lines.append(line)
            self.cond.notify_all()
        shown = plain(line)
        if not shown and line:
            return None
        self.tail.append(shown_as + shown)
        return shown

    def last(self) -> str:
        return self.tail[-1] if self.tail else "(none)"

    def last_lines(self, count: int) -> list[str]:
        return list(self.tail)[-count:]

    def text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wake(self) -> None:
        """Let waiters look again (the machine stopped)."""
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, regex: str, deadline: Deadline, stopped: Callable[[], BaseException | None]) -> None:
        """Wait until ``regex`` matches the lines no earlier wait consumed, joined with nothing
        between them, searched after each line; the lines up to the match are consumed (all
        of them on a timeout).  ``stopped()`` is the error to raise once the machine is gone."""
        pattern = re.compile(regex)
        seen = ""
        with self.cond:
            def look() -> bool:
                nonlocal seen
                while self._cursor < len(self.lines):
                    seen += self.lines[self._cursor]
                    self._cursor += 1
                    if pattern.search(seen):
                        return True
                error = stopped()
                if error is not None:
                    raise error
                return False

            wait_for(self.cond, look, deadline, f"/{regex}/ on the serial console",
                     lambda: f"last serial line: {self.last()!r}")
