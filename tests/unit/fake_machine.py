"""A machine for unit tests: ``_execute`` is ``answer(command)``, and each command is
recorded with its timeout (``asked``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

from test_driver.deadline import Duration
from test_driver.logger import TerminalLogger
from test_driver.machine.files import HostFiles
from test_driver.machine.tty import VirtualTerminals


class FakeMachine(HostFiles, VirtualTerminals):
    """Answers each command with ``answer(command)`` (given, or a subclass's method)."""

    def __init__(self, tmp_path: Path, answer: Callable[[str], tuple[int, str]] | None = None,
                 name: str = "m") -> None:
        super().__init__(tmp_path, name, TerminalLogger(io.StringIO(), colour=False), tmp_path)
        if answer is not None:
            self.answer = answer  # type: ignore[method-assign]
        self.asked: list[tuple[str, Duration | None]] = []

    def is_up(self) -> bool:
        return True

    def start(self) -> None:
        pass

    def wait_for_shutdown(self) -> None:
        pass

    def _execute(self, command: str, check_return: bool, check_output: bool,
                 timeout: Duration | None) -> tuple[int, str]:
        self.asked.append((command, timeout))
        return self.answer(command)

    def answer(self, command: str) -> tuple[int, str]:
        raise NotImplementedError
