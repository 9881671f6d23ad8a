"""Logging back ends behind one interface (upstream's AbstractLogger shape).

- ``TerminalLogger``: nested, coloured lines (colour only on a tty, never with
  ``NO_COLOR``); serial lines prefixed by the machine's name in its own colour.
- ``XMLLogger`` and ``JUnitLogger`` (log_files.py): upstream's log.xml, a JUnit report.
- ``JSONLogger``: one JSON object per line: log lines, serial lines, nests,
  subtests with status and duration, and the driver's events (commands, crashes,
  restarts).
- ``CompositeLogger``: fans out to several.

All are thread safe: supervisors and readers log from their own threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import unicodedata
import zlib
from abc import ABC, abstractmethod
from contextlib import ExitStack, contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, TextIO

from colorama import Fore, Style  # type: ignore[import-untyped]

from .progress import Heartbeat, LiveStatus


class LogLevel(IntEnum):
    DEBUG = 1
    INFO = 2
    WARNING = 3
    ERROR = 4


class AbstractLogger(ABC):
    """What the driver and test scripts call.  Back ends implement ``log``,
    ``nested`` and ``log_serial``; the rest has sensible defaults."""

    level: LogLevel = LogLevel.INFO
    serial_enabled: bool = True

    @staticmethod
    def sanitise(message: str) -> str:
        """``message`` without the characters Unicode counts as control or format
        characters (category C: newlines, escapes, NUL...), as upstream's logger."""
        return "".join(ch for ch in message if not unicodedata.category(ch).startswith("C"))

    @abstractmethod
    def log(self, message: str, attributes: dict[str, str] = {}) -> None: ...

    @abstractmethod
    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]: ...

    @abstractmethod
    def log_serial(self, message: str, machine: str) -> None: ...

    def _at(self, level: LogLevel, message: str, attributes: dict[str, str]) -> None:
        if level >= self.level:
            self.log(message, attributes)

    def debug(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._at(LogLevel.DEBUG, message, attributes)

    def info(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._at(LogLevel.INFO, message, attributes)

    def warning(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._at(LogLevel.WARNING, message, attributes)

    def error(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._at(LogLevel.ERROR, message, attributes)

    def report_error(self, message: str, attributes: dict[str, str] = {}) -> None:
        """An error line of the driver's own (a crash, a timeout) that does not end the test."""
        self.error(message, attributes)

    def log_test_error(self, message: str, attributes: dict[str, str] = {}) -> None:
        """A line of the report on a failed test (the '!!!' lines)."""
        self.error(message, attributes)

    @contextmanager
    def subtest(self, name: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        with self.nested("subtest: " + name, attributes):
            yield

    def event(self, kind: str, **fields: Any) -> None:
        """A machine-readable event (command, crash, restart...); only some back ends keep it."""

    def activity(self, what: str, state: Callable[[], str | None] = lambda: None) -> ContextManager[None]:
        """A wait under way, shown live (with ``state()``, the last state seen) where a back
        end can: the terminal logger on a terminal."""
        return contextlib.nullcontext()

    def print_serial_logs(self, enable: bool) -> None:
        self.serial_enabled = enable

    def set_log_level(self, level: LogLevel) -> None:
        self.level = level

    def close(self) -> None:
        """Flush and finish the output (the XML closes its open elements)."""


def _failure_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


MACHINE_COLOURS = [Fore.CYAN, Fore.MAGENTA, Fore.BLUE, Fore.GREEN, Fore.YELLOW,
                   Fore.LIGHTCYAN_EX, Fore.LIGHTMAGENTA_EX, Fore.LIGHTBLUE_EX]


def machine_colour(machine: str) -> str:
    """The terminal colour of a machine's name: the same in every run."""
    return MACHINE_COLOURS[zlib.crc32(machine.encode()) % len(MACHINE_COLOURS)]


class TerminalLogger(AbstractLogger):
    def __init__(self, stream: TextIO | None = None, colour: bool | None = None,
                 live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty()
        if colour is None:
            colour = terminal and not os.environ.get("NO_COLOR")
        self.colour = colour
        self.lock = threading.RLock()
        self.depth = 0
        self.live = LiveStatus(self.stream, self.lock) if (terminal if live is None else live) else None
        """The status line of the wait under way, on a terminal only."""
        self.heartbeat = None if self.live else Heartbeat(lambda line: self._write(line))
        """Elsewhere, a line now and then for what lasts (a long command, a long wait)."""

    def activity(self, what: str, state: Callable[[], str | None] = lambda: None) -> ContextManager[None]:
        if self.live:
            return self.live.activity(what, state)
        return self.heartbeat.activity(what, state) if self.heartbeat else contextlib.nullcontext()

    def _emit(self, text: str) -> None:
        with self.lock:
            if self.live:
                self.live.clear()
            self.stream.write(text + "\n")
            if self.live:
                self.live.redraw()
            self.stream.flush()

    def _paint(self, text: str, colour: str) -> str:
        return f"{colour}{text}{Style.RESET_ALL}" if self.colour else text

    def _write(self, line: str, attributes: dict[str, str] = {}) -> None:
        machine = attributes.get("machine")
        if machine:
            line = f"{self._paint(machine, machine_colour(machine))}: {line}"
        with self.lock:
            self._emit("  " * self.depth + line)

    def log(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._write(message, attributes)

    def debug(self, message: str, attributes: dict[str, str] = {}) -> None:
        if self.level <= LogLevel.DEBUG:
            self._write(self._paint(message, Style.DIM), attributes)

    def warning(self, message: str, attributes: dict[str, str] = {}) -> None:
        if self.level <= LogLevel.WARNING:
            self._write(self._paint(message, Fore.YELLOW), attributes)

    def error(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._write(self._paint(message, Fore.RED), attributes)

    def log_test_error(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._write(self._paint("!!! ", Fore.RED) + message, attributes)

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        self._write(self._paint(message, Style.BRIGHT), attributes)
        start = time.monotonic()
        with self.lock:
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
            self._write(f"(finished: {message}, in {time.monotonic() - start:.2f} seconds)", attributes)

    def log_serial(self, message: str, machine: str) -> None:
        if self.serial_enabled:
            self._emit(self._paint(f"{machine} # {message}", machine_colour(machine)))


class JSONLogger(AbstractLogger):
    """One JSON object per line: ``{"time": ..., "kind": ..., ...}``.

    Kinds: ``log`` (with ``level``), ``test-error``, ``serial``,
    ``nest-start``/``nest-end``, ``subtest-start``/``subtest-end`` (``status``
    passed/failed, ``error``, ``seconds``), and every ``event()``: ``run-start``
    (the script, its machines) and ``run-end`` (status, verdict), ``command``
    (status, seconds, the first 64 KiB of ``output`` and ``output_chars``),
    ``connected``, ``crash``, ``restart``, ``breakpoint``.
    """

    def __init__(self, stream: TextIO, owns_stream: bool = False) -> None:
        self.stream = stream
        self.owns_stream = owns_stream
        self.lock = threading.Lock()
        self.path: list[str] = []
        self.closed = False

    @classmethod
    def to_file(cls, path: str | Path) -> "JSONLogger":
        return cls(open(path, "w", encoding="utf-8"), owns_stream=True)

    def event(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"time": round(time.time(), 6), "kind": kind, **fields}, default=str)
        with self.lock:
            if not self.closed:
                self.stream.write(line + "\n")
                self.stream.flush()

    def _at(self, level: LogLevel, message: str, attributes: dict[str, str]) -> None:
        if level >= self.level:
            self.event("log", level=level.name.lower(), message=message, **attributes)

    def log(self, message: str, attributes: dict[str, str] = {}) -> None:
        self.event("log", level="info", message=message, **attributes)

    def log_test_error(self, message: str, attributes: dict[str, str] = {}) -> None:
        self.event("test-error", message=message, **attributes)

    def log_serial(self, message: str, machine: str) -> None:
        self.event("serial", machine=machine, line=message)

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        self.event("nest-start", message=message, **attributes)
        start = time.monotonic()
        try:
            yield
        finally:
            self.event("nest-end", message=message, seconds=round(time.monotonic() - start, 6), **attributes)

    @contextmanager
    def subtest(self, name: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        self.path.append(name)
        path = list(self.path)
        self.event("subtest-start", name=name, path=path, **attributes)
        start = time.monotonic()
        status, error = "passed", None
        try:
            yield
        except BaseException as exc:
            status, error = "failed", _failure_text(exc)
            raise
        finally:
            self.path.pop()
            self.event("subtest-end", name=name, path=path, status=status, error=error,
                       seconds=round(time.monotonic() - start, 6), **attributes)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.owns_stream:
                self.stream.close()


class CompositeLogger(AbstractLogger):
    def __init__(self, loggers: list[AbstractLogger]) -> None:
        self.logger_list = list(loggers)

    def add_logger(self, logger: AbstractLogger) -> None:
        self.logger_list = [*self.logger_list, logger]

    def remove_logger(self, logger: AbstractLogger) -> None:
        """(A new list: a thread logging meanwhile goes through the old one.)"""
        self.logger_list = [kept for kept in self.logger_list if kept is not logger]

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        for logger in self.logger_list:
            getattr(logger, method)(*args, **kwargs)

    def log(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._each("log", message, attributes)

    def debug(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._each("debug", message, attributes)

    def info(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._each("info", message, attributes)

    def warning(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._each("warning", message, attributes)

    def error(self, message: str, attributes: dict[str, str] = {}) -> None:
        """Log an error line, then end the test with status 1 (``sys.exit(1)``), as upstream's
        ``log.error`` does.  The driver's own error lines use ``report_error``."""
        self.report_error(message, attributes)
        sys.exit(1)

    def report_error(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._each("error", message, attributes)

    def log_test_error(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._each("log_test_error", message, attributes)

    def log_serial(self, message: str, machine: str) -> None:
        self._each("log_serial", message, machine)

    def event(self, kind: str, **fields: Any) -> None:
        self._each("event", kind, **fields)

    def print_serial_logs(self, enable: bool) -> None:
        self._each("print_serial_logs", enable)

    def set_log_level(self, level: LogLevel) -> None:
        self._each("set_log_level", level)

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        with ExitStack() as stack:
            for logger in self.logger_list:
                stack.enter_context(logger.nested(message, attributes))
            yield

    @contextmanager
    def subtest(self, name: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        with ExitStack() as stack:
            for logger in self.logger_list:
                stack.enter_context(logger.subtest(name, attributes))
            yield

    @contextmanager
    def activity(self, what: str, state: Callable[[], str | None] = lambda: None) -> Iterator[None]:
        with ExitStack() as stack:
            for logger in self.logger_list:
                stack.enter_context(logger.activity(what, state))
            yield

    def close(self) -> None:
        for logger in self.logger_list:
            logger.close()


Logger = AbstractLogger
"""The name older nixpkgs' typing prelude imports (``from test_driver.logger import Logger``)."""

rootlog: AbstractLogger = CompositeLogger([TerminalLogger()])
"""The default logger, for old code that imports ``test_driver.logger.rootlog``."""

# The loggers that write upstream's XML formats live in log_files.py; their names stay here.
from .log_files import JUnitLogger, XMLLogger  # noqa: E402,F401

JunitXMLLogger = JUnitLogger
"""nixpkgs' name for the JUnit XML logger."""
