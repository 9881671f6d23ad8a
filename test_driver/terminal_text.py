"""Text that came from a terminal (a guest's console, a command's output), made fit to show.

Guest consoles carry control sequences: SeaBIOS clears the screen, programs colour their
output, move the cursor and set the window title.  In a log or a report they are garbage;
``plain`` removes them and keeps the printable text.
"""

from __future__ import annotations

import re

ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|[ -/]*[0-~])")
"""Terminal control sequences: CSI (colours, cursor moves, clearing), OSC (titles), DCS and
the like (ended by ST), and the short escapes (charset selection, keypad modes)."""


def plain(text: str) -> str:
    """``text`` without terminal control sequences and other control characters (tabs kept)."""
    return "".join(ch for ch in ESCAPES.sub("", text) if ch == "\t" or (ch >= " " and ch != "\x7f"))
