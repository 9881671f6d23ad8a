"""Command framing over the guest's backdoor root shell (hvc0).

The guest side is the stock NixOS backdoor: a plain non-interactive bash reading
lines from /dev/hvc0 in raw mode.  After the greeting the driver defines its helper
shell functions once; from then on a command costs one line out and one reply
back, with no process exec'ed in the guest beyond what the command itself runs:

    __td_now NONCE $'command' [FLAGS]                (host -> guest, no timeout)
    set -m; __td_run NONCE $'command' [FLAGS] </dev/null & __td_p=$!; set +m   (with a timeout)

FLAGS: ``o``, the command runs in a bash of its own; ``a``, it has a ``&``, so a process
it leaves behind (a double fork) is looked for among those init adopts.

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
from .stream import Stream

GREETING = re.compile(rb"Spawning backdoor root shell\.\.\.\r?\n?")
# TD1 NONCE STATUS LENGTH (a reply) or TD0 NONCE (the command exited; its reply follows)
FRAME = re.compile(rb"TD(?:1 ([0-9a-f]{1,32}) (-?\d{1,5}) (\d{1,12})|0 ([0-9a-f]{1,32}))\n")
# On the reply port: \0TD0 NONCE (the command's shell exited) or \0TD2 NONCE STATUS (the end)
PORT_FRAME = re.compile(rb"\0TD([02]) ([0-9a-f]{1,32})(?: (-?\d{1,5}))?\n")

# How a command is run, as upstream's `bash -c 'set -euo pipefail; CMD'` sees it, with NONCE CMD
# FLAGS as $1 $2 $3 (o in FLAGS: in a bash of its own), and how init's children are noted as it
# starts (a in FLAGS), written out where they are used: a bash function call costs a few tenths
# of a millisecond under TCG, a tenth of a command's round trip.
EVAL = ('if [[ ${3-} == *o* ]]; then bash -c "set -euo pipefail; $2"; '
        'else BASH_ARGV0=bash; __td_c=$2; set -euo pipefail --; eval "$__td_c"; fi')
ADOPTED = "__td_i=; [[ ${3-} != *a* ]] || read -r __td_i < /proc/1/task/1/children"

# Sent once after the greeting.  __td_now NONCE CMD runs CMD in one subshell (a
# command substitution whose EXIT trap appends the end marker): the fast path for
# commands without a timeout.  __td_run NONCE CMD, started by the shell with job
# control on, is a process group of its own from its fork on (every process the
# command forks inherits it); inside a command substitution it runs CMD as a job
# of yet another group (set -m), so that the substitution outlives CMD's death
# and still marks its end.  __td_kill SIG ROOT NONCE first stops ROOT's whole
# group (SIGSTOP: nothing of it forks meanwhile, not even a fork under way), then
# signals every process below ROOT, every other group found there, and every
# process whose environment carries the command's tag, and lets the group go on:
# ROOT itself is spared, to send the reply, unless it has not forked yet (then it
# goes, and there is no reply; the host only waits for the replies of commands
# it stops on a timeout, long after they started).  The groups found are remembered per
# nonce: a process that ignored SIGTERM and was reparented is still reached by
# the SIGKILL that follows.
HELPERS = r"""
exec {__td_fd}>&1  # hvc0, for the exit notices written from inside command substitutions
# A command's stdin: hvc1, a console port the driver adds and never writes to (a terminal that
# never delivers data nor EOF); /dev/null on a guest without it.
# Opened once (an open of a console costs more than the dup each command makes of it).
# __td_idle: an fd that never has data nor EOF, so that `read -t` on it sleeps without a fork:
# hvc1 again; without it a pipe opened read-write, made by a coproc (not <(:), which needs
# /dev/fd; the coproc waits until it is open), which costs a fork at install.
if [[ -c /dev/hvc1 ]]; then exec {__td_in}</dev/hvc1 {__td_idle}</dev/hvc1
else
  exec {__td_in}</dev/null; coproc __td_pipe { read -r; }
  exec {__td_idle}<>"/proc/$$/fd/${__td_pipe[0]}"; exec {__td_pipe[1]}>&-; wait $__td_pipe_PID
