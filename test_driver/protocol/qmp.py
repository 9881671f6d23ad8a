"""A QMP client: greeting, capabilities, commands routed by id, events with history.

Upstream's ``QMPSession`` API is here too: ``send``, and the events not taken yet
in ``pending_events`` (a ``queue.Queue``), taken by ``wait_for_event`` and
``events()``; ``read_pending_messages`` has nothing to do (the owner's reader
thread reads every message as it comes).

Commands carry ids, except those of upstream's ``send`` (one at a time:
their answers are the ones without an id).  The connection's owner feeds
received bytes (``feed``) from its reader thread; callers block in ``command``
or ``wait_event`` with a deadline.  When the
connection ends (``feed_eof`` or ``fail``) every pending call wakes with an
error at once.  A malformed message fails the calls pending at that moment with
a ``QMPError`` and the reader carries on with the next line.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import json
import queue
import threading
from collections.abc import Iterator
from typing import Any, Callable

from ..deadline import Deadline, Duration, wait_for
from ..errors import QMPAPIError, QMPError

Event = dict[str, Any]


class QMPClient:
    HISTORY = 1000

    def __init__(self, send: Callable[[bytes], None], name: str = "qmp") -> None:
        self._write = send
        self.name = name
        self.cond = threading.Condition()
        self.greeting: dict[str, Any] | None = None
        self.replies: dict[int | None, dict[str, Any]] = {}  # by id; None: send's command without one
        self.pending: set[int | None] = set()
        self.history: collections.deque[tuple[int, Event]] = collections.deque(maxlen=self.HISTORY)
        """The last events, numbered: what ``wait_event`` looks through."""
        self.pending_events: queue.Queue[Event] = queue.Queue()
        """Every event not taken yet by ``wait_for_event``/``events()`` (upstream's queue)."""
        self.event_count = 0
        self.closed: BaseException | None = None
        self.listeners: list[Callable[[Event], None]] = []
        self._ids = itertools.count(1)
        self._unnumbered = threading.Lock()
        self._partial = b""

    # --- the reader's side -------------------------------------------------
    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self._dispatch(line)

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self._fail_pending(QMPError(f"{self.name}: malformed message {line[:200]!r}: {exc}"))
            return
        with self.cond:
            if "QMP" in message:
                self.greeting = message
            elif "event" in message:
                self.event_count += 1
                self.history.append((self.event_count, message))
                self.pending_events.put(message)
            elif message.get("id") in self.pending:
                self.replies[message.get("id")] = message
            self.cond.notify_all()
        if "event" in message:
            for listener in list(self.listeners):
                listener(message)

    def _fail_pending(self, error: QMPError) -> None:
        with self.cond:
            for ident in self.pending:
                self.replies.setdefault(ident, {"__error__": error})
            self.cond.notify_all()

    def feed_eof(self) -> None:
        self.fail(QMPError(f"{self.name}: connection closed by QEMU"))

    def fail(self, error: BaseException) -> None:
        with self.cond:
            self.closed = error
            self.cond.notify_all()

    # --- the caller's side -------------------------------------------------
    def _check(self) -> None:
        if self.closed is not None:
            raise self.closed

    def handshake(self, deadline: Deadline) -> dict[str, Any]:
        """Wait for the greeting and leave capabilities negotiation mode."""
        with self.cond:
            wait_for(self.cond, lambda: self.greeting, deadline, "the QMP greeting",
                     check=self._check)
        self.command("qmp_capabilities", timeout=deadline.remaining())
        assert self.greeting is not None
        return self.greeting

    def send(self, cmd: str, args: dict[str, Any] = {}) -> dict[str, Any]:
        """Upstream's call: run ``cmd`` with ``args`` as a command without an id and return
        QEMU's whole answer (``{"return": ...}``); ``QMPAPIError`` on error.  Such commands go
        one at a time (their answers carry no id) and wait as long as QEMU takes, as upstream's."""
        with self._unnumbered:
            return self._execute(cmd, args, None, None)

    def command(self, name: str, arguments: dict[str, Any] | None = None,
                timeout: Duration | None = 60) -> Any:
        """Run a QMP command and return its ``return`` value (``QMPAPIError`` on error).
        Each gets an id, so calls from several threads get their own answers."""
        return self._execute(name, arguments, next(self._ids), timeout).get("return")

    def _execute(self, name: str, arguments: dict[str, Any] | None, ident: int | None,
                 timeout: Duration | None) -> dict[str, Any]:
        message: dict[str, Any] = {"execute": name}
        if ident is not None:
            message["id"] = ident
        if arguments:
            message["arguments"] = arguments
        with self.cond:
            self._check()
            self.pending.add(ident)
        try:
            self._write(json.dumps(message).encode() + b"\n")
            with self.cond:
                reply = wait_for(self.cond, lambda: self.replies.get(ident), Deadline(timeout),
                                 f"the reply to QMP command {name!r}", check=self._check)
        finally:
            with self.cond:
                self.pending.discard(ident)
                self.replies.pop(ident, None)
        if "__error__" in reply:
            raise reply["__error__"]
        if "error" in reply:
            raise QMPAPIError(reply, name)
        return reply

    def wait_event(self, predicate: Callable[[Event], bool], timeout: Duration | None = 600,
                   since: int | None = None, what: str = "a matching QMP event") -> tuple[int, Event]:
        """Wait for an event matching ``predicate`` numbered after ``since`` (an
        ``event_count`` value; default: now); return (its number, the event)."""
        with self.cond:
            start = self.event_count if since is None else since

            def find() -> tuple[int, Event] | None:
                for seq, event in self.history:
                    if seq > start and predicate(event):
                        return seq, event
                return None

            return wait_for(self.cond, find, Deadline(timeout), what,
                            lambda: f"last events: {self.recent(3)}", self._check)

    def recent(self, n: int = 10) -> list[Event]:
        with self.cond:
            return [event for _, event in list(self.history)[-n:]]

    # --- upstream's QMPSession calls ---------------------------------------------
    def wait_for_event(self, timeout: datetime.timedelta = datetime.timedelta(seconds=10)) -> Event:
        """Take the oldest pending event, waiting for one as long as it takes (as upstream's,
        whose ``timeout`` never ends that wait); raises at once if the connection ends."""
        with self.cond:
            wait_for(self.cond, lambda: not self.pending_events.empty(), Deadline(None), "a QMP event",
                     lambda: f"last events: {self.recent(3)}", self._check)
            return self.pending_events.get_nowait()

    def events(self, timeout: datetime.timedelta = datetime.timedelta(seconds=10)) -> Iterator[Event]:
        """Take the pending events, oldest first, until none is left."""
        while True:
            try:
                yield self.pending_events.get_nowait()
            except queue.Empty:
                return

    def read_pending_messages(self) -> None:
        """Upstream reads what QEMU sent here; the machine's supervisor thread reads every
        message as it comes, so there is nothing left to do."""

    def close(self) -> None:
        """Upstream closes its socket; the machine owns this connection and closes it when
        QEMU ends."""
