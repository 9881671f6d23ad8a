"""The loggers that write upstream's XML formats to files (their names are also ``test_driver.logger``'s).

- ``XMLLogger``: upstream's log.xml (``<logfile>``, ``<line>``, ``<nest><head/>``);
  ``close()`` ends every open element, so the file is well formed however the
  run ends.
- ``JUnitLogger``: a JUnit XML report (junit-xml): one test case per top-level
  subtest (nested subtests are logged inside it), a ``main`` case when the
  script has no subtests or fails outside them.
"""

from __future__ import annotations

import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

import junit_xml  # type: ignore[import-untyped]

from .logger import AbstractLogger, _failure_text


def _strip_controls(text: str) -> str:
    """What XML 1.0 can carry: no control characters but tab and newline."""
    return "".join(ch for ch in text if ch in "\t\n" or ch >= " ")


def _script_traceback(exc: BaseException) -> str:
    """The traceback without the frames of this package and contextlib (the logger's own plumbing)."""
    here = str(Path(__file__).parent)
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not frame.filename.startswith(here) and not frame.filename.endswith("contextlib.py")]
    return "".join(["Traceback (most recent call last):\n", *traceback.format_list(frames),
                    *traceback.format_exception_only(exc)])



class XMLLogger(AbstractLogger):
    """The log.xml of upstream: <logfile> with <line>, <nest><head/>...</nest>."""

    def __init__(self, outfile: str | Path) -> None:
        self.file = open(outfile, "w", encoding="utf-8")
        self.xml = XMLGenerator(self.file, encoding="utf-8")
        self.lock = threading.RLock()
        self.open_nests = 0
        self.closed = False
        self.xml.startDocument()
        self.xml.startElement("logfile", AttributesImpl({}))

    def _element(self, tag: str, text: str, attributes: dict[str, str]) -> None:
        self.xml.startElement(tag, AttributesImpl(dict(attributes)))
        self.xml.characters(_strip_controls(text))
        self.xml.endElement(tag)

    def log(self, message: str, attributes: dict[str, str] = {}) -> None:
        with self.lock:
            if not self.closed:
                self._element("line", message, attributes)
                self.file.flush()

    def log_serial(self, message: str, machine: str) -> None:
        # The XML log keeps every serial line, whatever serial_stdout_off says.
        self.log(message, {"machine": machine, "type": "serial"})

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        with self.lock:
            if not self.closed:
                self.xml.startElement("nest", AttributesImpl({}))
                self._element("head", message, attributes)
                self.open_nests += 1
                self.file.flush()
        start = time.monotonic()
        try:
            yield
        finally:
            with self.lock:
                if not self.closed:
                    self._element("line", f"(finished: {message}, in {time.monotonic() - start:.2f} seconds)", {})
                    self.xml.endElement("nest")
                    self.open_nests -= 1
                    self.file.flush()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            for _ in range(self.open_nests):
                self.xml.endElement("nest")
            self.xml.endElement("logfile")
            self.xml.endDocument()
            self.file.close()
            self.closed = True


@dataclass
class _Case:
    """One JUnit test case while it is recorded."""

    name: str
    start: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    failure: str | None = None
    failure_output: str | None = None


class JUnitLogger(AbstractLogger):
    """JUnit XML in the shape nixpkgs writes: one suite, a case per top-level subtest.

    A nested subtest's lines go to its top-level case; if it fails, the case's
    failure message names the path to it (``outer › inner``) and carries the
    traceback.  The report is written by ``close()``.
    """

    SUITE = "NixOS integration test"

    def __init__(self, outfile: str | Path) -> None:
        self.outfile = Path(outfile)
        self.lock = threading.RLock()
        self.suite = _Case(self.SUITE)
        self.cases: list[_Case] = []
        self.current: _Case | None = None
        self.path: list[str] = []
        self.failed_outside: str | None = None
        self.closed = False

    def _append(self, line: str, error: bool = False) -> None:
        with self.lock:
            for case in (self.suite, self.current):
                if case is not None:
                    (case.err if error else case.out).append(line)

    def log(self, message: str, attributes: dict[str, str] = {}) -> None:
        machine = attributes.get("machine")
        self._append(f"{machine}: {message}" if machine else message)

    def error(self, message: str, attributes: dict[str, str] = {}) -> None:
        self._append(message, error=True)

    def log_test_error(self, message: str, attributes: dict[str, str] = {}) -> None:
        """Failure report lines: a failure outside every subtest makes the ``main`` case fail."""
        with self.lock:
            self._append(message, error=True)
            if not any(case.failure for case in self.cases) and self.failed_outside is None:
                self.failed_outside = message

    def log_serial(self, message: str, machine: str) -> None:
        if self.serial_enabled:
            self._append(f"{machine} # {message}")

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        self.log(message, attributes)
        yield

    @contextmanager
    def subtest(self, name: str, attributes: dict[str, str] = {}) -> Iterator[None]:
        with self.lock:
            self.path.append(name)
            top = len(self.path) == 1
            if top:
                self.current = _Case(name)
                self.cases.append(self.current)
            else:
                self.log("subtest: " + name)
            case = self.current
        try:
            yield
        except (Exception, KeyboardInterrupt) as exc:  # (sys.exit() in a subtest fails nothing)
            with self.lock:
                if case is not None and case.failure is None:
                    case.failure = f"{' › '.join(self.path)}: {_failure_text(exc)}"
                    case.failure_output = _script_traceback(exc)
            raise
        finally:
            with self.lock:
                self.path.pop()
                if top and case is not None:
                    case.seconds = time.monotonic() - case.start
                    self.current = None

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            cases = list(self.cases)
            if not cases or self.failed_outside is not None:
                main = self.suite
                main.name, main.failure = "main", self.failed_outside
                cases.append(main)
            report = junit_xml.to_xml_report_string([junit_xml.TestSuite(
                self.SUITE, [self._junit_case(case) for case in cases],
                stdout="\n".join(self.suite.out), stderr="\n".join(self.suite.err))])
            self.outfile.parent.mkdir(parents=True, exist_ok=True)
            self.outfile.write_text(report, encoding="utf-8")

    @staticmethod
    def _junit_case(case: _Case) -> Any:
        seconds = case.seconds if case.seconds is not None else time.monotonic() - case.start
        junit = junit_xml.TestCase(case.name, classname=JUnitLogger.SUITE, elapsed_sec=seconds,
                                   stdout="\n".join(case.out) or None, stderr="\n".join(case.err) or None)
        if case.failure is not None:
            junit.add_failure_info(message=case.failure, output=case.failure_output)
        return junit


