"""``--interactive``: an IPython shell (ptpython's front end) whose namespace is the test
symbols, as upstream's; its history is ``.nixos-test-history`` in the working directory.
Without a terminal it reads its input from stdin, as upstream's does.

``rebuild(cmd)`` runs a shell command that rebuilds the test, then carries the new
machines, VLANs and test script over (``redeploy.py``).

Ctrl-C stops the running command (in the guest too) and returns to the prompt;
Ctrl-C twice on an empty line, Ctrl-D or ``exit()`` leave the shell, after which
the driver stops every machine as after a test.  SIGTERM or SIGHUP stop the
machines and end the process, whatever the shell is doing.
"""

from __future__ import annotations

import os
import signal
import sys
import termios
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from . import interrupt
from .driver import Driver
from .logger import AbstractLogger
from .redeploy import Redeployer, Source

HISTORY = ".nixos-test-history"
DOUBLE_PRESS = 2.0  # seconds between the two Ctrl-C that leave the shell


def _leave_on_double_ctrl_c(repl: Any) -> None:
    from prompt_toolkit.validation import ValidationError

    last = [0.0]

    @repl.add_key_binding("c-c")
    def _(event: Any) -> None:
        now = time.monotonic()
        if event.app.current_buffer.text:
            last[0] = 0.0
            event.app.exit(exception=KeyboardInterrupt)  # ptpython clears the line
        elif now - last[0] < DOUBLE_PRESS:
            event.app.exit(exception=EOFError)  # leaves the shell
        else:
            last[0] = now
            # The hint shows in the prompt's own toolbar (gone at the next edit).  Printed above
            # the prompt (run_in_terminal) it put the terminal in cooked mode meanwhile, where a
            # second Ctrl-C became a SIGINT that only redrew the prompt.
            event.app.current_buffer.validation_error = ValidationError(
                message="Ctrl-C again, Ctrl-D or exit() leave the shell and stop the machines")


def _stop_on_signals(driver: Driver, logger: AbstractLogger) -> None:
    """The shell swallows KeyboardInterrupt, so SIGTERM/SIGHUP stop everything from a
    thread, started now: the handler only writes the signal's number to its pipe (a
    thread started from a handler could find the main thread holding threading's locks)."""
    try:
        saved = termios.tcgetattr(sys.stdin.fileno())
    except termios.error:
        saved = None
    read_fd, write_fd = os.pipe()

    def stop() -> None:
        signum = os.read(read_fd, 1)[0]
        logger.warning(f"received {signal.Signals(signum).name}; stopping the machines")
        driver.cleanup()
        logger.close()
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, saved)
        interrupt.die_by(signum)  # as upstream's, which has no handler for them

    def handler(signum: int, _frame: FrameType | None) -> None:
        os.write(write_fd, bytes([signum]))

    threading.Thread(target=stop, name="stop-on-signal", daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def run_shell(driver: Driver, logger: AbstractLogger, source: Source | None = None) -> None:
    """Run the shell until the person leaves it; ``source`` is where the driver's configuration
    came from, which ``rebuild()`` reads again."""
    import ptpython.ipython  # type: ignore[import-untyped]  # only here: it takes a while to import

    driver.interruptible_commands = True
    _stop_on_signals(driver, logger)
    symbols = driver.test_symbols()
    symbols["rebuild"] = Redeployer(driver, symbols, source).rebuild  # it keeps the names up to date
    logger.info("interactive shell: " + ", ".join(sorted(symbols)))
    logger.info("test_script() runs the whole script; rebuild(cmd) rebuilds the test and reloads its "
                "machines; Ctrl-D, exit() or Ctrl-C twice leave")
    ptpython.ipython.embed(  # type: ignore[no-untyped-call]
        user_ns=symbols, configure=_leave_on_double_ctrl_c, history_filename=str(Path.cwd() / HISTORY),
        title="nixos-test-driver")
