"""Helpers every end-to-end test folder shares (tests/e2e, tests/conformance)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def processes_mentioning(text: str) -> list[str]:
    """qemu-system / vde_switch / systemd-nspawn processes whose command line mentions ``text``
    (read from /proc: ps may cut long command lines)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args and any(name in args for name in ("qemu-system", "vde_switch", "systemd-nspawn")):
            found.append(f"{proc.name} {args}")
    return found


def wait_no_processes(text: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _processes() -> dict[int, tuple[int, str, str]]:
    """Every process the kernel shows this (the initial) PID namespace, which holds every
    PID namespace below it: pid -> (parent pid, state, start time)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            found[int(proc.name)] = (int(fields[1]), fields[0], fields[19])
    return found


def _mounts() -> set[str]:
    return {line.split()[4] for line in Path("/proc/1/mountinfo").read_text().splitlines()}


def _links() -> set[str]:
    return {name for name in os.listdir("/sys/class/net")}


def _files(top: Path) -> set[Path]:
    """Every path below ``top`` (what is being removed meanwhile is simply not there)."""
    found = set()
    for root, dirs, names in os.walk(top):
        found.update(Path(root) / name for name in [*dirs, *names])
    return found


def _netns() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


class Leftovers:
    """What a run leaves behind, as the kernel sees it: processes in every PID namespace
    (any state: stopped, zombie), mount points, network interfaces and named network
    namespaces of the host, files in the run's directory.  ``Leftovers(dirs)`` notes what
    exists; the run's process starts with ``preexec_fn=trace.enter`` so that it and
    everything it starts, in whatever namespace, is counted by the kernel in a cgroup of
    the trace's own (processes of other sessions on the machine are not); ``.wait(timeout)``
    lists what is new and still there after at most ``timeout`` seconds."""

    def __init__(self, *dirs: Path) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.mounts, self.links, self.netns = _mounts(), _links(), _netns()
        self.files = {d: _files(d) for d in self.dirs}
        self.cgroup = Path("/sys/fs/cgroup/pids") / f"td-leftovers-{os.getpid()}-{time.monotonic_ns()}"
        self.cgroup.mkdir()

    def enter(self) -> None:
        """The ``preexec_fn`` of the run's process: it joins the trace's cgroup."""
        (self.cgroup / "cgroup.procs").write_text("0")

    def _processes(self) -> list[str]:
        members = {int(pid) for cg in [self.cgroup, *self.cgroup.rglob("*")] if cg.is_dir()
                   for pid in (cg / "cgroup.procs").read_text().split()}
        left = []
        for pid, (ppid, state, _) in _processes().items():
            if pid in members or (state == "Z" and ppid in members):
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    continue
                left.append(f"process {pid} ({comm}, state {state}, parent {ppid})")
        return left

    def now(self) -> list[str]:
        left = self._processes()
        left += [f"mount {m}" for m in sorted(_mounts() - self.mounts)]
        left += [f"link {name}" for name in sorted(_links() - self.links)]
        left += [f"netns {name}" for name in sorted(_netns() - self.netns)]
        for d in self.dirs:
            left += [f"file {f}" for f in sorted(_files(d) - self.files[d])]
        return left

    def wait(self, timeout: float = 10.0) -> list[str]:
        """What is left after at most ``timeout`` seconds; the trace's cgroup is removed if empty."""
        deadline = time.monotonic() + timeout
        while (left := self.now()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not self._processes():
            for cg in sorted([self.cgroup, *self.cgroup.rglob("*")], key=lambda c: -len(c.parts)):
                if cg.is_dir():
                    cg.rmdir()
        return left
