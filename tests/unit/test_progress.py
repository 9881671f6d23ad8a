"""What lasts is not silent: a heartbeat line in a log that is not a terminal; text of guests made plain."""

from __future__ import annotations

import io
import re
import time

from test_driver.logger import TerminalLogger
from test_driver.machine.status import OutputTail
from test_driver.terminal_text import plain


def test_a_long_activity_gets_a_line_now_and_then_in_a_plain_log() -> None:
    stream = io.StringIO()
    logger = TerminalLogger(stream, colour=False, live=False)
    assert logger.heartbeat is not None
    logger.heartbeat.every = 0.2
    with logger.activity("box: running `make`", lambda: "last output: compiling x.c"):
        time.sleep(0.7)
    with logger.activity("box: running `true`"):
        pass
    time.sleep(0.5)  # nothing more once it ended
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2, lines
    assert all(re.fullmatch(r"still box: running `make`, \d s, last output: compiling x\.c", line)
               for line in lines), lines


def test_a_terminal_gets_the_status_line_and_no_heartbeat() -> None:
    logger = TerminalLogger(io.StringIO(), colour=False, live=True)
    assert logger.live is not None and logger.heartbeat is None


def test_the_last_output_line_leaves_out_frames_and_escapes() -> None:
    tail = OutputTail()
    assert tail.line() is None
    tail.add(b"building\n\x1b[32mstep 1\x1b[0m\n")
    assert tail.line() == "step 1"
    tail.add(b"\0TD0 abcdef\n")  # the reply port's exit notice
    assert tail.line() == "step 1"
    tail.add(b"x" * 1000 + b"\npartial")
    assert tail.line() == "partial"


def test_console_lines_lose_their_control_sequences() -> None:
    seabios = "\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HSeaBIOS (version 1.16.2-debian-1.16.2-1)\r"
    assert plain(seabios) == "SeaBIOS (version 1.16.2-debian-1.16.2-1)"
    assert plain("\x1b]0;root@box: ~\x07\x1b[1;32mroot@box\x1b[0m:~# ls\tx") == "root@box:~# ls\tx"
    assert plain("caf\u00e9 \u2713") == "caf\u00e9 \u2713"  # printable text stays
