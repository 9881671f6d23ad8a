"""Debugging a running test over TCP with pdb.

- ``breakpoint()`` in a testScript stops it there and serves pdb on
  ``$REMOTE_PDB_HOST:$REMOTE_PDB_PORT`` (default 127.0.0.1 and a free port, so
  that drivers side by side never collide); the log says how to attach.
  ``PYTHONBREAKPOINT=0`` turns it off, as for any Python program.
- ``--debug-hook-attach CMD`` is nixpkgs' ``enableDebugHook``: when the test
  fails, before the VMs are torn down, the log says ``Breakpoint reached, run
  'sudo CMD PATTERN'`` (CMD enters the build sandbox by finding the process
  ``sleep PATTERN``) and pdb waits post mortem on 127.0.0.1:4444, the port
  nixpkgs' manual names (a free port when 4444 is taken).  ``debug.breakpoint()``
  stops there too, but only with the hook, as upstream.

A session lasts until the person continues (``c``), quits (``q``: the test
fails with ``BdbQuit``) or hangs up (the test goes on).  The global timeout
still applies while pdb waits.
"""

from __future__ import annotations

import abc
import contextlib
import os
import pdb
import re
import secrets
import socket
import subprocess
import sys
import types
from typing import IO, Any, Iterator, cast

from .errors import DriverError
from .logger import AbstractLogger
from .machine.supervisor import die_with_parent

HOOK_PORT = 4444


class PdbConnection:
    """One accepted TCP connection as pdb's stdin and stdout, with telnet's CRLF line ends.

    A client may leave at any time (``echo c | nc HOST PORT`` closes at once): what is
    written after that is dropped and reading gives end of file, so nothing written to
    a pdb connection can fail the test.
    """

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.reader = connection.makefile("r", encoding="utf-8", errors="replace")

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):  # gone, or closed by us
            self.connection.sendall(re.sub(r"\r?\n", "\r\n", text).encode())
        return len(text)

    def flush(self) -> None:
        pass

    def readline(self) -> str:
        try:
            return self.reader.readline()
        except (OSError, ValueError):  # reset by the client, or closed by us: end of file
            return ""

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
            self.connection.close()


class SocketPdb(pdb.Pdb):
    """pdb on one accepted TCP connection.  It leaves SIGINT to the driver (``nosigint``)."""

    def __init__(self, connection: socket.socket) -> None:
        self.handle = PdbConnection(connection)
        stream = cast(IO[str], self.handle)
        super().__init__(completekey="tab", stdin=stream, stdout=stream, nosigint=True)

    def hang_up(self) -> None:
        self.handle.close()

    def do_continue(self, arg: str) -> bool | None:
        if not self.breaks:
            self.message("continuing; the test goes on and this connection closes")
        result = super().do_continue(arg)
        if not self.breaks:
            self.hang_up()
        return result

    do_c = do_cont = do_continue

    def do_quit(self, arg: str) -> bool | None:
        self.message("quitting; the test fails")
        result = super().do_quit(arg)
        self.hang_up()
        return result

    do_q = do_exit = do_quit

    def do_EOF(self, arg: str) -> bool | None:
        """The client hung up without ``c``: the test goes on, without the breakpoints
        nobody is left to use."""
        self.clear_all_breaks()
        return self.do_continue(arg)


