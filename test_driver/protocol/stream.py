"""An expect-style byte buffer between a reader thread and waiting callers.

The owner of a connection ``feed``s what it reads, says ``feed_eof`` when the
peer closed, or ``fail(exc)`` when it knows better why the data stopped (e.g.
the process died): every waiter then wakes at once with that exception.
Callers ``expect`` a pattern or ``read_until`` a delimiter before a deadline.
End of stream is its own outcome (``StreamEOF``), distinct from a timeout.
"""

from __future__ import annotations

import re
import threading

from ..deadline import Deadline, wait_for


class StreamEOF(EOFError):
    """The peer closed the stream before what was awaited arrived."""


class Stream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.cond = threading.Condition()
        self.buf = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.scanned = 0  # bytes of buf already searched by expect (no match there)

    # --- the reader's side -------------------------------------------------
    def feed(self, data: bytes) -> None:
        with self.cond:
            self.buf += data
            self.cond.notify_all()

    def feed_eof(self) -> None:
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.cond:
            self.error = error
            self.cond.notify_all()

    def reset(self) -> None:
        """Forget buffered data, EOF and error (a new connection begins)."""
        with self.cond:
            self.buf.clear()
            self.scanned = 0
            self.eof = False
            self.error = None

    # --- the caller's side -------------------------------------------------
    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _tail(self) -> str:
        return f"{len(self.buf)} bytes buffered, last: {bytes(self.buf[-80:])!r}"

    def expect(self, pattern: re.Pattern[bytes], deadline: Deadline, what: str,
               overlap: int = 256) -> tuple[bytes, re.Match[bytes]]:
        """Wait until ``pattern`` matches; consume and return (bytes before it, match).

        ``overlap`` bounds how far back a new search restarts, so a long
        stream is scanned about once; patterns must be shorter than it, and
        match their text without looking around it (no lookbehind/lookahead).
        """
        with self.cond:
            def look() -> tuple[int, int] | None:
                # Search the buffer in place (no copy of what may be megabytes of output).
                found = pattern.search(self.buf, max(0, self.scanned - overlap))
                if found is None:
                    self.scanned = len(self.buf)
                    if self.eof:
                        raise StreamEOF(f"{self.name} closed while waiting for {what} ({self._tail()})")
                    return None
                return found.start(), found.end()

            start, end = wait_for(self.cond, look, deadline, what, self._tail, self._check)
            # The caller gets a match over an immutable copy of the matched bytes: one over
            # the bytearray would change when the consumed bytes are deleted.
            match = pattern.match(bytes(self.buf[start:end]))
            assert match is not None
            before = self._consume(start, end)
            return before, match

    def read_until(self, delimiter: bytes, deadline: Deadline, what: str) -> bytes:
        """Wait for ``delimiter``; consume through it and return the bytes before it."""
        with self.cond:
            def find() -> int | None:  # where the delimiter ends
                at = self.buf.find(delimiter, max(0, self.scanned - len(delimiter) + 1))
                if at >= 0:
                    return at + len(delimiter)
                self.scanned = len(self.buf)
                if self.eof:
                    raise StreamEOF(f"{self.name} closed after {len(self.buf)} bytes of {what}")
                return None

            end = wait_for(self.cond, find, deadline, what,
                           lambda: f"{len(self.buf)} bytes without the end {delimiter!r}", self._check)
            return self._consume(end - len(delimiter), end)

    def take_unless(self, pattern: re.Pattern[bytes]) -> bytes:
        """What is buffered now, consumed, unless ``pattern`` is in it (then nothing)."""
        with self.cond:
            if pattern.search(self.buf):
                return b""
            return self._consume(len(self.buf), len(self.buf))

    def _consume(self, keep: int, end: int) -> bytes:
        """Remove ``buf[:end]``; return a copy of ``buf[:keep]`` (one copy, however large)."""
        with memoryview(self.buf) as view:
            data = bytes(view[:keep])
        if end == len(self.buf):
            self.buf = bytearray()  # give a large buffer's memory back
        else:
            del self.buf[:end]
        self.scanned = 0
        return data
