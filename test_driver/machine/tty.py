"""A machine's virtual terminals, read through commands (``/dev/vcsN``), as upstream's.

A mixin of ``QemuMachine`` and ``NspawnMachine``.
"""

from __future__ import annotations

import re

from ..deadline import Duration
from ..duration import FIFTEEN_MINUTES, warn_if_number
from .base import BaseMachine, probe_timeout


class VirtualTerminals(BaseMachine):
    """The text on the machine's virtual terminals."""

    def get_tty_text(self, tty: int | str) -> str:
        """The text visible on virtual terminal ``tty`` (e.g. 1 or "1")."""
        return self._tty_text(tty, FIFTEEN_MINUTES)

    def _tty_text(self, tty: int | str, timeout: Duration | None) -> str:
        return self.execute(f"fold -w$(stty -F /dev/tty{tty} size | awk '{{print $2}}') /dev/vcs{tty}",
                            timeout=timeout)[1]

    def wait_until_tty_matches(self, tty: int | str, regexp: str, timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until the text on virtual terminal ``tty`` matches ``regexp``."""
        warn_if_number(timeout, "wait_until_tty_matches")
        matcher = re.compile(regexp)
        text = ""

        def matches(remaining: float | None) -> bool:
            nonlocal text
            text = self._tty_text(tty, probe_timeout(remaining))
            return matcher.search(text) is not None

        with self.nested(f"waiting for {regexp} to appear on tty {tty}"):
            self._poll_until(matches, timeout, f"/{regexp}/ on tty{tty}",
                             lambda: f"tty shows {text[-300:]!r}",
                             last_words=lambda: f"Last chance to match /{regexp}/ on TTY{tty}, "
                                                f"which currently contains: {text}")

    def dump_tty_contents(self, tty: int | str) -> None:
        """Send the contents of virtual terminal ``tty`` to the machine's journal, as
        upstream (``systemd-cat``); also log them here."""
        self.execute(f"fold -w 80 /dev/vcs{tty} | systemd-cat")
        self.log(self.get_tty_text(tty))
