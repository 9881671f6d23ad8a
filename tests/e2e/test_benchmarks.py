"""The benchmark runs end to end and reports every figure (no timing is asserted, so that it
runs beside another test like any other: the figures of a loaded host are only noisier)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"

FIGURES = {
    "boot": {"raw_s", "upstream_s", "driver_s", "ratio", "vs_upstream"},
    "command": {"raw_roundtrip_ms", "raw_one_fork_roundtrip_ms", "upstream_framing_ms",
                "driver_succeed_true_ms", "driver_succeed_true_p99_ms", "driver_vs_upstream",
                "driver_vs_raw", "driver_vs_one_fork", "driver_execute_true_ms", "execute_vs_upstream"},
    "crash": {"detection_ms"},
    "start_all": {"1_vms_s", "2_vms_s"},  # the suite asks for 1 and 2 (the default adds 4)
    "throughput": {"MB_per_s", "raw_transport_MB_per_s", "driver_vs_transport"},
    "container": {"container_first_succeed_s", "vm_first_succeed_s", "ratio"},
    "parallel": {"sequential_s", "parallel_s", "ratio"},
    "ocr": {"seconds_per_screen", "recall inverted-2x", "recall inverted-3x-threshold", "recall raw",
            "recall inverted", "recall upstream-light", "recall upstream-dark", "recall any variant"},
    "idle": {"cpu_s_per_vm_minute", "peak_rss_MB"},
    "report": {"succeed_true_ms", "page_MB_10k_commands", "render_s_10k_commands", "chromium_load_s_10k_commands",
               "events_ms_per_command", "overhead_percent"},
    "machines": {"greeting_qemu_cpu_s_upstream_args", "greeting_qemu_cpu_s_driver_args",
                 "greeting_cpu_driver_vs_upstream", "helper_install_ms", "helper_install_qemu_cpu_ms",
                 "upstream_succeed_true_ms", "command_qemu_cpu_ms_upstream", "command_qemu_cpu_ms_driver",
                 "2_vms_s_upstream_args", "2_vms_s_driver", "2_vms_driver_vs_upstream",
                 "2_vms_qemu_cpu_s_per_machine_upstream", "2_vms_qemu_cpu_s_per_machine_driver",
                 "2_vms_cpu_driver_vs_upstream"},
    "watch": {"save_to_verdict_s", "scripts_own_s", "loop_overhead_s", "fresh_run_s", "fresh_vs_watch"},
}


def test_benchmark_smoke(tmp_path, private_tmp):
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, str(BENCH), "--runs", "1", "--calls", "20", "--idle-seconds", "1",
                             "--megabytes", "2", "--machines", "1", "2", "--ocr-screens", "1", "--edits", "2", "--watch-guest", "tiny",
                             "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    assert {section: set(values) for section, values in results.items()} == FIGURES
    for section, values in results.items():
        for name, value in values.items():
            numbers = value.values() if isinstance(value, dict) else [value]
            assert all(isinstance(n, (int, float)) and n >= 0 for n in numbers), (section, name, value)
            assert name in result.stdout  # the printed table has every figure
