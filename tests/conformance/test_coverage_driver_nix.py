"""nixpkgs' nixos-test-driver/coverage-driver.nix: nix plumbing that runs the driver's
entry point under ``coverage run`` (counting ``test_driver`` files) for the default.nix
tests, and copies the ``.coverage`` data out.  No assertion of its own: it must simply be
possible to run the driver under coverage and get its data.

Ours, run the same way: our command line under ``coverage run`` with such an rc file, on a
test that boots a machine, then ``coverage report``: the data names our driver's modules.
"""

from __future__ import annotations

import os
import subprocess
import sys


SCRIPT = r'''
start_all()
machine.succeed("true")
'''


def test_coverage_driver_nix(tmp_path, tiny_guest, private_tmp):
    import tiny

    rc = tmp_path / "coveragerc"
    rc.write_text("[run]\ninclude =\n    */test_driver/*\n")
    script = tmp_path / "t.py"
    script.write_text(SCRIPT)
    start = tiny.write_start_script(tmp_path, "machine", tiny_guest)
    env = {**os.environ, "COVERAGE_RCFILE": str(rc), "COVERAGE_FILE": str(tmp_path / ".coverage")}
    done = subprocess.run([sys.executable, "-m", "coverage", "run", "-m", "test_driver.cli_main",
                           "-o", str(tmp_path), "--start-scripts", str(start), "--", str(script)],
                          capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = subprocess.run([sys.executable, "-m", "coverage", "report"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert report.returncode == 0, report.stderr
    for module in ("driver.py", "machine/qemu.py", "protocol/backdoor.py"):
        assert f"test_driver/{module}" in report.stdout, report.stdout
