"""The supervisor thread with real child processes (no VM): exit handling, TERM then KILL,
and a cleanup that goes on when the thread is stuck in a callback."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from test_driver.machine.supervisor import Channel, Exit, Supervisor, SupervisorStuck


class Run:
    """One supervised process; records its output and how it ended."""

    def __init__(self, argv: list[str], on_exit_blocks: threading.Event | None = None) -> None:
        self.serial: list[bytes] = []
        self.exits: list[Exit] = []
        self.exited = threading.Event()
        self.block = on_exit_blocks
        self.supervisor = Supervisor("test")
        self.pid = self.supervisor.launch(
            argv, dict(os.environ), "/", [],
            Channel("serial", self.serial.append, lambda: None),
            Channel("stderr", lambda data: None, lambda: None), self._on_exit)

    def _on_exit(self, exit: Exit) -> None:
        self.exits.append(exit)
        self.exited.set()
        if self.block is not None:
            self.block.wait()

    def output(self) -> bytes:
        return b"".join(self.serial)


def process_gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_an_exit_is_reported_once_with_its_status_and_output() -> None:
    run = Run(["sh", "-c", "echo hello; exit 3"])
    assert run.exited.wait(10)
    assert run.supervisor.terminate() == run.exits[0]
    assert [e.returncode for e in run.exits] == [3]
    assert run.output() == b"hello\n"


def test_terminate_sends_term_to_the_whole_group() -> None:
    run = Run(["sh", "-c", "sleep 100 & sleep 100; wait"])
    time.sleep(0.2)
    exit = run.supervisor.terminate(grace=5)
    assert exit is not None and exit.signal == signal.SIGTERM
    assert process_gone(run.pid)


def test_a_process_ignoring_term_is_killed_after_the_grace() -> None:
    run = Run(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"])
    while b"ready" not in run.output():
        time.sleep(0.01)
    tic = time.monotonic()
    exit = run.supervisor.terminate(grace=0.5)
    assert exit is not None and exit.signal == signal.SIGKILL
    assert time.monotonic() - tic >= 0.5


def test_a_thread_stuck_in_its_callback_does_not_stop_the_cleanup() -> None:
    release = threading.Event()
    run = Run(["sleep", "100"], on_exit_blocks=release)
    try:
        with pytest.raises(SupervisorStuck, match="did not handle QEMU's exit 0.5s after SIGKILL"):
            run.supervisor.terminate(grace=0.2, stuck=0.5)
        assert process_gone(run.pid)  # killed, whatever the thread does
        reported: list[str] = []
        run.supervisor.release(reported.append, grace=0.1, stuck=0.3)  # at cleanup: said, not raised
        assert reported and "cleaning up without it" in reported[0]
    finally:
        release.set()
    assert run.supervisor.terminate() == run.exits[0]
