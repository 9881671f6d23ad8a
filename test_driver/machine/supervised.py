"""A machine whose process a supervisor thread owns (a QEMU, a systemd-nspawn): its run state
as one value, changed in one place, and the end of a run that both kinds share.

    NOT_STARTED -> BOOTING -> READY ----------> SHUT_DOWN          (asked: shutdown(), crash(),
                      ^         |  \\                                 release(), or awaited)
                      |         |   `---------> UNASKED_SHUTDOWN   (the guest powered off by itself)
                      `---------'    `--------> CRASHED | RESTARTING (its restart policy brings it back)
             (the backdoor went: READY -> BOOTING until it answers again)

Every change goes through ``_become`` with ``lock`` held, which wakes the waiters; ``booted``
(its process runs) and ``connected`` (commands can run) are read from the state, as upstream's
attributes of the same names.  This is also the interface the driver uses of any machine:
``running_command``, ``crash_listeners``, ``interruptible_commands``, ``release()``...
"""

from __future__ import annotations

import collections
import threading
import time
from abc import abstractmethod
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from ..errors import MachineCrashed, MachineStopped, UnexpectedShutdown
from ..logger import AbstractLogger
from .base import BaseMachine
from .console import SerialConsole
from .post_mortem import PostMortem
from .status import MachineStatus, State, since


class RunState(Enum):
    NOT_STARTED = "not started"
    BOOTING = "booting"
    READY = "ready"
    SHUT_DOWN = "shut down"
    UNASKED_SHUTDOWN = "shut itself down"
    CRASHED = "crashed"
    RESTARTING = "restarting"

    @property
    def runs(self) -> bool:
        """Its process runs."""
        return self in (RunState.BOOTING, RunState.READY)


