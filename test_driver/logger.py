"""Logging back ends behind one interface (upstream's AbstractLogger shape).

``TerminalLogger`` writes coloured, nested lines to stderr; ``XMLLogger`` writes
upstream's log.xml shape; ``CompositeLogger`` fans out to several.  All are
thread safe: supervisors and readers log from their own threads.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import zlib
from abc import ABC, abstractmethod
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, TextIO
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

from colorama import Fore, Style  # type: ignore[import-untyped]


class AbstractLogger(ABC):
    @abstractmethod
    def log(self, message: str, attributes: dict[str, str] = {}) -> None: ...

    @abstractmethod
    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]: ...

    @abstractmethod
    def info(self, *args: Any, **kwargs: Any) -> None: ...

    @abstractmethod
    def warning(self, *args: Any, **kwargs: Any) -> None: ...

    @abstractmethod
    def error(self, *args: Any, **kwargs: Any) -> None: ...

    @abstractmethod
    def log_serial(self, message: str, machine: str) -> None: ...

    @abstractmethod
    def print_serial_logs(self, enable: bool) -> None: ...

    @contextmanager
    def subtest(self, name: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        with self.nested("subtest: " + name, attributes):
            yield

    def close(self) -> None:
        """Flush and finish the output (the XML closes its root element)."""


MACHINE_COLOURS = [Fore.CYAN, Fore.MAGENTA, Fore.BLUE, Fore.GREEN, Fore.YELLOW,
                   Fore.LIGHTCYAN_EX, Fore.LIGHTMAGENTA_EX, Fore.LIGHTBLUE_EX]


class TerminalLogger(AbstractLogger):
    def __init__(self, stream: TextIO | None = None, colour: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        if colour is None:
            colour = self.stream.isatty() and "NO_COLOR" not in os.environ
        self.colour = colour
        self.lock = threading.RLock()
        self.depth = 0
        self._print_serial_logs = True

    def _paint(self, text: str, colour: str) -> str:
        return f"{colour}{text}{Style.RESET_ALL}" if self.colour else text

    def _write(self, line: str) -> None:
        with self.lock:
            self.stream.write("  " * self.depth + line + "\n")
            self.stream.flush()

    def log(self, message: str, attributes: dict[str, str] = {}) -> None:
        machine = attributes.get("machine")
        self._write(f"{machine}: {message}" if machine else message)

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        self.log(self._paint(message, Style.BRIGHT), attributes)
        start = time.monotonic()
        with self.lock:
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
            self._write(f"(finished: {message}, in {time.monotonic() - start:.2f} seconds)")

    def info(self, *args: Any, **kwargs: Any) -> None:
        self.log(*args, **kwargs)

    def warning(self, *args: Any, **kwargs: Any) -> None:
        self.log(self._paint(str(args[0]), Fore.YELLOW), *args[1:], **kwargs)

    def error(self, *args: Any, **kwargs: Any) -> None:
        self.log(self._paint(str(args[0]), Fore.RED), *args[1:], **kwargs)

    def log_serial(self, message: str, machine: str) -> None:
        if not self._print_serial_logs:
            return
        colour = MACHINE_COLOURS[zlib.crc32(machine.encode()) % len(MACHINE_COLOURS)]
        with self.lock:
            self.stream.write(self._paint(f"{machine} # {message}", colour) + "\n")
            self.stream.flush()

    def print_serial_logs(self, enable: bool) -> None:
        self._print_serial_logs = enable


class XMLLogger(AbstractLogger):
    """The log.xml of upstream: <logfile> with <line>, <nest><head/>...</nest>."""

    def __init__(self, outfile: str) -> None:
        self.file = open(outfile, "w", encoding="utf-8")
        self.xml = XMLGenerator(self.file, encoding="utf-8")
        self.lock = threading.RLock()
        self.closed = False
        self.xml.startDocument()
        self.xml.startElement("logfile", AttributesImpl({}))

    @staticmethod
    def _clean(text: str) -> str:
        return "".join(ch for ch in text if ch in "\t\n" or ch >= " ")

    def _line(self, message: str, attributes: dict[str, str], kind: str | None = None) -> None:
        with self.lock:
            if self.closed:
                return
            attrs = dict(attributes)
            if kind:
                attrs["type"] = kind
            self.xml.startElement("line", AttributesImpl(attrs))
            self.xml.characters(self._clean(message))
            self.xml.endElement("line")
            self.file.flush()

    def log(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._line(message, attributes)

    def info(self, *args: Any, **kwargs: Any) -> None:
        self.log(*args, **kwargs)

    def warning(self, *args: Any, **kwargs: Any) -> None:
        self.log(*args, **kwargs)

    def error(self, *args: Any, **kwargs: Any) -> None:
        self.log(*args, **kwargs)

    def log_serial(self, message: str, machine: str) -> None:
        self._line(message, {"machine": machine}, "serial")

    def print_serial_logs(self, enable: bool) -> None:
        pass  # the XML log always holds every serial line

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        with self.lock:
            if not self.closed:
                self.xml.startElement("nest", AttributesImpl({}))
                self.xml.startElement("head", AttributesImpl(dict(attributes)))
                self.xml.characters(self._clean(message))
                self.xml.endElement("head")
        start = time.monotonic()
        try:
            yield
        finally:
            self.log(f"(finished: {message}, in {time.monotonic() - start:.2f} seconds)")
            with self.lock:
                if not self.closed:
                    self.xml.endElement("nest")

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.xml.endElement("logfile")
            self.xml.endDocument()
            self.file.close()
            self.closed = True


class CompositeLogger(AbstractLogger):
    def __init__(self, loggers: list[AbstractLogger]) -> None:
        self.logger_list = list(loggers)

    def add_logger(self, logger: AbstractLogger) -> None:
        self.logger_list.append(logger)

    def log(self, message: str, attributes: dict[str, str] = {}) -> None:
        for logger in self.logger_list:
            logger.log(message, attributes)

    def info(self, *args: Any, **kwargs: Any) -> None:
        for logger in self.logger_list:
            logger.info(*args, **kwargs)

    def warning(self, *args: Any, **kwargs: Any) -> None:
        for logger in self.logger_list:
            logger.warning(*args, **kwargs)

    def error(self, *args: Any, **kwargs: Any) -> None:
        for logger in self.logger_list:
            logger.error(*args, **kwargs)

    def log_serial(self, message: str, machine: str) -> None:
        for logger in self.logger_list:
            logger.log_serial(message, machine)

    def print_serial_logs(self, enable: bool) -> None:
        for logger in self.logger_list:
            logger.print_serial_logs(enable)

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        with ExitStack() as stack:
            for logger in self.logger_list:
                stack.enter_context(logger.nested(message, attributes))
            yield

    def close(self) -> None:
        for logger in self.logger_list:
            logger.close()


rootlog: AbstractLogger = CompositeLogger([TerminalLogger()])
"""The default logger, for old code that imports ``test_driver.logger.rootlog``."""
