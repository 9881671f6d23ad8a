#!/usr/bin/env python3
"""Measure the driver against the machine's limits on the tiny guest, in one run.

    python3 benchmarks/run.py [--runs 3] [--json results.json] [--guest tiny|debian] [--only ...]

Each figure is min/median/max over --runs runs.  Ratios compare with the limit
measured in the same run on the same guest and QEMU flags:

  boot        raw QEMU until the backdoor greeting, and upstream's (its QEMU arguments, the
              greeting, its framing of succeed("true") by hand)  vs  start() + first succeed("true")
  command     raw one-line round trip on the virtconsole, the same with one fork in the guest
              (the floor of any framing that captures output), upstream's two-line base64
              framing (sent by hand on the same socket)  vs  succeed("true") through the driver,
              and execute("true") (its 900 s timeout: the path a timeout can interrupt; against
              the same upstream framing, which for execute would also exec `timeout`)
  crash       SIGKILL to QEMU until the blocked succeed() raised
  start_all   1, 2, 4 guests (--machines) until every machine answered succeed
  throughput  MB/s of a 50 MB output (--megabytes)  vs  the same output read raw from the socket
  container   the Debian systemd guest under systemd-nspawn  vs  as a VM: start() until the
              first succeed("true") (needs root and systemd-nspawn)
  parallel    two machines each waiting for a condition that holds 2 s later: one after the
              other  vs  driver.parallel (the test symbol parallel)
  ocr         seconds per get_screen_text_variants(); share of words recovered from three
              VGA console screens of known text, per variant (the raw screenshot first), any
              variant, and for comparison pillow's rendering of upstream's two ImageMagick pipelines
  idle        driver CPU seconds per VM-minute idle; driver peak RSS
  report      the HTML report of a run of 10,000 commands: page size, rendering time and
              Chromium's load time (headless --dump-dom); its cost as a share of a run of as many
              succeed("true"): the JSON events of each (timed in-process), plus rendering
  machines    what a machine costs against upstream's QEMU arguments: QEMU CPU seconds to the
              greeting, the helpers' installation, QEMU CPU per command; N VMs (the largest of
              --machines) together until all answered, wall time and QEMU CPU per machine
              (benchmarks/machines.py)
  watch       --watch on the Debian guest: from saving an edit to its verdict line, the script's
              own time and the loop's overhead  vs  a fresh run of the same script (boot included)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "guests"))
import debian  # noqa: E402
import nspawn  # noqa: E402
import tiny  # noqa: E402

from test_driver.driver import Driver  # noqa: E402
from test_driver.errors import MachineCrashed  # noqa: E402
from test_driver.machine import QemuMachine  # noqa: E402
from test_driver.html_report import write_report  # noqa: E402
from test_driver.logger import CompositeLogger, JSONLogger, TerminalLogger  # noqa: E402
from test_driver.machine.ocr import BASELINE, VARIANTS, text_variants  # noqa: E402
from machines import machines_section  # noqa: E402
from raw_guest import RawGuest  # noqa: E402
from watch_loop import watch_section  # noqa: E402


def quiet_logger() -> CompositeLogger:
    """The real terminal logger, writing into memory (logging cost stays in the figures)."""
    return CompositeLogger([TerminalLogger(io.StringIO(), colour=False)])


OCR_SCREENS = [
    "The quick brown fox jumps over the lazy dog\nPack my box with five dozen liquor jugs\n"
    "How vexingly quick daft zebras jump",
    "Welcome to NixOS 24.05 (x86_64) - tty1\nmachine login: root\n"
    "Last login: Tue Nov 25 20:08:30 2026 on ttyS0\n[root@machine:~]# systemctl status sshd.service",
    "error: builder for '/nix/store/abc123-hello-2.12.drv' failed with exit code 1;\n"
    "Check the log at /var/log/nixos/test-42.log\nPASSED 17 FAILED 3 SKIPPED 0\nfoo_bar-baz = {x: 10, y: 20};",
]


def word_recall(truth: str, text: str) -> float:
    """The share of ``truth``'s words (whitespace-separated, exact) found in ``text``."""
    want, got = Counter(truth.split()), Counter(text.split())
    return sum(min(n, got[word]) for word, n in want.items()) / sum(want.values())


def stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Bench:
    def __init__(self, runs: int, calls: int, work: Path, kind: str, megabytes: int = 50,
                 ocr_screens: int = len(OCR_SCREENS)) -> None:
        self.runs, self.calls, self.work, self.megabytes = runs, calls, work, megabytes
        self.ocr_screens = ocr_screens
        self.builder = debian if kind == "debian" else tiny
        self.guest = self.builder.build()
        self.results: dict[str, dict] = {}

    def script(self, name: str) -> Path:
        return self.builder.write_start_script(self.work, name, self.guest)

    def driver(self, names: list[str]) -> Driver:
        return Driver([str(self.script(n)) for n in names], [], "", self.work, quiet_logger())

    def boot(self) -> None:
        raw, upstream, ours = [], [], []
        for _ in range(self.runs):
            guest = RawGuest(self.script("bootraw"), self.work)
            raw.append(guest.wait_greeting())
            guest.close()
            # upstream: its QEMU arguments, the greeting, then its framing of succeed("true")
            guest = RawGuest(self.script("bootup"), self.work, "upstream")
            guest.wait_greeting()
            guest.upstream_succeed_true()
            upstream.append(time.monotonic() - guest.start)
            guest.close()
            with self.driver(["bootdrv"]) as driver:
                tic = time.monotonic()
                driver.machines[0].succeed("true")
                ours.append(time.monotonic() - tic)
        self.results["boot"] = {"raw_s": stats(raw), "upstream_s": stats(upstream), "driver_s": stats(ours),
                                "ratio": statistics.median(ours) / statistics.median(raw),
                                "vs_upstream": statistics.median(ours) / statistics.median(upstream)}

    def command(self) -> None:
        raw, fork, upstream, ours, ours_p99, timed = [], [], [], [], [], []
        for _ in range(self.runs):
            guest = RawGuest(self.script("cmdraw"), self.work)
            guest.wait_greeting()
            if self.builder is debian:  # measure a settled system, not one still booting
                guest.roundtrip(b"systemctl is-system-running --wait >/dev/null 2>&1; echo ready\n", b"ready\n")
            r = [guest.roundtrip(b"echo\n", b"\n") for _ in range(self.calls)]
            # Any framing that runs a command apart from the shell and captures its output
            # forks once in the guest: the same round trip with one command substitution.
            f = [guest.roundtrip(b"__x=$(:); echo\n", b"\n") for _ in range(self.calls)]
            u = [guest.upstream_succeed_true() for _ in range(max(30, self.calls // 10))]
            guest.close()
            with self.driver(["cmddrv"]) as driver:
                machine = driver.machines[0]
                machine.succeed("true")
                if self.builder is debian:
                    machine.succeed("systemctl is-system-running --wait >/dev/null 2>&1 || true")
                o = []
                for _ in range(self.calls):
                    tic = time.monotonic()
                    machine.succeed("true")
                    o.append(time.monotonic() - tic)
                # execute()'s default 900 s timeout (and every wait's probe) takes the path that
                # can be interrupted: a background job of its own (two forks)
                e = []
                for _ in range(max(30, self.calls // 3)):
                    tic = time.monotonic()
                    machine.execute("true")
                    e.append(time.monotonic() - tic)
            timed.append(statistics.mean(e))
            raw.append(statistics.mean(r))
            fork.append(statistics.mean(f))
            upstream.append(statistics.mean(u))
            ours.append(statistics.mean(o))
            ours_p99.append(percentile(o, 99))
        self.results["command"] = {
            "raw_roundtrip_ms": stats([v * 1000 for v in raw]),
            "raw_one_fork_roundtrip_ms": stats([v * 1000 for v in fork]),
            "upstream_framing_ms": stats([v * 1000 for v in upstream]),
            "driver_succeed_true_ms": stats([v * 1000 for v in ours]),
            "driver_succeed_true_p99_ms": stats([v * 1000 for v in ours_p99]),
            "driver_execute_true_ms": stats([v * 1000 for v in timed]),
            "driver_vs_upstream": statistics.median(ours) / statistics.median(upstream),
            "execute_vs_upstream": statistics.median(timed) / statistics.median(upstream),
            "driver_vs_raw": statistics.median(ours) / statistics.median(raw),
            "driver_vs_one_fork": statistics.median(ours) / statistics.median(fork),
        }

    def crash(self) -> None:
        latencies = []
        for _ in range(self.runs):
            with self.driver(["crash"]) as driver:
                machine = driver.machines[0]
                machine.succeed("true")
                killed: dict[str, float] = {}

                def kill() -> None:
                    killed["at"] = time.monotonic()
                    os.kill(machine.pid, signal.SIGKILL)

                threading.Timer(0.5, kill).start()
                try:
                    machine.succeed("sleep 60")
                except MachineCrashed:
                    latencies.append(time.monotonic() - killed["at"])
        self.results["crash"] = {"detection_ms": stats([v * 1000 for v in latencies])}

    def start_all(self, counts: list[int]) -> None:
        result = {}
        for count in counts:
            times = []
            for _ in range(self.runs):
                with self.driver([f"par{i}" for i in range(count)]) as driver:
                    tic = time.monotonic()
                    driver.start_all()
                    threads = [threading.Thread(target=m.succeed, args=("true",)) for m in driver.machines]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    times.append(time.monotonic() - tic)
            result[f"{count}_vms_s"] = stats(times)
        self.results["start_all"] = result

    def throughput(self) -> None:
        size = self.megabytes * 1000000
        raw_rates = []
        for _ in range(self.runs):
            guest = RawGuest(self.script("bulkraw"), self.work)
            guest.wait_greeting()
            guest.roundtrip(b"echo\n", b"\n")
            tic = time.monotonic()
            guest.roundtrip(f"head -c {size} /dev/zero | tr '\\0' a; echo END\n".encode(), b"END\n")
            raw_rates.append(size / 1e6 / (time.monotonic() - tic))
            guest.close()
        rates = []
        with self.driver(["bulk"]) as driver:
            machine = driver.machines[0]
            machine.succeed("true")
            for _ in range(self.runs):
                tic = time.monotonic()
                out = machine.succeed(f"head -c {self.megabytes * 1000000} /dev/zero | tr '\\0' a")
                rates.append(len(out) / 1e6 / (time.monotonic() - tic))
        self.results["throughput"] = {"MB_per_s": stats(rates), "raw_transport_MB_per_s": stats(raw_rates),
                                      "driver_vs_transport": statistics.median(rates) / statistics.median(raw_rates)}

    def container(self) -> None:
        """The Debian systemd guest as a container and as a VM: start() until the first succeed."""
        guest = debian.build()
        vm_s, container_s = [], []
        for _ in range(self.runs):
            with Driver([], [], "", self.work, quiet_logger(),
                        container_start_scripts=[str(nspawn.write_start_script(self.work, "ct", guest))]) as driver:
                tic = time.monotonic()
                driver.machines[0].succeed("true")
                container_s.append(time.monotonic() - tic)
            with Driver([str(debian.write_start_script(self.work, "vm", guest))], [], "", self.work,
                        quiet_logger()) as driver:
                tic = time.monotonic()
                driver.machines[0].succeed("true")
                vm_s.append(time.monotonic() - tic)
        self.results["container"] = {"container_first_succeed_s": stats(container_s),
                                     "vm_first_succeed_s": stats(vm_s),
                                     "ratio": statistics.median(container_s) / statistics.median(vm_s)}

    def parallel(self) -> None:
        """Two machines each waiting for a condition that holds 2 s after the wait began."""
        def wait(machine: QemuMachine) -> None:
            machine.succeed("rm -f /tmp/flag; (sleep 2; touch /tmp/flag) >/dev/null 2>&1 &")
            machine.wait_until_succeeds("test -e /tmp/flag", timeout=60)

        sequential, concurrent = [], []
        with self.driver(["par_a", "par_b"]) as driver:
            driver.start_all()
            a, b = driver.machines
            for _ in range(self.runs):
                tic = time.monotonic()
                wait(a)
                wait(b)
                sequential.append(time.monotonic() - tic)
                tic = time.monotonic()
                driver.parallel(lambda: wait(a), lambda: wait(b))
                concurrent.append(time.monotonic() - tic)
        self.results["parallel"] = {"sequential_s": stats(sequential), "parallel_s": stats(concurrent),
                                    "ratio": statistics.median(concurrent) / statistics.median(sequential)}

    def ocr(self) -> None:
        """Share of the words of known VGA console screens that OCR recovers, per variant."""
        per_variant: dict[str, list[float]] = {name: [] for name in [*VARIANTS, *BASELINE, "any variant"]}
        seconds = []
        with Driver([str(tiny.write_start_script(self.work, "ocr", tiny.build(), seabios=True))], [], "",
                    self.work, quiet_logger()) as driver:
            machine = driver.machines[0]
            for text in OCR_SCREENS[:self.ocr_screens]:
                machine.succeed("printf '\\033[2J\\033[H' > /dev/tty1; cat > /dev/tty1 <<'EOT'\n" + text + "\nEOT")
                time.sleep(0.5)  # the VGA console redraws asynchronously
                for _ in range(self.runs):
                    tic = time.monotonic()
                    machine.get_screen_text_variants()
                    seconds.append(time.monotonic() - tic)
                png = self.work / "ocr.png"
                machine.screenshot(str(png))
                texts = dict(zip([*VARIANTS, *BASELINE], text_variants(png, {**VARIANTS, **BASELINE})))
                for name, read in texts.items():
                    per_variant[name].append(word_recall(text, read))
                per_variant["any variant"].append(word_recall(text, " ".join(texts[name] for name in VARIANTS)))
        self.results["ocr"] = {"seconds_per_screen": stats(seconds),
                               **{f"recall {name}": stats(values) for name, values in per_variant.items()}}

    def idle(self, seconds: float) -> None:
        per_vm_minute = []
        with self.driver(["idle1", "idle2"]) as driver:
            driver.start_all()
            for m in driver.machines:
                m.succeed("true")
            for _ in range(self.runs):
                before = time.process_time()
                time.sleep(seconds)
                cpu = time.process_time() - before
                per_vm_minute.append(cpu / (2 * seconds / 60))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.results["idle"] = {"cpu_s_per_vm_minute": stats(per_vm_minute), "peak_rss_MB": rss_mb}


REPORT_COMMANDS = 10000


def report_events(path: Path, commands: int) -> None:
    """The event log of a run of ``commands`` commands, written through the real logger."""
    logger = JSONLogger.to_file(path)
    logger.event("run-start", script="bench.py", source="machine.succeed('true')\n", machines=["machine"])
    with logger.subtest("many commands"):
        for n in range(commands):
            with logger.nested(f"must succeed: echo {n}", {"machine": "machine"}):
                logger.event("command", machine="machine", command=f"echo {n}", status=0, seconds=0.01,
                             output=f"{n}\n", output_chars=len(f"{n}\n"))
    logger.event("run-end", status=0, verdict="passed", post_mortems=[])
    logger.close()


def table(results: dict[str, dict]) -> str:
    lines = []
    for section, values in results.items():
        for key, value in values.items():
            if isinstance(value, dict):
                text = "  ".join(f"{k} {v:.3f}" for k, v in value.items())
            else:
                text = f"{value:.3f}"
            lines.append(f"{section:<11} {key:<28} {text}")
    return "\n".join(lines)


def report_section(bench: "Bench") -> None:
    plain = []
    for _ in range(bench.runs):
        with bench.driver(["report"]) as driver:
            machine = driver.machines[0]
            machine.succeed("true")
            tic = time.monotonic()
            for _ in range(bench.calls):
                machine.succeed("true")
            plain.append((time.monotonic() - tic) / bench.calls)
    # What the events of one succeed() cost the driver, measured in-process (on the guest the
    # difference drowns in the noise of a round trip): its three events through the real logger.
    events = bench.work / "report-events.jsonl"
    costs = []
    for _ in range(bench.runs):
        logger = CompositeLogger([JSONLogger.to_file(events)])
        tic = time.perf_counter()
        for n in range(REPORT_COMMANDS):
            with logger.nested("must succeed: true", {"machine": "machine"}):
                logger.event("command", machine="machine", command="true", status=0, seconds=0.01,
                             output="", output_chars=0)
        costs.append((time.perf_counter() - tic) / REPORT_COMMANDS)
        logger.close()
    page = bench.work / "report.html"
    report_events(events, REPORT_COMMANDS)
    tic = time.monotonic()
    write_report(events, page, bench.work)
    render = time.monotonic() - tic
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={bench.work / 'chromium'}", "--dump-dom", page.as_uri()]
    loads = []
    for _ in range(bench.runs):
        tic = time.monotonic()
        subprocess.run(chromium, capture_output=True, check=True, timeout=300,
                       env={**os.environ, "TMPDIR": str(bench.work)})  # a short socket path
        loads.append(time.monotonic() - tic)
    run_s = statistics.median(plain) * REPORT_COMMANDS
    bench.results["report"] = {
        "succeed_true_ms": stats([v * 1000 for v in plain]),
        "page_MB_10k_commands": page.stat().st_size / 1e6,
        "render_s_10k_commands": render,
        "chromium_load_s_10k_commands": stats(loads),
        "events_ms_per_command": stats([v * 1000 for v in costs]),
        "overhead_percent": (statistics.median(costs) * REPORT_COMMANDS + render) / run_s * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument("--megabytes", type=int, default=50, help="output size for throughput")
    parser.add_argument("--ocr-screens", type=int, default=len(OCR_SCREENS), choices=range(1, len(OCR_SCREENS) + 1),
                        help="how many of the known screens the ocr section reads")
    parser.add_argument("--json", type=Path, default=Path("benchmark-results.json"))
    parser.add_argument("--only", nargs="*", help="sections to run")
    parser.add_argument("--guest", choices=["tiny", "debian"], default="tiny")
    parser.add_argument("--edits", type=int, default=5, help="edits per --watch session (watch)")
    parser.add_argument("--watch-guest", choices=["tiny", "debian"], default="debian",
                        help="the guest of the watch section (the goal is set on the Debian guest)")
    parser.add_argument("--machines", type=int, nargs="+", default=[1, 2, 4],
                        help="how many machines start_all starts, one measurement each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="td-bench-", dir="/tmp") as work:
        bench = Bench(args.runs, args.calls, Path(work), args.guest, args.megabytes, args.ocr_screens)
        sections: dict[str, Callable[[], None]] = {
            "boot": bench.boot, "command": bench.command, "crash": bench.crash,
            "start_all": lambda: bench.start_all(args.machines), "throughput": bench.throughput,
            "container": bench.container, "parallel": bench.parallel, "ocr": bench.ocr, "idle": lambda: bench.idle(args.idle_seconds),
            "report": lambda: report_section(bench),
            "machines": lambda: machines_section(bench.script, Path(work), bench.driver, args.runs,
                                                 max(args.machines), args.calls, stats, bench.results),
            "watch": lambda: watch_section(Path(work), args.runs, args.edits, stats, bench.results,
                                           args.watch_guest)}
        for name, run in sections.items():
            if args.only and name not in args.only:
                continue
            print(f"running {name} ...", file=sys.stderr, flush=True)
            tic = time.monotonic()
            run()
            print(f"  ({name} took {time.monotonic() - tic:.1f} s)", file=sys.stderr, flush=True)
    print(f"guest: {args.guest}")
    print(table(bench.results))
    args.json.write_text(json.dumps(bench.results, indent=2))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