class SupervisedMachine(BaseMachine):
    """The run state and the end of a run; a kind of machine adds how it starts, runs
    commands and stops (``QemuMachine``, ``NspawnMachine``)."""

    def __init__(self, out_dir: Path, name: str, logger: AbstractLogger, tmp_dir: Path,
                 callbacks: list[Callable[[], None]] | None = None, keep_machine_state: bool = False,
                 state_dir: Path | None = None) -> None:
        super().__init__(out_dir, name, logger, tmp_dir, callbacks, keep_machine_state, state_dir)
        self.lock = threading.Condition()
        """Guards the run state; waiters for a change of it wait on it."""
        self.state = RunState.NOT_STARTED
        self.started_at: float | None = None
        """When (``time.monotonic()``) its process last started."""
        self.stopped: MachineStopped | None = None
        """Why the last run ended, if it did: what a later call raises (a crash's until ``start()``)."""
        self.post_mortem: PostMortem | None = None
        self.expect_exit = False
        """The end of this run was asked for (or is awaited): it is no crash."""
        self.pid: int | None = None
        self.running_command: str | None = None
        self.console = SerialConsole()
        self.crash_listeners: list[Callable[[Any, PostMortem], None]] = []
        """Called (machine, post-mortem) from the supervisor's thread after a crash (the driver's)."""
        self.interruptible_commands = False
        """Run every command so that Ctrl-C can stop it in the guest (the interactive shell sets it)."""

    # --- the state ---------------------------------------------------------------------
    @property
    def booted(self) -> bool:
        """Its process runs (upstream's attribute)."""
        return self.state.runs

    @property
    def connected(self) -> bool:
        """Commands can run (upstream's attribute)."""
        return self.state is RunState.READY

    def _become(self, state: RunState) -> None:
        """Change the run state (the caller holds ``lock``) and wake whoever waits for it."""
        if state is RunState.BOOTING and not self.state.runs:
            self.started_at = time.monotonic()
        self.state = state
        self.lock.notify_all()

    def _restarts(self) -> int:
        return 0

    def status(self) -> MachineStatus:
        """What the machine is doing now: its state (not started, booting, ready, running a
        command, shut down, crashed, restarting), PID, uptime, restarts, the command running
        and for how long, its last output line, the last console line, and for a crash the
        post-mortem's first line.  Never waits for the machine: ask it while another
        thread's command runs.  ``str()`` of it is a table row (``status()`` prints all)."""
        running, since_command = self.running_command, self.command_since
        run_state, post_mortem = self.state, self.post_mortem
        state = State.RUNNING if run_state is RunState.READY and running is not None else State(run_state.value)
        ended = run_state in (RunState.CRASHED, RunState.RESTARTING, RunState.UNASKED_SHUTDOWN)
        return MachineStatus(
            self.name, self.KIND, state, self.pid if run_state.runs else None,
            since(self.started_at) if run_state.runs else None, self._restarts(), running,
            since(since_command) if running is not None else None,
            self.output_tail.line() if running is not None else None,
            self.console.tail[-1] if self.console.tail else None,
            post_mortem.cause.splitlines()[0] if post_mortem is not None and ended else None)

    def _write_post_mortem(self, post_mortem: PostMortem) -> None:
        """Write a crash's post-mortem to the output directory; a failure to is said, not raised
        (it must not keep the crash from being told)."""
        problem = post_mortem.write(self.out_dir)
        if problem is not None:
            self.log(f"cannot write the post-mortem: {problem}")

    @property
    def serial_tail(self) -> collections.deque[str]:
        """The last console lines, as shown (for errors and post-mortems)."""
        return self.console.tail

    # --- the end of a run --------------------------------------------------------------
    def _end_run(self, ending: RunState, cause: str, post_mortem: PostMortem) -> MachineStopped:
        """A run ended (called from the supervisor's thread): a crash's post-mortem is on disk
        first, then the state and the error that later calls raise are set and the waiters
        woken, then the end is logged, and a crash told to the listeners."""
        crashed = ending in (RunState.CRASHED, RunState.RESTARTING)
        if crashed:  # on disk before any waiter wakes up with the error that names it
            self._write_post_mortem(post_mortem)
        with self.lock:
            self.post_mortem = post_mortem
            stopped = (MachineCrashed(self.name, cause, post_mortem) if crashed
                       else UnexpectedShutdown(self.name, cause, post_mortem) if ending is RunState.UNASKED_SHUTDOWN
                       else MachineStopped(self.name, "was shut down"))
            self.stopped = stopped
            self.pid = None
            self._become(ending)
        self._run_ended(stopped)
        if crashed:
            self.logger.report_error(post_mortem.summary(), {"machine": self.name})
            self.logger.event("crash", machine=self.name, cause=cause, exit=post_mortem.exit.describe(),
                              running_command=post_mortem.running_command)
            for listener in self.crash_listeners:
                listener(self, post_mortem)
        elif ending is RunState.UNASKED_SHUTDOWN:
            self.logger.warning(str(stopped), {"machine": self.name})
        else:
            self.log(f"{post_mortem.process} {post_mortem.exit.describe()}")
        return stopped

    def _run_ended(self, stopped: MachineStopped) -> None:
        """What a kind of machine does when a run ended, before it is logged (fail its
        readers, stop its commands); ``stopped`` is what they get."""

    def _accept_end(self) -> bool:
        """``wait_for_shutdown()`` of a machine already gone: a crash or unasked shutdown that
        came before the call is accepted, and the next command starts the machine again.
        Whether there was one (the caller holds ``lock``)."""
        if self.state not in (RunState.CRASHED, RunState.UNASKED_SHUTDOWN) or self.stopped is None:
            return False
        self.log(f"the awaited shutdown had already happened: {self.stopped.cause.splitlines()[0]}")
        self.stopped = MachineStopped(self.name, "was shut down")
        self._become(RunState.SHUT_DOWN)
        return True

    @abstractmethod
    def release(self) -> None:
        """Stop the machine at the end of the test, however it is, and free what it holds."""
