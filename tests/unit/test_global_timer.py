"""The global timeout: a message naming what ran, SIGTERM to the driver, and, unless the run it
ended was handled (--watch), the machines stopped and death by SIGTERM after a grace time."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from test_driver import global_timer
from test_driver.global_timer import GlobalTimer
from test_driver.logger import CompositeLogger


@pytest.fixture
def timer(monkeypatch):
    """A GlobalTimer whose SIGTERM, death and machines are recorded instead of real."""
    seen: list[str] = []
    monkeypatch.setattr(global_timer, "GRACE", 0.3)
    monkeypatch.setattr(global_timer.os, "kill", lambda pid, sig: seen.append(f"kill {signal.Signals(sig).name}"))
    monkeypatch.setattr(global_timer.interrupt, "die_by", lambda sig: seen.append(f"die by {signal.Signals(sig).name}"))
    made = GlobalTimer(CompositeLogger([]), lambda: "machine: `sleep 600`", lambda: seen.append("released"))
    return made, seen


def test_an_unhandled_timeout_stops_the_machines_and_ends_the_driver(timer) -> None:
    made, seen = timer
    made.expire(10)
    assert made.timed_out == "test timed out after 10s while running: machine: `sleep 600`"
    assert seen == ["kill SIGTERM", "released", "die by SIGTERM"]


def test_a_handled_timeout_lets_the_session_go_on(timer) -> None:
    """--watch: the run the timeout ended is over; nothing is stopped, nobody dies."""
    made, seen = timer
    expiring = threading.Thread(target=made.expire, args=(10,))
    expiring.start()
    while not seen:
        time.sleep(0.01)
    made.handled()
    expiring.join()
    assert seen == ["kill SIGTERM"] and made.timed_out is None
