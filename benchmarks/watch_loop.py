"""The edit-run loop of ``--watch``: from saving an edited script to its verdict line, against a
fresh run of the same script (boot included), on the Debian systemd guest.

The script's own time is what the verdict line says the run took; the rest of the edit's
wait is the loop's cost (noticing the change, reading and compiling the script, the logs
and the report of the run).  Goal: under 1 s plus the script's own time.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, IO

SCRIPT = "machine.succeed('systemctl is-system-running --wait || true')\nmachine.succeed('true')  # edit {n}\n"
"""(On the tiny guest, without systemd, the first command fails quietly.)"""
VERDICT = re.compile(r"watch: run (\d+) (passed|failed) in ([0-9.]+) s")


def _driver(script: Path, start: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "test_driver.cli_main", "--start-scripts", str(start), "-o", str(out),
            "--html-report", "report.html", *args, str(script)]


def _until(stream: IO[str], pattern: re.Pattern[str] | str) -> re.Match[str]:
    for line in stream:
        match = re.search(pattern, line)
        if match:
            return match
    raise RuntimeError(f"the driver ended before printing {pattern!r}")


def watch_section(work: Path, runs: int, edits: int, stats: Callable[[list[float]], dict[str, float]],
                  results: dict[str, dict], guest: str = "debian") -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "guests"))
    import debian
    import tiny

    builder = debian if guest == "debian" else tiny
    start = builder.write_start_script(work, "machine", builder.build())
    script = work / "watched.py"
    waits, own, fresh = [], [], []
    for _ in range(runs):
        script.write_text(SCRIPT.format(n=0))
        tic = time.monotonic()
        subprocess.run(_driver(script, start, work), check=True, capture_output=True, timeout=600)
        fresh.append(time.monotonic() - tic)

        driver = subprocess.Popen(_driver(script, start, work, "--watch"), stderr=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, text=True)
        assert driver.stderr is not None
        try:
            _until(driver.stderr, "watch: waiting for changes")
            for n in range(1, edits + 1):
                saved = time.monotonic()
                script.write_text(SCRIPT.format(n=n))
                verdict = _until(driver.stderr, VERDICT)
                waits.append(time.monotonic() - saved)
                own.append(float(verdict[3]))
                _until(driver.stderr, "watch: waiting for changes")
        finally:
            driver.terminate()
            driver.wait(60)
    overhead = [wait - script_s for wait, script_s in zip(waits, own)]
    results["watch"] = {"save_to_verdict_s": stats(waits), "scripts_own_s": stats(own),
                        "loop_overhead_s": stats(overhead), "fresh_run_s": stats(fresh),
                        "fresh_vs_watch": min(fresh) / max(waits)}
