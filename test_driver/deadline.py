"""The one way the driver waits: a deadline, a condition variable, a predicate.

Every wait blocks on an event (a ``threading.Condition`` notified by whoever
changes the state) and ends in one of three ways: the predicate holds, the
deadline passes (``WaitTimeout`` saying what was awaited, for how long and the
last state seen), or ``check`` raises (e.g. the machine died).

Where no event exists (a condition inside the guest), ``attempts`` paces probes
within a budget: each probe learns the seconds remaining and must not outlive them.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator, TypeVar

from .duration import Duration as Duration, seconds as seconds  # defined there, used from here too
from .errors import WaitTimeout

T = TypeVar("T")


class Deadline:
    """A point in time, or never (``timeout=None``)."""

    def __init__(self, timeout: Duration | None) -> None:
        self.timeout = seconds(timeout)
        self.start = time.monotonic()
        self.end = None if self.timeout is None else self.start + self.timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None for no deadline."""
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def wait_for(
    cond: threading.Condition,
    predicate: Callable[[], T | None],
    deadline: Deadline,
    what: str,
    last_state: Callable[[], str] | None = None,
    check: Callable[[], None] | None = None,
) -> T:
    """Wait on ``cond`` until ``predicate()`` returns something truthy and return it.

    Must be called with ``cond`` held.  ``check`` runs before each look and may
    raise to end the wait early.
    """
    while True:
        if check is not None:
            check()
        result = predicate()
        if result:
            return result
        remaining = deadline.remaining()
        if remaining == 0.0:
            raise WaitTimeout(what, deadline.timeout or 0.0, last_state() if last_state else None)
        cond.wait(remaining)


def attempts(timeout: Duration | None, pause: float = 1.0, max_pause: float = 1.0) -> Iterator[float | None]:
    """Yield the seconds left (``None``: no limit) before each attempt, as nixpkgs'
    ``retry`` hands them to its predicate, until the budget is spent; a zero budget
    yields nothing.  Attempts start ``pause`` apart (doubling up to ``max_pause``),
    counted from the start of the one before, so a slow attempt is followed at once;
    a pause never reaches past the deadline."""
    deadline = Deadline(timeout)
    while (remaining := deadline.remaining()) != 0.0:
        started = time.monotonic()
        yield remaining
        wait = pause - (time.monotonic() - started)
        left = deadline.remaining()
        if left is not None:
            wait = min(wait, left)
        if wait > 0:
            time.sleep(wait)
        pause = min(pause * 2, max_pause)
