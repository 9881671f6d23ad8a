"""X11 in a machine, as upstream reads it: through commands (``journalctl``, ``xwininfo``).

A mixin of ``QemuMachine`` and ``NspawnMachine``.
"""

from __future__ import annotations

import re

from ..duration import FIFTEEN_MINUTES, warn_if_number
from ..deadline import Duration
from ..errors import RequestedAssertionFailed
from .base import TIMED_OUT, BaseMachine, probe_timeout

# sed program printing the quoted window names of `xwininfo -root -tree` lines, one per line.
# (as upstream's: `\"` is a quote for sed, and the bracket also leaves out backslashes)
SED_WINDOW_NAMES = r"""'s/.*0x[0-9a-f]* \"\([^\"]*\)\".*/\1/; t; d'"""

# What wait_for_x waits for: systemd reached the graphical session target, and X0's socket.
# (grep reads the whole journal: `grep -q` would stop at the match and leave journalctl
# failing on a closed pipe, a failed probe under pipefail)
GRAPHICAL_REACHED = 'journalctl -b SYSLOG_IDENTIFIER=systemd | grep "Reached target Current graphical"'
X0_EXISTS = "[ -e /tmp/.X11-unix/X0 ]"
X_RUNS = f"{GRAPHICAL_REACHED} >/dev/null && {X0_EXISTS}"
"""Both, as one command."""


class X11(BaseMachine):
    """The X server and its windows."""

    def wait_for_x(self, timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until the X server runs (systemd reached the graphical target, X0 socket exists)."""
        warn_if_number(timeout, "wait_for_x")

        def x_runs(remaining: float | None) -> bool:  # two commands, as upstream's
            return (self.execute(GRAPHICAL_REACHED, timeout=probe_timeout(remaining))[0] == 0
                    and self.execute(X0_EXISTS, timeout=probe_timeout(remaining))[0] == 0)

        with self.nested("waiting for the X11 server"):
            self._poll_until(x_runs, timeout, "the X11 server",
                             lambda: "no graphical target reached or no /tmp/.X11-unix/X0")

    def get_window_names(self) -> list[str]:
        """Names of the X11 windows (``xwininfo -root -tree``)."""
        names = self._window_names(None)
        assert names is not None  # (only a probe's own time limit gives None)
        return names

    def _window_names(self, timeout: Duration | None) -> list[str] | None:
        """``get_window_names`` as a wait's probe: None when its time limit cut it short."""
        command = "xwininfo -root -tree | sed " + SED_WINDOW_NAMES
        if timeout is None:
            return self.succeed(command).splitlines()
        with self.nested(f"must succeed: {command}"):
            status, output = self.execute(command, timeout=timeout)
        if status == TIMED_OUT:
            return None
        if status != 0:
            raise RequestedAssertionFailed(f"command `{command}` failed (exit code {status})")
        return output.splitlines()

    def wait_for_window(self, regexp: str, timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until an X11 window whose name matches ``regexp`` exists."""
        warn_if_number(timeout, "wait_for_window")
        pattern = re.compile(regexp)
        names: list[str] = []

        def visible(remaining: float | None) -> bool:
            nonlocal names
            names = self._window_names(probe_timeout(remaining)) or names
            return any(pattern.search(name) for name in names)

        with self.nested("waiting for a window to appear"):
            self._poll_until(visible, timeout, f"a window matching /{regexp}/",
                             lambda: f"windows: {', '.join(names) or 'none'}",
                             last_words=lambda: f"Last chance to match {regexp} on the window list, "
                                                f"which currently contains: {', '.join(names)}")
