"""The whole test's time limit (``--global-timeout``), as upstream's: when it passes, the driver
says what was running and ends itself with SIGTERM, which no test script can catch.

The CLI's SIGTERM handling stops the machines and closes the logs first; a driver still
alive 30 s later stops its machines here and dies by SIGTERM.  Under ``--watch`` the run it
ended is over once ``handled()`` is called, and the session goes on.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable

from . import interrupt
from .logger import AbstractLogger

GRACE = 30.0
"""Seconds the driver has to end by itself after the timeout's SIGTERM."""


class GlobalTimer:
    def __init__(self, logger: AbstractLogger, describe: Callable[[], str], release_all: Callable[[], None]) -> None:
        self.logger = logger
        self.describe = describe
        """What the test is doing now, for the message."""
        self.release_all = release_all
        self.timer: threading.Timer | None = None
        self.timed_out: str | None = None
        """Set when the time was up: what was running then."""
        self._handled = threading.Event()

    def start(self, seconds: float) -> None:
        if not seconds:
            return
        self._handled.clear()
        self.logger.info(f"Test will time out and terminate in {float(seconds)} seconds")
        self.timer = threading.Timer(seconds, self.expire, args=(seconds,))
        self.timer.daemon = True
        self.timer.start()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def handled(self) -> None:
        self.timed_out = None
        self._handled.set()

    def expire(self, seconds: float) -> None:
        self.timed_out = f"test timed out after {seconds:g}s while running: {self.describe()}"
        with self.logger.nested("timeout reached; test terminating..."):
            self.logger.report_error(self.timed_out)
        os.kill(os.getpid(), signal.SIGTERM)
        if self._handled.wait(GRACE):  # a --watch run ended by it: the session goes on
            return
        self.release_all()
        interrupt.die_by(signal.SIGTERM)
