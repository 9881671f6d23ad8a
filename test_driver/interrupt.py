"""Ctrl-C and termination signals as a ``KeyboardInterrupt`` that never leaves a lock held.

Python runs a signal handler in the main thread between any two bytecodes, and
the exception it raises starts there.  Inside ``threading``'s own Python code
that can be the moment after ``Condition.__enter__`` took its lock and before it
returned, or inside ``__exit__`` before the release: the ``with`` never sees the
lock, it stays held by the main thread for good, and the next supervisor thread
that needs it (to hand over serial output, a QMP reply) blocks forever, and with
it the cleanup that waits for that thread.  (Measured: a SIGINT every 0.5 ms at a
loop of ``with cond: cond.wait(0)`` leaks the lock in 4 of 10 interrupts.)

So the handler raises at once only where that is safe: outside ``threading`` and
``contextlib``, or while the main thread is blocked in one of the few
acquisitions ``threading`` itself guards against interrupts (a
``Condition.wait``, which takes its lock back in a ``finally``, and a thread
join).  Anywhere else the signal is kept pending, and a helper thread nudges the
main thread (with a real-time signal of its own) every 20 ms until a nudge finds
it at a safe point: usually the first, since those unsafe stretches last
microseconds or a short wait (a lock held by a thread for a moment).
"""

from __future__ import annotations

import contextlib
import dis
import os
import signal
import sys
import threading
import time
from types import CodeType, FrameType
from typing import Callable, Iterable, NoReturn

REDELIVER = 0.02  # seconds between deliveries of a pending signal

_UNSAFE_FILES = frozenset({threading.__file__, contextlib.__file__})


def _call_lines(function: object, receiver: str, attribute: str, skip_first: bool = False) -> set[int]:
    """Lines of ``function`` that call ``receiver.attribute(...)``."""
    code = getattr(function, "__code__", None)
    if code is None:
        return set()
    lines: list[int] = []
    previous = None
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and ins.argval == attribute and \
                previous is not None and previous.argval == receiver and ins.positions and ins.positions.lineno:
            lines.append(ins.positions.lineno)
        previous = ins
    lines.sort()
    return set(lines[1:] if skip_first else lines)


def _safe_points() -> dict[CodeType, set[int]]:
    """Where ``threading`` blocks inside its own interrupt-safe regions, per code object."""
    points: dict[CodeType, set[int]] = {}
    for function, receiver, attribute, skip_first in (
            # The first waiter.acquire() is before the try whose finally re-takes the lock.
            (threading.Condition.wait, "waiter", "acquire", True),
            (getattr(threading.Thread, "_wait_for_tstate_lock", None), "lock", "acquire", False)):
        lines = _call_lines(function, receiver, attribute, skip_first)
        if lines:
            points[function.__code__] = lines  # type: ignore[union-attr]
    return points


_SAFE_POINTS = _safe_points()


class held:
    """``with interrupt.held():`` keeps a signal arriving in the main thread pending until the
    block ends, and raises it there, as its last step: for a stretch that must not be cut
    halfway, such as starting a process and noting it (its owner's ``finally`` could not
    stop a process it never heard of).  Nests; in other threads it does nothing."""

    _depth = 0

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            held._depth += 1

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        held._depth -= 1
        if held._depth == 0 and _redeliverer is not None and _redeliverer.pending is not None:
            _redeliverer.raise_now(*_redeliverer.pending)


def safe_to_raise(frame: FrameType | None) -> bool:
    """Whether an exception raised in ``frame`` (the main thread's innermost) unwinds cleanly."""
    if held._depth:
        return False
    if frame is None:
        return True
    lines = _SAFE_POINTS.get(frame.f_code)
    if lines is not None and frame.f_lineno in lines:
        return True
    f: FrameType | None = frame
    while f is not None:
        if f.f_code.co_filename in _UNSAFE_FILES:
            return False
        f = f.f_back
    return True


class _Redeliverer:
    """The helper thread: while a signal is pending, nudge the main thread with ``NUDGE``,
    whose handler raises the pending error if the main thread is at a safe point
    by then (a nudge that finds nothing pending does nothing)."""

    NUDGE = signal.SIGRTMIN + 5  # private to this process: never sent by anyone else

    def __init__(self) -> None:
        self.pending: tuple[int, Callable[[int], BaseException]] | None = None
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.main = threading.main_thread().ident
        signal.signal(self.NUDGE, self._nudged)
        threading.Thread(target=self._run, name="interrupt-redeliver", daemon=True).start()

    def defer(self, signum: int, make_error: Callable[[int], BaseException]) -> None:
        """Called from a handler: keep ``signum`` pending and wake the thread."""
        if self.pending is None:
            self.pending = (signum, make_error)
            try:
                os.write(self.write_fd, b"\0")
            except BlockingIOError:
                pass

    def raise_now(self, signum: int, make_error: Callable[[int], BaseException]) -> None:
        self.pending = None
        raise make_error(signum)

    def _nudged(self, _signum: int, frame: FrameType | None) -> None:
        pending = self.pending
        if pending is not None and safe_to_raise(frame):
            self.raise_now(*pending)

    def _run(self) -> None:
        while True:
            os.read(self.read_fd, 64)
            while self.pending is not None:
                time.sleep(REDELIVER)
                if self.pending is not None and self.main is not None:
                    signal.pthread_kill(self.main, self.NUDGE)


_redeliverer: _Redeliverer | None = None


def _handler(make_error: Callable[[int], BaseException]) -> Callable[[int, FrameType | None], None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        assert _redeliverer is not None
        if safe_to_raise(frame):
            _redeliverer.raise_now(signum, make_error)
        _redeliverer.defer(signum, make_error)
    return handle


class Interrupted(KeyboardInterrupt):
    """A signal that ends the run (``signum``): bare for Ctrl-C, naming any other signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(*(() if signum == signal.SIGINT else (f"received {signal.Signals(signum).name}",)))


def interrupted(signum: int) -> KeyboardInterrupt:
    """The exception for ``signum``: Ctrl-C's is a plain KeyboardInterrupt, as Python's own
    (shells such as IPython show its class name)."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)


def install(signums: Iterable[int] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP),
            make_error: Callable[[int], BaseException] = interrupted) -> None:
    """Make ``signums`` raise ``make_error(signum)`` in the main thread, at a safe point.
    Call from the main thread."""
    global _redeliverer
    if _redeliverer is None:
        _redeliverer = _Redeliverer()
    handler = _handler(make_error)
    for signum in signums:
        signal.signal(signum, handler)


def die_by(signum: int) -> NoReturn:
    """End the process by ``signum``'s default action, as a process that does not handle it
    (upstream's driver, which sends itself SIGTERM at its global timeout): a parent sees it
    killed by the signal, a shell the status 128+N, and a shell loop stops at a Ctrl-C.
    Python's buffered output is written first; no cleanup runs after this."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signum, signal.SIG_DFL)
    else:  # (Python lets only the main thread set a disposition: the C library's call does it)
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.signal.argtypes, libc.signal.restype = [ctypes.c_int, ctypes.c_void_p], ctypes.c_void_p
        libc.signal(signum, signal.SIG_DFL.value)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
    time.sleep(1)  # delivered at once to this thread; should another take it meanwhile
    os._exit(128 + signum)
