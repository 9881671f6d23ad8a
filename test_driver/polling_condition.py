"""Conditions checked before every machine command while they are active."""

from __future__ import annotations

import time
from typing import Callable

from .errors import RequestedAssertionFailed
from .logger import AbstractLogger


class PollingConditionError(RequestedAssertionFailed):
    """An active polling condition did not hold."""


class PollingCondition:
    def __init__(self, condition: Callable[[], bool | None], logger: AbstractLogger,
                 seconds_interval: float = 2.0, description: str | None = None) -> None:
        self.condition = condition
        self.logger = logger
        self.seconds_interval = seconds_interval
        self.description = description or condition.__doc__ or condition.__name__
        self.last_called = float("-inf")

    def check(self, force: bool = False) -> bool:
        """Run the condition if its interval has passed (or ``force``); False if it failed."""
        if not force and time.monotonic() - self.last_called < self.seconds_interval:
            return True
        self.last_called = time.monotonic()  # before the call: its own commands must not recurse
        with self.logger.nested(f"checking polling condition {self.description!r}"):
            try:
                result = self.condition()
            except Exception as exc:
                self.logger.info(f"condition failed with {type(exc).__name__}: {exc}")
                return False
            return result is None or bool(result)

    def maybe_raise(self) -> None:
        if not self.check():
            raise PollingConditionError(f"Polling condition failed: {self.description}")
