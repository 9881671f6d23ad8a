"""The test symbol ``parallel``: independent calls at the same time, their failures told together."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

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
