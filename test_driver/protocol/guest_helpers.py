"""The shell functions the driver defines in the guest's backdoor shell, and how they get there.

The guest's side of the framing described in ``protocol.backdoor``: bash text, sent once per
shell (after each greeting), never exec'ing anything per command beyond what the command runs.
"""

from __future__ import annotations

# How a command is run, as upstream's `bash -c 'set -euo pipefail; CMD'` sees it, with NONCE CMD
# FLAGS as $1 $2 $3 (o in FLAGS: in a bash of its own), and how init's children are noted as it
# starts (a in FLAGS), written out where they are used: a bash function call costs a few tenths
# of a millisecond under TCG, a tenth of a command's round trip.
PLAIN = 'BASH_ARGV0=bash; __td_c=$2; set -euo pipefail --; eval "$__td_c"'
EVAL = f'if [[ ${{3-}} == *o* ]]; then bash -c "set -euo pipefail; $2"; else {PLAIN}; fi'
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
  # As when upstream's `bash -c` exits, the shell lets go of all else it holds (a job may wait for
  # the end of its input from it, as a coprocess does): all but stdout, stderr and the helpers'.
  for f in /proc/$BASHPID/fd/*; do
    f=${f##*/}; [[ " 1 2 255 ${__td_out-} $__td_idle " == *" $f "* ]] || exec {f}>&-
  done
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
# host knows at once.  A port still held by the cat of a shell that died is taken back.  (The
# reply port is open already when these functions came through it: see BOOTSTRAP.)
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
    org.nixos.test-driver.reply) [[ ${__td_port-} ]] || __td_open __td_port "/dev/${__td_p##*/}" ;;
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
# command), if FLAGS hold a: the host asks for it when a `&` in the command starts a job, without which a
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
# __td_now0 / __td_run0 NONCE CMD: the same for a command without FLAGS that can start no job of
# its shell (the host picks them: no `&`, coprocess, process substitution, nor text it evaluates),
# so that nothing can hold its stdout once its shell exited: no EXIT trap to set and run, no flag
# to test (under TCG those cost a seventh of a command's round trip).
__td_now0() {
  ( exec {__td_alive}>&- {__td_fd}>&- <&$__td_in; @PLAIN@ ) >&$__td_out
  printf '\0TD2 %s %d\n' "$1" $? >&$__td_out
}
__td_run0() {
  exec {__td_alive}>&- {__td_fd}>&- >&$__td_out
  set -m; (export __TD_TAG=$1; exec <&$__td_in; @PLAIN@) & wait $!
  printf '\0TD2 %s %d\n' "$1" $?
}
fi
__td_bg() {  # command $1 whose output nobody reads: to /dev/null, no frames, the shell not held
  ( exec {__td_fd}>&-; [[ ! $__td_out ]] || exec {__td_alive}>&- {__td_out}>&-
    __td_eval - "$@" ) >/dev/null &
}
""".replace("@EVAL@", EVAL).replace("@ADOPTED@", ADOPTED).replace("@PLAIN@", PLAIN)


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

# The first line after the greeting, when the machine has a reply port.  bash reads its commands
# from hvc0 a byte at a time (a read(2) each: about 5 µs a byte under TCG, 30 ms for the helpers),
# but `read -N` takes a non-terminal in blocks.  So the shell opens the reply port (a virtio serial
# port carries bytes both ways) and says whether it could (TD1 @OPENED@ 1 or 0); the host then writes
# the helpers there, and the shell reads them in a few reads and evaluates them if they end with
# this install's check line (so that bytes left in the port by a shell that died while it read
# are never run).  The last reply says what came of it: 0, nothing (the host sends the helpers on
# hvc0 instead: the port was held by an earlier shell's copier); 1, defined, replies on hvc0; 2,
# defined, replies on the reply port.
ACK = "printf 'TD1 %s %d 0\\n\\0'"
"""An install step's reply on hvc0 (then its nonce and status): a TD1 frame without output."""

BOOTSTRAP = (
    "for __td_p in /sys/class/virtio-ports/vport*; do read -r __td_n < $__td_p/name && "
    "[[ $__td_n == org.nixos.test-driver.reply ]] && exec {__td_port}<>/dev/${__td_p##*/} && break; "
    "done 2>/dev/null; @ACK@ @OPENED@ \"${__td_port:+1}\"; "
    "[[ ${__td_port-} ]] && IFS= read -r -N @LENGTH@ __td_h <&$__td_port && "
    "[[ $__td_h == *'#@CHECK@'$'\\n' ]] && eval \"$__td_h\"; unset __td_h; "
    "__td_s=0; declare -F __td_now >/dev/null && __td_s=$((1 + ${__td_out:+1}+0)); "
    "@ACK@ @LOADED@ $__td_s\n").replace("@ACK@", ACK)


def bootstrap(opened: str, loaded: str, check: str) -> tuple[bytes, bytes]:
    """The bootstrap line (nonces ``opened`` and ``loaded`` for its two replies) and what the host
    writes to the reply port when the shell opened it: the helpers and the ``check`` line."""
    through_port = f"{SENT_HELPERS}\n#{check}\n".encode()
    line = (BOOTSTRAP.replace("@OPENED@", opened).replace("@LOADED@", loaded)
            .replace("@CHECK@", check).replace("@LENGTH@", str(len(through_port))))
    return line.encode(), through_port


def on_console(nonce: str) -> bytes:
    """The helpers sent on hvc0 (a byte a read: without a reply port, or when the shell could
    not open it), then the reply ``nonce``: 1 if replies come on the reply port, else 0."""
    return f"{SENT_HELPERS}\n{ACK} {nonce} ${{__td_out:+1}}\n".encode()
