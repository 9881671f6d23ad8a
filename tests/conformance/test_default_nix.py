"""nixpkgs' nixos-test-driver/default.nix and machines.nix: no script of their own.

default.nix builds one test per script (low-level, systemd, files, power,
polling-condition, driver, tty, ocr, networking, x11), each as common.py followed by the
script, with nodes from machines.nix (``basic``, a minimal VM that the scripts call
``machine``; ``tty`` with root logged in; ``client`` and ``server``; ``x11``), under a
driver wrapped in coverage (coverage-driver.nix).  Our modules run each of those scripts
with ``common=True`` on the guest that imitates its node; this checks that none is missing
and that each runs the prelude first.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_NIX_TESTS = {
    "low-level": "test_low_level_py.py", "systemd": "test_systemd_py.py", "files": "test_files_py.py",
    "power": "test_power_py.py", "polling-condition": "test_polling_condition_py.py",
    "driver": "test_driver_py.py", "tty": "test_tty_py.py", "ocr": "test_ocr_py.py",
    "networking": "test_networking_py.py", "x11": "test_x11_py.py",
}


def test_every_default_nix_test_has_a_module_that_runs_common_py_first():
    here = Path(__file__).parent
    missing = [name for name, module in DEFAULT_NIX_TESTS.items() if not (here / module).exists()]
    assert not missing, f"default.nix tests without a module here: {missing}"
    without_prelude = [module for module in DEFAULT_NIX_TESTS.values()
                       if "common=True" not in (here / module).read_text()]
    assert not without_prelude, without_prelude
