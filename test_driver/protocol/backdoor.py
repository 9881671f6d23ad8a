"""Command framing over the guest's backdoor root shell (hvc0).

The guest side is the stock NixOS backdoor: a plain non-interactive bash reading
lines from /dev/hvc0 in raw mode.  After the greeting the driver defines its helper
shell functions once (``guest_helpers``: through the reply port when it can, which
bash reads in blocks, not a byte at a time); from then on a command costs one line
out and one reply back, with no process exec'ed in the guest beyond what the
command itself runs:

    __td_now NONCE $'command' [FLAGS]                (host -> guest, no timeout)
    set -m; __td_run NONCE $'command' [FLAGS] </dev/null & __td_p=$!; set +m   (with a timeout)

FLAGS: ``o``, the command runs in a bash of its own; ``a``, it has a ``&`` that starts a
job, so a process it leaves behind (a double fork) is looked for among those init adopts.
On the reply port, a command without FLAGS whose text can start no job of its shell
(``STARTS_JOBS``) goes as ``__td_now0``/``__td_run0`` instead: the same, without the EXIT
trap that looks for such jobs.

Replies come on the reply port when the driver added one (a virtio serial port,
which QEMU throttles instead of dropping output; see the HELPERS' last part): the
command's stdout streams out raw, through one ``cat`` started at install, framed
``\\0TD0 NONCE\\n`` (the command's shell exited) and ``\\0TD2 NONCE STATUS\\n`` (the
end).  Nothing holds the output in the guest and any byte passes, NUL included.
An alive port, held open by the shell alone, closes when the shell dies.  Without
those ports, replies come on hvc0:

    TD0 NONCE\\n                                     (guest -> host: the command exited)
    TD1 NONCE STATUS LENGTH\\n<LENGTH bytes of stdout>\\0  (guest -> host: the reply)

Both run the command as upstream's ``bash -c 'set -euo pipefail; CMD'`` would
see it: ``$0`` is ``bash``, stdin is hvc1 (a console port the driver adds and
never writes to: a terminal that never delivers data nor EOF, so a command that
reads stdin blocks as under upstream and can never eat the protocol's bytes), and
a command naming ``$$``, ``exec`` or ``trap`` runs in a bash of its own (one exec
more), so that ``$$`` is its own shell; others are eval'd in a subshell (no exec).
Stderr goes to the guest's serial console.  When the command's shell exits with a
process it started still holding stdout, ``__td_drain`` holds the end back until
no such process is left, as upstream's pipe to base64 waits for every holder.

On the reply port, whose pipe every command shares, a process that left the
command's tree (a double fork) is found among those init adopted while the command
ran.  On hvc0, stdout is captured by command substitution
(which waits for every holder), kept whole by an end marker, unique per command,
removed again; the reply carries the byte length, so any output is unambiguous.  A
NUL byte, which a bash variable cannot hold, ends the reply: if it comes before
LENGTH bytes, bytes were lost on the way (QEMU drops console output that the
host's socket does not take at once) and ``reply`` raises BackdoorError at once
instead of waiting for bytes that will never come.  NUL bytes of the output are
dropped there.

The exit notice ``TD0`` is written (a builtin printf, no fork) when the command's
shell exits while a process it started may still hold its stdout (it started a
job, or, with a ``&`` in it, a process may have left its tree); the reply follows
once its stdout is closed.  A reply that lags behind its notice means such a
process holds it: ``Backdoor.reply`` reports that through ``on_linger``.  In the
usual case the reply follows at once, and the notice is not sent: the EXIT trap
tests that case itself, as a bash function call (of ``__td_drain``) costs about
as much as the fork of the command's shell there (measured under TCG).

A command with a timeout runs as a background job in a process group of its own,
so the shell stays free to take an interrupt: ``__td_kill SIG`` freezes that
group, so an interrupt sent the moment the command started misses none of its
processes, then signals every process of the command (its process tree, the
groups in it, and anything that inherited its ``__TD_TAG`` environment marker).

This module knows bytes and the protocol only: no timeouts policy, no machines.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Callable

from ..deadline import Deadline
from ..errors import BackdoorError, WaitTimeout
from .guest_helpers import bootstrap, on_console
from .stream import Stream

GREETING = re.compile(rb"Spawning backdoor root shell\.\.\.\r?\n?")
# TD1 NONCE STATUS LENGTH (a reply) or TD0 NONCE (the command exited; its reply follows)
FRAME = re.compile(rb"TD(?:1 ([0-9a-f]{1,32}) (-?\d{1,5}) (\d{1,12})|0 ([0-9a-f]{1,32}))\n")
# On the reply port: \0TD0 NONCE (the command's shell exited) or \0TD2 NONCE STATUS (the end)
PORT_FRAME = re.compile(rb"\0TD([02]) ([0-9a-f]{1,32})(?: (-?\d{1,5}))?\n")


# Commands that get a bash of their own (one fork and exec more), as upstream's `bash -c`; the
# others are eval'd in a subshell.  `$$` is the command's own shell there; a command that execs
# or sets traps would replace the subshell or the EXIT trap that marks the end of its output.
OWN_SHELL = re.compile(r"\$\$|\$\{\$\}|\b(?:exec|trap)\b")
# A `&` that starts a job (not `&&`, `>&`, `<&`, `&>` nor `|&`): a shell leaves a process behind
# only through one, which then may leave the command's process tree (FLAGS a).
ASYNC = r"(?<![&<>|])&(?![&>])"
# Text through which a command can start a job of its own shell (one that may hold its stdout when
# that shell exits, which the EXIT trap of __td_now and __td_run looks for): a `&`, a coprocess, a
# process substitution, or text it evaluates in that shell (eval, source, `.`, a mapfile callback).
# A command without any, nor FLAGS, runs on the reply port as __td_now0 or __td_run0: no trap.
STARTS_JOBS = re.compile(ASYNC + r"|[<>]\(|\b(?:coproc|eval|source|mapfile|readarray)\b|(?:^|[\s;&|(){}!`])\.(?=\s|$)")

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-+=.,/:@%^&*()[]{}<>|;~#?!$\"`")


def ansi_c_quote(text: str) -> str:
    """Quote ``text`` as one bash ``$'...'`` word on a single line (any bytes but NUL)."""
    out = []
    for byte in text.encode():
        if byte == 0:
            raise ValueError("a shell command cannot contain a NUL byte")
        out.append(chr(byte) if byte in _SAFE else f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


class Backdoor:
    """One guest root shell, reached through ``stream`` (reads) and ``send`` (writes)."""

    def __init__(self, stream: Stream, send: Callable[[bytes], None],
                 on_junk: Callable[[bytes], None] | None = None, replies: Stream | None = None,
                 send_port: Callable[[bytes], None] | None = None) -> None:
        self.stream = stream
        self.send = send
        self.on_junk = on_junk or (lambda data: None)
        self.replies = replies
        """What the reply port carries, if the machine has one."""
        self.send_port = send_port
        """Writes to the reply port (the helpers go that way at install)."""
        self.port = False
        """Whether the guest's shell sends replies on the reply port (found at ``install``)."""
        self.issued: dict[str, float] = {}
        """Nonces of commands whose reply has not been read yet, with when each was sent."""

    def wait_for_greeting(self, deadline: Deadline) -> bytes:
        """Wait for the backdoor's greeting; return what the guest said before it."""
        before, _ = self.stream.expect(GREETING, deadline, "the backdoor greeting "
                                       "'Spawning backdoor root shell...'")
        return before

    def install(self, deadline: Deadline) -> None:
        """Define the helper functions in the guest shell and check that it answers: through the
        reply port when the machine has one the shell can open (``guest_helpers.BOOTSTRAP``),
        else on hvc0."""
        self.port = False
        status = 0  # 0: not defined yet; 1: defined, replies on hvc0; 2: on the reply port
        if self.replies is not None and self.send_port is not None:
            opened, loaded = self._issue(), self._issue()
            line, helpers = bootstrap(opened, loaded, secrets.token_hex(8))
            self.send(line)
            if self.reply(opened, deadline)[0] == 1:
                self.send_port(helpers)
            status = self.reply(loaded, deadline)[0]
        if status == 0:
            nonce = self._issue()
            self.send(on_console(nonce))
            status = 1 + self.reply(nonce, deadline)[0]
        self.port = status == 2 and self.replies is not None

    def _issue(self) -> str:
        """A new nonce, noted as issued now."""
        nonce = secrets.token_hex(8)
        self.issued[nonce] = time.monotonic()
        return nonce

    def run(self, command: str, interruptible: bool = True) -> str:
        """Start ``command`` in the guest; return the nonce its reply will carry.

        An interruptible command runs as a background job of its own process
        group, so that ``interrupt`` can reach it (two forks in the guest).
        Otherwise it runs in the shell's foreground with one fork, and nothing
        can stop it from the host.
        """
        quoted = ansi_c_quote(command)
        nonce = self._issue()
        flags = ("o" if OWN_SHELL.search(command) else "") + ("a" if re.search(ASYNC, command) else "")
        plain = "0" if self.port and not flags and not STARTS_JOBS.search(command) else ""
        flags = f" {flags}" if flags else ""
        line = (f"set -m; __td_run{plain} {nonce} {quoted}{flags} </dev/null & __td_p=$!; set +m" if interruptible
                else f"__td_now{plain} {nonce} {quoted}{flags}")
        self.send(line.encode() + b"\n")
        return nonce

    def start(self, command: str) -> None:
        """Start ``command`` in the guest in the background, its output discarded: nothing
        of it comes back, so it cannot mix with the replies of the commands that follow."""
        own = " o" if OWN_SHELL.search(command) else ""
        self.send(f"__td_bg {ansi_c_quote(command)}{own}\n".encode())

    def interrupt(self, nonce: str, signal: str = "TERM") -> None:
        """Send ``signal`` to every process of the last started command."""
        if not signal.isalnum():
            raise ValueError(f"bad signal name {signal!r}")
        self.send(f"__td_kill {signal} $__td_p {nonce}\n".encode())

    def reply(self, nonce: str, deadline: Deadline, linger: float | None = None,
              on_linger: Callable[[], None] | None = None) -> tuple[int, bytes]:
        """Wait for the reply carrying ``nonce``: (exit status, stdout bytes).  On the reply
        port when the guest's shell uses it, else on hvc0 (see ``_reply_on_console``)."""
        if self.port and self.replies is not None:
            return self._reply_on_port(self.replies, nonce, deadline, linger, on_linger)
        return self._reply_on_console(nonce, deadline, linger, on_linger)

    def _reply_on_port(self, replies: Stream, nonce: str, deadline: Deadline, linger: float | None,
                       on_linger: Callable[[], None] | None) -> tuple[int, bytes]:
        """The output streamed on the reply port up to ``\\0TD2 NONCE STATUS``.

        Frames of commands nobody waits for any more end their output, which is
        dropped; a frame naming a nonce never issued is output that looks like one.
        ``linger`` and ``on_linger`` as for the console (``\\0TD0 NONCE`` says the
        command's shell exited)."""
        output = bytearray()
        exited: Deadline | None = None
        while True:
            wait = exited if exited is not None and on_linger is not None else deadline
            try:
                before, match = replies.expect(PORT_FRAME, wait, f"the reply to command {nonce}")
            except WaitTimeout:
                if wait is deadline or on_linger is None:
                    raise
                on_linger()
                on_linger = None
                continue
            kind, seen = match[1], match[2].decode()
            if seen not in self.issued or (kind == b"2") != (match[3] is not None):
                output += before + match[0]
                continue
            if seen != nonce:  # the end of an abandoned command's output
                output.clear()
                if kind == b"2":
                    del self.issued[seen]
                continue
            output += before
            if kind == b"0":
                if linger is not None:
                    grace = max(linger, (time.monotonic() - self.issued[seen]) / 2)
                    left = deadline.remaining()
                    exited = Deadline(grace if left is None else min(grace, left))
                continue
            del self.issued[seen]
            # hvc0 carries nothing else now: what came there meanwhile was written by a command
            junk = self.stream.take_unless(GREETING)
            if junk.strip():
                self.on_junk(junk)
            return int(match[3]), bytes(output)

    def _reply_on_console(self, nonce: str, deadline: Deadline, linger: float | None = None,
                          on_linger: Callable[[], None] | None = None) -> tuple[int, bytes]:
        """Wait for the reply carrying ``nonce`` on hvc0.

        Replies and notices of earlier commands nobody waits for any more (timed
        out, or started without waiting) are read past; anything else, a header
        with a nonce never issued included, is junk and handed to ``on_junk`` (so
        a forged length cannot swallow the real reply).  If the reply is still
        missing ``linger`` seconds after the command exited, ``on_linger()`` is
        called once and the wait goes on.  That grace grows to half the time the
        command ran: the guest's shell needs time in proportion to the output to
        store it and send the reply, and a command's output also passed through
        that shell while it ran.
        """
        exited: Deadline | None = None
        while True:
            wait = deadline
            if exited is not None and on_linger is not None:
                wait = exited
            try:
                before, match = self.stream.expect(FRAME, wait, f"the reply to command {nonce}")
            except WaitTimeout:
                if wait is deadline or on_linger is None:  # (the second only narrows the type)
                    raise
                on_linger()
                on_linger = None
                continue
            if before.strip():
                self.on_junk(before)
            if match[4] is not None:  # an exit notice
                seen = match[4].decode()
                if seen not in self.issued:
                    self.on_junk(match[0])
                elif seen == nonce and linger is not None:
                    grace = max(linger, (time.monotonic() - self.issued[seen]) / 2)
                    left = deadline.remaining()
                    exited = Deadline(grace if left is None else min(grace, left))
                continue
            seen = match[1].decode()
            if seen not in self.issued:
                self.on_junk(match[0])
                continue
            length = int(match[3])
            body = self.stream.read_until(b"\0", deadline, f"the output of command {nonce}")
            del self.issued[seen]
            if seen != nonce:
                continue
            if len(body) < length:
                raise BackdoorError(
                    f"the output of command {seen} lost {length - len(body)} of its {length} bytes on "
                    "the way to the host (QEMU drops console output the host does not read in time)")
            if len(body) > length:  # something else wrote to hvc0 meanwhile
                self.on_junk(body[length:])
            return int(match[2]), body[:length]

