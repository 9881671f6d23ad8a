"""The failure summary printed at the end of a failed test.

Upstream prints the traceback filtered to the testScript's own frames, each
line starting with ``!!!``; this adds the subtest that failed and the last
serial lines of the machine whose call raised.
"""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Iterable, Sequence

from .machine.base import BaseMachine

SERIAL_LINES = 10


def _script_frames(tb: TracebackType | None, script: str) -> list[traceback.FrameSummary]:
    return [frame for frame in traceback.extract_tb(tb) if frame.filename == script]


def failing_machine(exc: BaseException, machines: Sequence[BaseMachine]) -> BaseMachine | None:
    """The machine whose method raised: the deepest frame whose ``self`` is a machine."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, BaseMachine):
            found = owner
        tb = tb.tb_next
    if found is None and len(machines) == 1:
        found = machines[0]
    return found


def failure_report(exc: BaseException, script: str, failed_subtest: Sequence[str] | None,
                   machines: Sequence[BaseMachine]) -> Iterable[str]:
    """The lines of the summary (without the ``!!!`` prefix the logger adds)."""
    for frame in _script_frames(exc.__traceback__, script):
        yield f'File "{frame.filename}", line {frame.lineno}, in {frame.name}'
        if frame.line:
            yield f"    {frame.line}"
    message = str(exc).splitlines() or [""]
    yield f"{type(exc).__name__}: {message[0]}".rstrip(": ")
    yield from message[1:]
    yield from getattr(exc, "__notes__", [])
    if failed_subtest:
        yield f"in subtest: {' › '.join(failed_subtest)}"
    machine = failing_machine(exc, machines)
    tail = list(getattr(machine, "serial_tail", []))[-SERIAL_LINES:] if machine else []
    if machine is not None and tail:
        yield f"last {len(tail)} serial lines of {machine.name}:"
        yield from (f"    {machine.name} # {line}" for line in tail)


def failure_fields(exc: BaseException, script: str, failed_subtest: Sequence[str] | None,
                   machines: Sequence[BaseMachine]) -> dict[str, object]:
    """The failure as the run's last event carries it (for the HTML report)."""
    machine = failing_machine(exc, machines)
    return {
        "error_type": type(exc).__name__,
        "error": str(exc),
        "frames": [{"line": frame.lineno, "source": frame.line}
                   for frame in _script_frames(exc.__traceback__, script)],
        "subtest": list(failed_subtest or []),
        "machine": machine.name if machine else None,
    }

