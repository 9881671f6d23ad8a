"""``--watch``: run the script, keep the machines, run it again at each change of its files.

A run ends (passed or failed) with one line, ``watch: run N passed in X.XX s`` or ``watch:
run N failed in X.XX s: <the error's first line>``; then the driver waits for the script
file or a local module it imported to change, and runs the new text against the same
machines (``Driver.test_script`` reads it again).  Ctrl-C or SIGTERM while it waits end the
session with the last run's status.

Changes come as inotify events (``watchdog``), on the files' directories, so that an
editor's save-by-rename counts as a change of the file it replaced.  What a run wrote
between its start and its end is no reason to wait: a file that changed meanwhile starts
the next run at once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .driver import Driver
from .logger import AbstractLogger

SETTLE = 0.05
"""Seconds of quiet after a change before the run starts: an editor's save is several events."""


WRITES = {"modified", "created", "moved", "deleted", "closed"}
"""The events that change a file ("closed": after writing; opening and reading are not)."""


class _Changed(FileSystemEventHandler):
    def __init__(self, files: set[Path], changed: threading.Event) -> None:
        self.files, self.changed = files, changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in WRITES:  # reading the script is no change
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(path and Path(str(path)).resolve() in self.files for path in paths):
            self.changed.set()


class Changes:
    """inotify on ``files``: ``wait()`` returns after one of them was written, replaced,
    created or removed since this object was made."""

    def __init__(self, files: list[Path]) -> None:
        self.files = {file.resolve() for file in files}
        self.changed = threading.Event()
        self.observer = Observer()
        handler = _Changed(self.files, self.changed)
        for directory in sorted({file.parent for file in self.files}):
            self.observer.schedule(handler, str(directory), recursive=False)
        self.observer.start()

    def wait(self) -> None:
        self.changed.wait()  # (an interrupt ends a wait on an Event at once)
        while True:  # until the editor is done
            self.changed.clear()
            if not self.changed.wait(SETTLE):
                return

    def close(self) -> None:
        self.observer.stop()
        self.observer.join()


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else "") or type(error).__name__


def watch_runs(driver: Driver, logger: AbstractLogger,
               run: Callable[[int], BaseException | None]) -> int:
    """Run the script (``run(number)``: its failure, or None) again at each change of its
    files, until an interrupt while waiting; return the last run's status."""
    assert driver.script_file is not None
    status = 0
    for number in range(1, 1 << 62):
        files = driver.script_file.files()
        changes = Changes(files)  # watching before the run: an edit during it is not missed
        try:
            if number > 1:
                driver.accept_stopped_machines()
            tic = time.monotonic()
            failure = run(number)
            took = time.monotonic() - tic
            status = 0 if failure is None else 1
            if failure is None:
                logger.info(f"watch: run {number} passed in {took:.2f} s")
            else:
                logger.info(f"watch: run {number} failed in {took:.2f} s: {first_line(failure)}")
            files = driver.script_file.files()
            if set(files) != changes.files:  # the run imported helpers: watch them too
                changes.close()
                changes = Changes(files)
                if driver.script_file.changed_modules() or driver.script_file.changed():
                    continue
            logger.info(f"watch: waiting for changes to {', '.join(str(f) for f in files)} (Ctrl-C to stop)")
            try:
                changes.wait()
            except KeyboardInterrupt as exc:
                logger.info(f"watch: stopped ({str(exc) or 'SIGINT'}); the last run's status is {status}")
                return status
        finally:
            changes.close()
    return status
