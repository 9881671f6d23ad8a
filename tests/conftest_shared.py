"""Helpers every end-to-end test folder shares (tests/e2e, tests/conformance)."""

from __future__ import annotations

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
