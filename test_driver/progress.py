"""Live progress on an interactive terminal: the wait under way, updated in place.

    web: waiting for unit nginx.service to become active, 12 s, last state: ActiveState=activating

The status is one line at the bottom of the terminal, rewritten every second while
something waits (the innermost wait is shown).  The terminal logger clears it before
each log line it prints, so log lines never mix with it; a log written to a file or
a pipe never gets one (the logger only makes a ``LiveStatus`` for a terminal).
"""

from __future__ import annotations

import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

CLEAR = "\r\x1b[K"
"""Back to the start of the line, and erase it."""
TICK = 1.0
"""Seconds between two updates of the status line."""


@dataclass
class Activity:
    what: str
    state: Callable[[], str | None]
    since: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        text = f"{self.what}, {time.monotonic() - self.since:.0f} s"
        try:
            state = self.state()
        except Exception:  # a state that cannot be read now is left out
            state = None
        return f"{text}, {state}" if state else text


class LiveStatus:
    """The status line of one terminal; ``lock`` is the one its log lines are written under."""

    def __init__(self, stream: TextIO, lock: threading.RLock) -> None:
        self.stream = stream
        self.lock = lock
        self.activities: list[Activity] = []
        self.shown = False
        self.ticker: threading.Thread | None = None
        self.changed = threading.Condition(lock)

    @contextmanager
    def activity(self, what: str, state: Callable[[], str | None] = lambda: None) -> Iterator[None]:
        """Show ``what`` (and ``state()``, the last state seen) while the block runs."""
        entry = Activity(what, state)
        with self.lock:
            self.activities.append(entry)
            if self.ticker is None:
                self.ticker = threading.Thread(target=self._tick, name="live-status", daemon=True)
                self.ticker.start()
            self.changed.notify_all()
        try:
            yield
        finally:
            with self.lock:
                self.activities.remove(entry)
                self.clear()
                self.redraw()

    def clear(self) -> None:
        """Erase the status line (the caller holds the lock and writes a log line next)."""
        if self.shown:
            self.stream.write(CLEAR)
            self.shown = False

    def redraw(self) -> None:
        """Show the innermost activity again (the caller holds the lock)."""
        if not self.activities:
            return
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        self.stream.write(CLEAR + self.activities[-1].line()[:width])
        self.stream.flush()
        self.shown = True

    def _tick(self) -> None:
        with self.lock:
            while True:
                if self.activities:
                    self.redraw()
                    self.changed.wait(TICK)
                else:
                    self.changed.wait()


HEARTBEAT = 30.0
"""Seconds between two heartbeat lines of an activity, in a log that is not a terminal."""


class Heartbeat:
    """Where no status line can be drawn (a log to a file or a pipe, as CI's): an activity
    still under way after ``every`` seconds gets a log line, ``emit("still WHAT, N s,
    STATE")``, and one more every ``every`` seconds while it lasts."""

    def __init__(self, emit: Callable[[str], None], every: float = HEARTBEAT) -> None:
        self.emit = emit
        self.every = every
        self.activities: list[tuple[Activity, list[float]]] = []  # each with when its next line is due
        self.changed = threading.Condition()
        self.ticker: threading.Thread | None = None

    @contextmanager
    def activity(self, what: str, state: Callable[[], str | None] = lambda: None) -> Iterator[None]:
        entry = (Activity(what, state), [time.monotonic() + self.every])
        with self.changed:
            self.activities.append(entry)
            if self.ticker is None:
                self.ticker = threading.Thread(target=self._tick, name="heartbeat", daemon=True)
                self.ticker.start()
            if len(self.activities) == 1:  # (else the ticker wakes for an older one first)
                self.changed.notify_all()
        try:
            yield
        finally:
            with self.changed:
                self.activities.remove(entry)

    def _tick(self) -> None:
        while True:
            with self.changed:
                while not self.activities:
                    self.changed.wait()
                now = time.monotonic()
                due = [activity for activity, next_line in self.activities if next_line[0] <= now]
                for _, next_line in self.activities:
                    if next_line[0] <= now:
                        next_line[0] = now + self.every
                wake = min(next_line[0] for _, next_line in self.activities)
            for activity in due:  # (outside the lock: emitting takes the logger's)
                self.emit(f"still {activity.line()}")
            with self.changed:
                self.changed.wait(max(0.0, wake - time.monotonic()))
