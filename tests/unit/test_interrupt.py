"""test_driver.interrupt: Ctrl-C raised only where no lock can be left held, and never lost."""

from __future__ import annotations

import signal
import threading
import time
from typing import Callable, Iterator

import pytest

from test_driver import interrupt

MAIN = threading.main_thread().ident


@pytest.fixture
def handlers() -> Iterator[Callable[[], None]]:
    """Install the driver's handlers for the test; Python's own come back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield lambda: interrupt.install((signal.SIGINT, signal.SIGTERM))
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def hammer(seconds: float) -> dict[str, int]:
    """SIGINT the main thread again and again while it enters, waits on and leaves a
    Condition; each shot waits until the main thread has counted the last one."""
    cond = threading.Condition()
    stop = threading.Event()
    counted = threading.Semaphore(0)

    def shoot() -> None:
        while not stop.is_set():
            time.sleep(0.0005)
            signal.pthread_kill(MAIN, signal.SIGINT)
            while not counted.acquire(timeout=0.1) and not stop.is_set():
                pass

    counts = {"interrupts": 0, "held": 0, "runtime errors": 0}
    shooter = threading.Thread(target=shoot, daemon=True)
    shooter.start()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            try:
                while True:
                    with cond:
                        cond.wait(0)
            except KeyboardInterrupt:
                counts["interrupts"] += 1
            except RuntimeError:  # a wait interrupted after it let go of the lock
                counts["runtime errors"] += 1
            while cond._is_owned():  # type: ignore[attr-defined]
                counts["held"] += 1
                cond.release()
            counted.release()
    finally:
        stop.set()
        shooter.join()
    return counts


def drain_pending() -> None:
    """Let an interrupt still pending land here, not in the next test."""
    try:
        time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def test_pythons_default_handler_leaves_locks_held() -> None:
    """The harness sees the problem: with Python's handler, interrupts leave the lock held."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    counts = hammer(1.0)
    assert counts["held"] + counts["runtime errors"] > 0, counts


def test_interrupts_never_leave_a_lock_held(handlers) -> None:
    handlers()
    counts = hammer(2.0)
    assert counts["interrupts"] >= 5, counts  # each lands, at most a few nudges later
    assert counts["held"] == 0 and counts["runtime errors"] == 0, counts


def interrupt_after(delay: float, signum: int = signal.SIGINT) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), signal.pthread_kill(MAIN, signum)))
    thread.start()
    return thread


@pytest.mark.parametrize("blocked_in", ["Condition.wait", "Event.wait", "Thread.join"])
def test_a_blocked_wait_is_interrupted_at_once(handlers, blocked_in: str) -> None:
    handlers()
    cond = threading.Condition()
    sleeper = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    sleeper.start()
    sender = interrupt_after(0.2)
    tic = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        if blocked_in == "Condition.wait":
            with cond:
                cond.wait(30)
        elif blocked_in == "Event.wait":
            threading.Event().wait(30)
        else:
            sleeper.join(30)
    assert time.monotonic() - tic < 5  # not the 30 s of the wait
    assert not cond._is_owned()  # type: ignore[attr-defined]
    sender.join()


def test_an_interrupt_inside_threading_is_raised_once_after_it(handlers) -> None:
    """Ctrl-C while the main thread waits for a lock another thread holds: raised as soon
    as the main thread holds it inside its ``with`` (so the ``with`` lets it go), once."""
    handlers()
    cond = threading.Condition()
    holding = threading.Event()

    def hold() -> None:
        with cond:
            holding.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    sender = interrupt_after(0.1)
    raised = 0
    try:
        with cond:
            time.sleep(5)
    except KeyboardInterrupt:
        raised += 1
    try:
        time.sleep(0.3)  # no second interrupt follows
    except KeyboardInterrupt:
        raised += 1
    holder.join()
    sender.join()
    assert raised == 1
    assert cond.acquire(timeout=1)  # nobody holds it
    cond.release()


def test_sigterm_says_what_it_was(handlers) -> None:
    handlers()
    sender = interrupt_after(0.05, signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="received SIGTERM"):
        threading.Event().wait(10)
    sender.join()


def test_safe_points_are_found_in_this_python() -> None:
    """Without them, blocked waits would only be interrupted when they end."""
    assert threading.Condition.wait.__code__ in interrupt._SAFE_POINTS


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_die_by_ends_the_process_by_the_signal_from_any_thread(where):
    """As upstream's driver, which handles none: a parent sees the process killed by the signal
    even though ours has a handler for it, and from the thread that stops the machines too."""
    import subprocess
    import sys

    code = ("import signal, threading, time\nfrom test_driver import interrupt\n"
            "signal.signal(signal.SIGTERM, lambda *a: print('handler ran'))\n"
            + ("interrupt.die_by(signal.SIGTERM)\n" if where == "main thread" else
               "threading.Thread(target=interrupt.die_by, args=(signal.SIGTERM,)).start()\ntime.sleep(5)\n")
            + "print('still alive')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == -signal.SIGTERM, result
    assert "still alive" not in result.stdout and "handler ran" not in result.stdout


def test_a_signal_inside_held_comes_when_the_block_ends(handlers) -> None:
    """A stretch that must not be cut halfway (start a process, note it) gets the signal at
    its end, once; nested holds end at the outermost."""
    handlers()
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt.held():
            with interrupt.held():
                signal.pthread_kill(MAIN, signal.SIGINT)
                time.sleep(0.2)  # several nudges pass meanwhile
                reached.append("inner end")
            reached.append("outer end")
    assert reached == ["inner end", "outer end"]
    late = []
    try:
        time.sleep(0.1)
    except KeyboardInterrupt:
        late.append(1)
    assert late == []