fi
# __td_drain LAST [ADOPTED]: the command's shell exits: wait while a process it started holds its
# stdout: one of its tree (if it started a job since $! was LAST; else no child is left), or one
# init adopted since its children were ADOPTED (a process that left the tree: a double fork) and
# that started after this shell (not an orphan of an earlier command, which may wait in turn).
# Each round looks afresh: a holder may fork, or leave the tree, while it is waited for.
# The usual case (no job started, no `&`) the trap that calls it tests itself; with a `&` the
# usual case costs one read: init's children are as they were.
# (No `local` before `set +eu`: when errexit ends a command inside a function, bash runs the
# EXIT trap outside any function context, where `local` is an error.)
__td_drain() {
  if [[ ${!-} == "${1-}" ]]; then  # (set -u may still be on: the arguments may be empty)
    [[ ${2-} ]] || return 0
    __td_kids=; read -r __td_kids < /proc/1/task/1/children || :
    [[ $__td_kids != "$2" ]] || return 0
  fi
  set +eu
  local last=${1-} adopted=${2-} out=/proc/$BASHPID/fd/1 p f s t=0 holds known more now since=
  local -A seen
  [[ -p $out ]] || return 0
  while :; do
    more= holds= seen=()
    [[ ${!-} == "$last" ]] || read -r more < /proc/$BASHPID/task/$BASHPID/children
    if [[ $adopted ]]; then
      read -r now < /proc/1/task/1/children
      [[ $now == "$adopted" ]] || for p in $now; do
        [[ " $adopted " == *" $p "* || $p == "$BASHPID" ]] && continue
        if [[ ! $since ]]; then read -r s < /proc/$BASHPID/stat; s=${s##*) }; set -- $s; since=${20}; fi
        read -r s < /proc/$p/stat && s=${s##*) } && set -- $s && ((${20} >= since)) && more+=" $p"
      done 2>/dev/null
    fi
    known=($more)
    for ((p = 0; p < ${#known[@]}; p++)); do  # the list grows by the children it finds
      [[ ${seen[${known[p]}]-} ]] && continue
      seen[${known[p]}]=1 more=
      read -r more < /proc/${known[p]}/task/${known[p]}/children; known+=($more)
      # (the reply port's pipe as stdout, or any fd but the inherited one the helpers write frames to)
      for f in /proc/${known[p]}/fd/*; do
        [[ ${f##*/} != "${__td_out-}" && $f -ef $out ]] && { holds=1; break 2; }
      done
    done 2>/dev/null
    [[ $holds ]] || return 0
    read -t 0.$((t < 4 ? ++t : 5)) -u $__td_idle; (($? > 128)) || sleep 0.5  # > 128: timed out
  done
}
__td_reply() {  # reply to command $1 (status $2) with __td_o less its end marker __td_m
  local LC_ALL=C  # lengths in bytes, set before any is taken
  local n=$((${#__td_o} - ${#__td_m}))
  # A large output's header goes out first, on its own: copying tens of MB in bash
  # takes seconds, which the host would take for a process still holding the
  # command's stdout.  The marker is found last at once; elsewhere, with one scan.
  if [[ ${__td_o: -${#__td_m}} == "$__td_m" ]]; then
    if ((n < 65536)); then printf 'TD1 %s %d %d\n%s\0' "$1" "$2" "$n" "${__td_o:0:n}"
    else printf 'TD1 %s %d %d\n' "$1" "$2" "$n"; printf '%s\0' "${__td_o:0:n}"; fi
  else
    __td_o=${__td_o/"$__td_m"/}; printf 'TD1 %s %d %d\n%s\0' "$1" "$2" "${#__td_o}" "$__td_o"
  fi
}
__td_eval() {  # __td_eval NONCE CMD FLAGS: CMD as upstream's `bash -c 'set -euo pipefail; CMD'` sees it
  exec <&$__td_in; @EVAL@
}
__td_now() {
  local __td_o __td_m="@$1@"
  # The trap text holds the marker itself: when errexit fires inside the eval, bash
  # drops this function's locals before it runs the EXIT trap.
  __td_o=$(trap "[[ \${!-} == '${!-}' ]] || { printf 'TD0 %s\n' $1 >&$__td_fd; __td_drain '${!-}'; }; printf %s $__td_m" EXIT
           __td_eval "$@")
  __td_reply "$1" $?
}
__td_run() {
  local __td_o __td_m="@$1@"
  __td_o=$(set -m; (export __TD_TAG=$1
                    trap "[[ \${!-} == '${!-}' ]] || { printf 'TD0 %s\n' $1 >&$__td_fd; __td_drain '${!-}'; }" EXIT
                    __td_eval "$@") &
           wait $!; __td_s=$?; printf %s "$__td_m"; exit $__td_s)
  __td_reply "$1" $?
}
__td_kill() {
  local sig=$1 root=$2 tag="__TD_TAG=$3" own p s e g
  local -A kids=() group=()
  local -a todo=("$root") victims=()
  [[ ${__td_gn-} == "$3" ]] || { __td_gn=$3; __td_groups=(); }
  read -r s < /proc/$$/stat; s=${s##*) }; set -- $s; own=$3
  kill -s STOP -- "-$root" 2>/dev/null
  for p in /proc/[0-9]*; do
    read -r s < "$p/stat" || continue
    s=${s##*) }; set -- $s; kids[$2]+=" ${p#/proc/}"; group[${p#/proc/}]=$3
    while IFS= read -r -d '' e; do
      [[ $e == "$tag" ]] && { victims+=("${p#/proc/}"); break; }
    done < "$p/environ"
  done 2>/dev/null
  while ((${#todo[@]})); do
    p=${todo[0]}; todo=("${todo[@]:1}")
    for s in ${kids[$p]-}; do
      victims+=("$s"); todo+=("$s"); g=${group[$s]}
      [[ $g != "$own" && $g != "$root" && " ${__td_groups[*]} " != *" $g "* ]] && __td_groups+=("$g")
    done
  done
  # A ROOT without children that never reaped one (cminflt, stat field 11, is still 0)
  # has not started the command yet: it goes too, there is no reply to wait for.
  if [[ -z ${kids[$root]-} ]] && read -r s < "/proc/$root/stat"; then
    s=${s##*) }; set -- $s; (($9 == 0)) && victims+=("$root")
  fi 2>/dev/null
  for g in "${__td_groups[@]}"; do kill -s "$sig" -- "-$g"; done 2>/dev/null
  ((${#victims[@]})) && kill -s "$sig" -- "${victims[@]}" 2>/dev/null
  kill -s CONT -- "-$root" "${__td_groups[@]/#/-}" 2>/dev/null
  return 0
}
# The reply port, when the driver added it (a virtio serial port: QEMU holds the guest's writer
# back instead of dropping what the host does not take at once).  One `cat` started now copies a
# pipe to it for good: a command's stdout is that pipe, so its output streams out as it is written
# (raw bytes, NULs too; no shell holds it), framed by \0TD0 NONCE (the command's shell exited) and
# \0TD2 NONCE STATUS (the reply ends).  The alive port is held by this shell alone (commands and
# cat close it): when the shell dies, even in the middle of a command, the port closes and the
# host knows at once.  A port still held by the cat of a shell that died is taken back.
__td_out= __td_alive=
__td_open() {  # __td_open VAR DEVICE: open DEVICE for writing as fd $VAR, taking it from whoever holds it
  local try f p
  for try in 1 2 3 4 5 6 7 8 9 10; do
    exec {__td_fd2}>"$2" && { printf -v "$1" %s "$__td_fd2"; return 0; }
    for f in /proc/[0-9]*/fd/*; do [[ $f -ef $2 ]] && { p=${f#/proc/}; kill -9 "${p%%/*}"; }; done
    read -t 0.1 -u $__td_idle
  done
  return 1
}
for __td_p in /sys/class/virtio-ports/vport*; do
  read -r __td_n < "$__td_p/name" || continue
  case $__td_n in
    org.nixos.test-driver.reply) __td_open __td_port "/dev/${__td_p##*/}" ;;
    org.nixos.test-driver.alive) __td_open __td_alive "/dev/${__td_p##*/}" ;;
  esac
done 2>/dev/null
if [[ ${__td_port-} && $__td_alive ]]; then
  coproc __td_copier { exec cat >&$__td_port {__td_alive}>&- {__td_fd}>&- {__td_in}<&- {__td_idle}<&-; }
  exec {__td_out}>&"${__td_copier[1]}" {__td_port}>&-
elif [[ ${__td_port-} ]]; then
  exec {__td_port}>&-
fi 2>/dev/null
if [[ $__td_out ]]; then
# __td_i (ADOPTED below): init's children as a command starts (the stdout is a pipe shared by every
# command), if FLAGS hold a: the host asks for it when the command has a `&`, without which a
# shell command leaves no process behind (a program that daemonizes keeping its stdout would
# hang upstream's call; that one is not waited for).  Other commands pay nothing for it.
__td_now() {
  @ADOPTED@
  ( exec {__td_alive}>&- {__td_fd}>&- <&$__td_in
    trap "[[ \${!-} == '${!-}' && ! '$__td_i' ]] || { printf '\\0TD0 %s\\n' $1 >&$__td_out; __td_drain '${!-}' '$__td_i'; }" EXIT
    @EVAL@ ) >&$__td_out
  printf '\0TD2 %s %d\n' "$1" $? >&$__td_out
}
__td_run() {  # (a background job of its own already: its stdout can be the pipe for good)
  exec {__td_alive}>&- {__td_fd}>&- >&$__td_out; @ADOPTED@
  set -m; (export __TD_TAG=$1; exec <&$__td_in
           trap "[[ \${!-} == '${!-}' && ! '$__td_i' ]] || { printf '\\0TD0 %s\\n' $1 >&$__td_out; __td_drain '${!-}' '$__td_i'; }" EXIT
           @EVAL@) & wait $!
  printf '\0TD2 %s %d\n' "$1" $?
}
fi
__td_bg() {  # command $1 whose output nobody reads: to /dev/null, no frames, the shell not held
  ( exec {__td_fd}>&-; [[ ! $__td_out ]] || exec {__td_alive}>&- {__td_out}>&-
    __td_eval - "$@" ) >/dev/null &
}
""".replace("@EVAL@", EVAL).replace("@ADOPTED@", ADOPTED)



def compact(script: str) -> str:
    """``script`` without its comment lines, indentation and end-of-line comments: the guest's
    bash reads its input a byte at a time (one read(2) each, dear under TCG), so what it is
    sent is kept short.  An end-of-line comment is two spaces, ``# `` and text, after code
    whose quotes are all closed."""
    lines = []
    for line in script.splitlines():
        code = line.strip()
        if not code or code.startswith("#"):
            continue
        at = code.find("  # ")
        if at > 0 and code[:at].count("'") % 2 == 0 and code[:at].count('"') % 2 == 0:
            code = code[:at].rstrip()
        lines.append(code)
    return "\n".join(lines)


SENT_HELPERS = compact(HELPERS)
"""What the driver sends at connect."""

# Commands that get a bash of their own (one fork and exec more), as upstream's `bash -c`; the
# others are eval'd in a subshell.  `$$` is the command's own shell there; a command that execs
# or sets traps would replace the subshell or the EXIT trap that marks the end of its output.
OWN_SHELL = re.compile(r"\$\$|\$\{\$\}|\b(?:exec|trap)\b")

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
                 on_junk: Callable[[bytes], None] | None = None, replies: Stream | None = None) -> None:
        self.stream = stream
        self.send = send
        self.on_junk = on_junk or (lambda data: None)
        self.replies = replies
        """What the reply port carries, if the machine has one."""
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
        """Define the helper functions in the guest shell and check that it answers."""
        nonce = secrets.token_hex(8)
        self.issued[nonce] = time.monotonic()
        # the status says where replies come: 1 on the reply port, 0 on hvc0
        self.send(f"{SENT_HELPERS}\nprintf 'TD1 %s %d 0\\n\\0' {nonce} ${{__td_out:+1}}\n".encode())
        self.port = False
        self.port = self.reply(nonce, deadline)[0] == 1 and self.replies is not None

    def run(self, command: str, interruptible: bool = True) -> str:
        """Start ``command`` in the guest; return the nonce its reply will carry.

        An interruptible command runs as a background job of its own process
        group, so that ``interrupt`` can reach it (two forks in the guest).
        Otherwise it runs in the shell's foreground with one fork, and nothing
        can stop it from the host.
        """
        nonce = secrets.token_hex(8)
        quoted = ansi_c_quote(command)
        self.issued[nonce] = time.monotonic()
        flags = ("o" if OWN_SHELL.search(command) else "") + ("a" if "&" in command else "")
        flags = f" {flags}" if flags else ""
        line = (f"set -m; __td_run {nonce} {quoted}{flags} </dev/null & __td_p=$!; set +m" if interruptible
                else f"__td_now {nonce} {quoted}{flags}")
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

