"""The run's sandbox: one small process that outlives nothing of the run and leaves nothing.

The driver starts it first.  It dies with the driver, whatever kills the driver (its
parent-death signal), and then ends everything the run put into it and removes the run's
directories.  As root it is PID 1 of a PID namespace of the run's own, with a network and
a mount namespace of the run's own: containers' start scripts and ``vde_plug2tap`` run in
there (``wrap``), so their processes, the network namespaces, veth links and bridges they
make, and their mounts go with it, by the kernel's hand: when a PID namespace's first
process ends, every process in it (nested PID namespaces, a container's, included) gets
SIGKILL, and a network namespace nobody holds is freed with its links.

Without the privilege to make namespaces (an unprivileged build user) it is a plain
process that removes the run's directories when the driver dies; the rest runs as before.

Processes in the sandbox see PIDs of its namespace; ``host_pid`` translates a PID one of
them printed (``systemd-nspawn's PID is N``, ``X_NSPAWN_LEADER_PID=N``) to the driver's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from .logger import AbstractLogger
from .machine.supervisor import die_with_parent_by

READY = "sandbox ready"

# PID 1 of the run's namespaces: private /proc, /sys (this network namespace's links) and
# /run/netns (named network namespaces); on SIGTERM (the driver ended, or asks) it kills
# everything else in its namespace, removes the run's directories, and exits, which ends
# the namespaces.
REAPER = r"""
end() {
  # only as the first process of the run's own PID namespace: kill -1 there reaches the run alone
  if [ -n "${TD_ISOLATED:-}" ] && [ "$$" -eq 1 ]; then kill -KILL -1 2>/dev/null; fi
  for dir in "$@"; do rm -rf "$dir" 2>/dev/null || rm -rf "$dir" 2>/dev/null; done
  exit 0
}
trap 'end "$@"' TERM HUP INT
if [ -n "${TD_ISOLATED:-}" ]; then
  mount --make-rprivate /
  # this network namespace's /sys (its links), with the cgroup tree kept as it was
  mkdir -p /run/nixos-nspawn /run/netns
  mount -t tmpfs -o mode=0755 td-nspawn /run/nixos-nspawn
  mkdir /run/nixos-nspawn/.cgroup && mount --rbind /sys/fs/cgroup /run/nixos-nspawn/.cgroup
  mount -t sysfs sysfs /sys
  mount --move /run/nixos-nspawn/.cgroup /sys/fs/cgroup && rmdir /run/nixos-nspawn/.cgroup
  mount -t tmpfs -o mode=0755 td-netns /run/netns
  ip link set lo up 2>/dev/null
fi
echo "sandbox ready"
# It waits reading its stdin, a pipe the driver never writes to: no child of its own that a
# SIGKILL of it would orphan.  A signal ends the read (and runs the trap); the driver's death
# ends it too (end of file), should its parent-death signal be lost.
while read -r _; do :; done
end "$@"
"""


class Sandbox:
    """The run's reaper process (see the module's docstring)."""

    def __init__(self, directories: list[Path], logger: AbstractLogger) -> None:
        self.directories = directories
        self.logger = logger
        self.isolated = False
        self.process: subprocess.Popen[str] | None = None

    def start(self, isolated: bool) -> None:
        """Start the reaper: with the run's namespaces if ``isolated`` and they can be
        made (the run has containers), plain otherwise."""
        dirs = [str(d) for d in self.directories]
        unshare = shutil.which("unshare")
        if isolated and os.geteuid() == 0 and unshare is not None:
            argv = [unshare, "--pid", "--fork", "--mount-proc", "--net", "--mount", "--propagation", "private",
                    "--kill-child=SIGTERM", "--", "/bin/sh", "-c", REAPER, "reaper", *dirs]
            # unshare ignores SIGTERM while it waits: it gets SIGKILL, and its child SIGTERM from it
            if self._launch(argv, {"TD_ISOLATED": "1"}, signal.SIGKILL):
                self.isolated = True
                return
            self.logger.warning("cannot make the run's namespaces; containers' processes may outlive a killed driver")
        if not self._launch(["/bin/sh", "-c", REAPER, "reaper", *dirs], {}, signal.SIGTERM):
            self.logger.warning("no reaper for the run: a killed driver leaves its directories")

    def _launch(self, argv: list[str], env: dict[str, str], on_death: int) -> bool:
        """Start ``argv``, which gets ``on_death`` when the driver dies; True once it said it is ready."""
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                                   start_new_session=True, preexec_fn=die_with_parent_by(on_death))
        assert process.stdout is not None
        if process.stdout.readline().strip() == READY:
            self.process = process
            return True
        process.kill()
        _, error = process.communicate()
        self.logger.info(f"sandbox: {error.strip()}")
        return False

    @property
    def pid(self) -> int | None:
        """The reaper's PID 1, in the driver's PID namespace (None if not isolated)."""
        if not self.isolated or self.process is None:
            return None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return int(children[0]) if children else None

    def wrap(self, argv: list[str], cwd: str | None = None) -> list[str]:
        """``argv`` as it runs inside the run's namespaces (unchanged when not isolated)."""
        target = self.pid
        if target is None:
            return argv
        nsenter = shutil.which("nsenter") or "nsenter"
        return [nsenter, f"--target={target}", "--pid", "--net", "--mount", *([f"--wd={cwd}"] if cwd else []),
                "--", *argv]

    def stop(self) -> None:
        """End the reaper (and with it anything still in the sandbox); wait for it."""
        if self.process is None:
            return
        try:  # unshare ignores SIGTERM; killed, it hands SIGTERM on to the reaper
            self.process.send_signal(signal.SIGKILL if self.isolated else signal.SIGTERM)
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        except ProcessLookupError:
            pass
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.process = None


def host_pid(root: int, ns_pid: int) -> int | None:
    """The PID, in the driver's namespace, of the process below ``root`` (by parent links)
    whose PID is ``ns_pid`` in the namespace just below ``root``'s (None if there is none)."""
    def nspids(pid: int) -> list[int]:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(n) for n in line.split()[1:]]
        return [pid]

    try:
        depth = len(nspids(root))
    except OSError:
        return None
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            ids = nspids(pid)
            if len(ids) > depth and ids[depth] == ns_pid:
                return pid
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return None