def _traceback_to_script(tb: types.TracebackType | None, script: str) -> types.TracebackType | None:
    """A copy of ``tb`` that ends at the testScript's deepest frame (not in driver internals)."""
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    in_script = [i for i, entry in enumerate(entries) if entry.tb_frame.f_code.co_filename == script]
    end = in_script[-1] + 1 if in_script else len(entries)
    copy = None
    for entry in reversed(entries[:end]):
        copy = types.TracebackType(copy, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return copy


class DebugAbstract(abc.ABC):
    """What the test symbol ``debug`` offers (the name nixpkgs' typing prelude imports)."""

    @abc.abstractmethod
    def breakpoint(self, host: str = "127.0.0.1", port: int = HOOK_PORT) -> None: ...


class DebugNop(DebugAbstract):
    """``debug`` without a debug hook: breakpoints do nothing."""

    def breakpoint(self, host: str = "127.0.0.1", port: int = HOOK_PORT) -> None:
        return None


class Debug(DebugAbstract):
    """The test symbol ``debug`` and the driver's debugging hooks."""

    def __init__(self, logger: AbstractLogger, attach_command: str | None = None) -> None:
        self.logger = logger
        self.attach_command = attach_command

    def breakpoint(self, host: str = "127.0.0.1", port: int = HOOK_PORT) -> None:
        """With ``--debug-hook-attach``: stop here until a person attaches and continues.
        Without it, do nothing (upstream's ``debug.breakpoint()``)."""
        if self.attach_command is None:
            return
        where = _describe(sys._getframe(1))
        with self._attach_marker():
            connection = self._accept(f"debug.breakpoint() {where}", host, port, fallback=True)
        SocketPdb(connection).set_trace(sys._getframe(1))  # the last call: pdb stops in the caller

    def script_breakpoint(self, *_args: Any, **_kwargs: Any) -> None:
        """The testScript's ``breakpoint()``: pdb on ``$REMOTE_PDB_HOST:$REMOTE_PDB_PORT``."""
        if os.environ.get("PYTHONBREAKPOINT") == "0":
            return
        host = os.environ.get("REMOTE_PDB_HOST", "127.0.0.1")
        try:
            port = int(os.environ.get("REMOTE_PDB_PORT", "0"))
        except ValueError:
            raise DriverError(f"REMOTE_PDB_PORT is not a port number: {os.environ['REMOTE_PDB_PORT']!r}") from None
        connection = self._accept(f"breakpoint() {_describe(sys._getframe(1))}", host, port, fallback=False)
        SocketPdb(connection).set_trace(sys._getframe(1))

    def on_failure(self, exc: BaseException, script: str) -> None:
        """The debug hook: a failed test waits for a person before the VMs are torn down."""
        if self.attach_command is None:
            return
        tb = _traceback_to_script(exc.__traceback__, script)
        with self._attach_marker():
            connection = self._accept(f"the test failed ({type(exc).__name__}: {exc}); pdb post mortem",
                                      "127.0.0.1", HOOK_PORT, fallback=True)
        debugger = SocketPdb(connection)
        debugger.message(f"{type(exc).__name__}: {exc}")
        debugger.reset()
        try:
            debugger.interaction(None, tb)
        finally:
            debugger.hang_up()
        self.logger.warning("debug session over; tearing the test down")

    @contextlib.contextmanager
    def _attach_marker(self) -> Iterator[None]:
        """``sleep PATTERN``: the process the attach command finds to enter this sandbox."""
        pattern = str(1_000_000 + secrets.randbelow(9_000_000))
        marker = subprocess.Popen(["sleep", pattern], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  preexec_fn=die_with_parent)
        self.logger.warning(f"Breakpoint reached, run 'sudo {self.attach_command} {pattern}'")
        try:
            yield
        finally:
            marker.kill()
            marker.wait()

    def _accept(self, what: str, host: str, port: int, fallback: bool) -> socket.socket:
        """Listen on ``host:port``, say how to attach, and wait for the one connection."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                server.bind((host, port))
            except OSError as exc:
                if not fallback or port == 0:
                    raise DriverError(f"cannot serve pdb on {host}:{port}: {exc.strerror}") from None
                self.logger.warning(f"port {port} is taken ({exc.strerror}); pdb takes a free port instead")
                server.bind((host, 0))
            server.listen(1)
            host, port = server.getsockname()[:2]
            self.logger.warning(f"{what}: pdb waits on {host}:{port}")
            self.logger.warning(f"attach with `telnet {host} {port}` or `nc {host} {port}`; "
                                "then `c` continues the test, `q` makes it fail")
            self.logger.event("breakpoint", what=what, host=host, port=port)
            connection, peer = server.accept()
        self.logger.info(f"debugger attached from {peer[0]}:{peer[1]}")
        return connection


def _describe(frame: types.FrameType) -> str:
    return f"at {frame.f_code.co_filename} line {frame.f_lineno}"
