"""The test symbols ``parallel`` and ``start_all``: independent calls at the same time, their
failures told together."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol, Sequence

from .errors import MachineError
from .logger import AbstractLogger
from .report import failing_machine


def run_parallel(calls: Sequence[Callable[[], Any]], logger: AbstractLogger) -> list[Any]:
    """Run ``calls`` each in a thread of its own and wait for all; their results in order.
    If any failed, the first to fail is raised once all have ended, with a note naming its
    machine and how the others ended (each of those also logged)."""
    results: list[Any] = [None] * len(calls)
    failures: dict[int, tuple[float, BaseException]] = {}

    def branch(index: int, call: Callable[[], Any]) -> None:
        try:
            results[index] = call()
        except BaseException as exc:  # re-raised in the caller's thread
            failures[index] = (time.monotonic(), exc)

    threads = [threading.Thread(target=branch, args=(i, call), name=f"parallel-{i}", daemon=True)
               for i, call in enumerate(calls)]
    with logger.nested(f"running {len(calls)} calls in parallel"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if not failures:
        return results

    def who(index: int) -> str:
        machine = failing_machine(failures[index][1], []) if index in failures else None
        return f"call {index + 1}" + (f" (machine {machine.name})" if machine else "")

    first = min(failures, key=lambda i: failures[i][0])
    exc = failures[first][1]
    others = [f"{who(i)} failed too: {failures[i][1]}" if i in failures else f"call {i + 1} succeeded"
              for i in range(len(calls)) if i != first]
    exc.add_note(f"in parallel: {who(first)} failed first; " + "; ".join(others))
    for line in others:
        logger.report_error(line)
    raise exc


class Startable(Protocol):
    name: str

    def start(self) -> None: ...


def start_machines(machines: Sequence[Startable]) -> None:
    """Start ``machines`` each in a thread of its own and wait for all.  If any failed, raise one
    ``MachineError`` once all have tried, as upstream: ``Failed to start the following
    machines:`` then ``NAME: ERROR`` per failed machine, in the given order; it carries the
    traceback of the first failure and is caused by it."""
    errors: dict[str, BaseException] = {}

    def start(machine: Startable) -> None:
        try:
            machine.start()
        except BaseException as exc:  # reported in the caller's thread
            errors[machine.name] = exc

    threads = [threading.Thread(target=start, args=(m,), name=f"start-{m.name}") for m in machines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [(m.name, errors[m.name]) for m in machines if m.name in errors]
    if not failed:
        return
    for _, exc in failed:
        if not isinstance(exc, Exception):  # e.g. KeyboardInterrupt: not a start failure
            raise exc
    first = failed[0][1]
    error = MachineError("Failed to start the following machines:\n" + "\n".join(f"{name}: {exc}" for name, exc in failed))
    raise error.with_traceback(first.__traceback__) from first
