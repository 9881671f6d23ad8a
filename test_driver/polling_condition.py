"""Conditions checked before every machine command while they are active."""

from __future__ import annotations

import datetime
import threading
import time
from math import isfinite
from typing import Any, Callable

from .duration import FIFTEEN_MINUTES, Duration, as_timedelta, warn_old_argument
from .errors import PollingConditionError
from .logger import AbstractLogger
from .machine.base import retry

DEFAULT_INTERVAL = datetime.timedelta(seconds=2)
"""How often an active condition is checked when no interval is given, as upstream."""


def polling_interval(seconds_interval: Duration | None, interval: datetime.timedelta | None,
                     caller: str) -> datetime.timedelta:
    """The interval of a condition from upstream's two spellings: ``interval`` (a timedelta)
    or the older ``seconds_interval`` (seconds, or a timedelta too).  Giving both is a
    ``TypeError``; giving neither means 2 seconds."""
    if seconds_interval is not None:
        if interval is not None:
            raise TypeError(f"{caller} takes 'interval' or the older 'seconds_interval', not both")
        warn_old_argument(seconds_interval, caller.rstrip("()"), "seconds_interval", "interval")
        return as_timedelta(seconds_interval)
    return DEFAULT_INTERVAL if interval is None else as_timedelta(interval)


class PollingCondition:
    """A condition (a function returning something true, or None, while all is well) that
    the driver checks before each machine command, at most once per ``interval``.

    While the condition runs, the commands it runs itself do not check it again (an
    entry count, as upstream), so it never recurses, even with a zero interval.  The
    interval is counted from the end of the last check.
    """

    def __init__(self, condition: Callable[[], Any], logger: AbstractLogger,
                 seconds_interval: Duration | None = None, description: str | None = None, *,
                 interval: datetime.timedelta | None = None) -> None:
        self.condition = condition
        self.logger = logger
        self.interval = polling_interval(seconds_interval, interval, "PollingCondition()")
        if description is None:
            description = condition.__doc__ or getattr(condition, "__name__", repr(condition))
        self.description = str(description)
        self.last_called = float("-inf")
        """``time.monotonic()`` when the last check ended (``-inf``: never checked)."""
        self.entry_count = 0
        """How many checks of this condition are running now (more than one only when forced)."""
        self._count_lock = threading.Lock()

    @property
    def seconds_interval(self) -> float:
        """The interval in seconds (the name our driver used before ``interval``)."""
        return self.interval.total_seconds()

    @property
    def entered(self) -> bool:
        """Whether a check of this condition is running now."""
        return self.entry_count > 0

    @property
    def overdue(self) -> bool:
        """Whether more than ``interval`` has passed since the last check ended."""
        if not isfinite(self.last_called):
            return True
        return time.monotonic() - self.last_called > self.interval.total_seconds()

    @property
    def nested_message(self) -> str:
        """The head of a check's log block."""
        return f"Checking polling condition {self.description!r}"

    def status_message(self, status: bool) -> str:
        """The log line that ends a check, and the error message of a failed one."""
        return f"Polling condition {'succeeded' if status else 'failed'}: {self.description}"

    def __enter__(self) -> None:
        with self._count_lock:
            self.entry_count += 1

    def __exit__(self, *_: Any) -> None:
        with self._count_lock:
            assert self.entry_count > 0, "more exits than entries"
            self.entry_count -= 1
            self.last_called = time.monotonic()

    def check(self, force: bool = False) -> bool:
        """Run the condition and say whether it holds.  Unless ``force``, it runs only if
        it is overdue and not already running (then it counts as holding)."""
        if not force and (self.entered or not self.overdue):
            return True
        with self, self.logger.nested(self.nested_message):
            since = time.monotonic() - self.last_called
            self.logger.info(f"Time since last: {since:.2f}s" if isfinite(since) else "(not called yet)")
            try:
                result = self.condition()
            except Exception as exc:
                self.logger.info(f"condition raised {type(exc).__name__}: {exc}")
                result = False
            holds = result is None or bool(result)
            self.logger.info(self.status_message(holds))
            return holds

    def maybe_raise(self) -> None:
        """Check the condition if due; raise ``PollingConditionError`` if it failed."""
        if not self.check():
            raise PollingConditionError(self.status_message(False))


class ConditionScope:
    """What the test symbol ``polling_condition`` makes of a function: checked before every
    machine command inside ``with cond:``; ``cond.wait(timeout=...)`` waits until it holds."""

    def __init__(self, condition: PollingCondition, active: list[PollingCondition], logger: AbstractLogger) -> None:
        self.condition, self.active, self.logger = condition, active, logger

    def __enter__(self) -> None:
        self.active.append(self.condition)

    def __exit__(self, *_: Any) -> None:
        self.active.remove(self.condition)

    def wait(self, timeout_seconds: Duration | None = None, timeout: Duration | None = None) -> None:
        """Check the condition until it holds, within ``timeout`` (a timedelta or
        seconds; the older name is ``timeout_seconds``, not both; 15 min by default)."""
        if timeout_seconds is not None:
            if timeout is not None:
                raise TypeError("wait() takes 'timeout' or the older 'timeout_seconds', not both")
            warn_old_argument(timeout_seconds, "wait", "timeout_seconds", "timeout")
            timeout = timeout_seconds
        what = self.condition.description

        def attempt(_remaining: float | None) -> bool:
            holds = self.condition.check(force=True)
            if not holds:
                self.logger.info(f"({what} failure not fatal yet)")
            return holds

        with self.logger.nested(f"waiting for {what}"):
            retry(attempt, timeout=FIFTEEN_MINUTES if timeout is None else timeout)
