"""The machines section: what a machine costs, this driver against upstream's command line.

On the same start script and guest, each figure min/median/max over the runs:

  devices     QEMU CPU seconds until the backdoor greeting: upstream's QEMU arguments
              against this driver's (its extra ports and console, seen by the guest's boot)
  connect     what this driver does at connect, on a raw guest with its arguments: the helpers'
              installation (wall time and QEMU CPU seconds) against one upstream succeed("true")
  per command QEMU CPU milliseconds of one succeed("true"): the driver's against upstream's
              framing sent by hand (the guest's share of a command)
  N machines  N guests started together until each answered succeed("true"): upstream's
              command line and framing by hand  against  the driver (start_all, then succeed
              on each at once); wall time and QEMU CPU seconds per machine
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable

from raw_guest import RawGuest, cpu_seconds
from test_driver.driver import Driver


def together(count: int, one: Callable[[int], None]) -> float:
    """Seconds until ``one(i)`` returned for every i of ``range(count)``, all started at once."""
    tic = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - tic


def machines_section(script: Callable[[str], Path], work: Path, driver: Callable[[list[str]], Driver],
                     runs: int, count: int, commands: int, stats: Callable[[list[float]], dict[str, float]],
                     results: dict[str, dict[str, Any]]) -> None:
    figures: dict[str, list[float]] = {key: [] for key in (
        "greeting_cpu_upstream", "greeting_cpu_driver", "install_s", "install_cpu", "upstream_command_s",
        "command_cpu_upstream", "command_cpu_driver", "together_upstream", "together_driver",
        "machine_cpu_upstream", "machine_cpu_driver")}
    for _ in range(runs):
        for devices in ("upstream", "driver"):
            guest = RawGuest(script(f"dev{devices[0]}"), work, devices)
            guest.wait_greeting()
            figures[f"greeting_cpu_{devices}"].append(guest.cpu_seconds())
            if devices == "driver":
                before, tic = guest.cpu_seconds(), time.monotonic()
                guest.install_helpers()
                figures["install_s"].append(time.monotonic() - tic)
                figures["install_cpu"].append(guest.cpu_seconds() - before)
            else:
                guest.upstream_succeed_true()
                figures["upstream_command_s"].append(guest.upstream_succeed_true())
                before = guest.cpu_seconds()
                for _ in range(commands):
                    guest.upstream_succeed_true()
                figures["command_cpu_upstream"].append((guest.cpu_seconds() - before) / commands)
            guest.close()
        with driver(["cmdcpu"]) as one:
            machine = one.machines[0]
            machine.succeed("true")
            before = cpu_seconds(machine.pid)
            for _ in range(commands):
                machine.succeed("true")
            figures["command_cpu_driver"].append((cpu_seconds(machine.pid) - before) / commands)

        guests: list[RawGuest] = []
        cpu: list[float] = [0.0] * count

        def upstream_one(i: int) -> None:
            guests[i].wait_greeting()
            guests[i].upstream_succeed_true()
            cpu[i] = guests[i].cpu_seconds()

        tic = time.monotonic()
        guests += [RawGuest(script(f"up{i}"), work, "upstream") for i in range(count)]
        started = time.monotonic() - tic
        figures["together_upstream"].append(started + together(count, upstream_one))
        figures["machine_cpu_upstream"].append(statistics.mean(cpu))
        for guest in guests:
            guest.close()

        with driver([f"drv{i}" for i in range(count)]) as many:
            def driver_one(i: int) -> None:
                many.machines[i].succeed("true")
                cpu[i] = cpu_seconds(many.machines[i].pid)

            tic = time.monotonic()
            many.start_all()
            started = time.monotonic() - tic
            figures["together_driver"].append(started + together(count, driver_one))
            figures["machine_cpu_driver"].append(statistics.mean(cpu))

    med = {key: statistics.median(values) for key, values in figures.items()}
    results["machines"] = {
        "greeting_qemu_cpu_s_upstream_args": stats(figures["greeting_cpu_upstream"]),
        "greeting_qemu_cpu_s_driver_args": stats(figures["greeting_cpu_driver"]),
        "greeting_cpu_driver_vs_upstream": med["greeting_cpu_driver"] / med["greeting_cpu_upstream"],
        "helper_install_ms": stats([v * 1000 for v in figures["install_s"]]),
        "helper_install_qemu_cpu_ms": stats([v * 1000 for v in figures["install_cpu"]]),
        "upstream_succeed_true_ms": stats([v * 1000 for v in figures["upstream_command_s"]]),
        "command_qemu_cpu_ms_upstream": stats([v * 1000 for v in figures["command_cpu_upstream"]]),
        "command_qemu_cpu_ms_driver": stats([v * 1000 for v in figures["command_cpu_driver"]]),
        f"{count}_vms_s_upstream_args": stats(figures["together_upstream"]),
        f"{count}_vms_s_driver": stats(figures["together_driver"]),
        f"{count}_vms_driver_vs_upstream": med["together_driver"] / med["together_upstream"],
        f"{count}_vms_qemu_cpu_s_per_machine_upstream": stats(figures["machine_cpu_upstream"]),
        f"{count}_vms_qemu_cpu_s_per_machine_driver": stats(figures["machine_cpu_driver"]),
        f"{count}_vms_cpu_driver_vs_upstream": med["machine_cpu_driver"] / med["machine_cpu_upstream"],
    }
