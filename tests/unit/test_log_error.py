"""log.error() in a testScript ends the test with status 1, as upstream's CompositeLogger.error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_log_error_ends_the_test_with_status_1(tmp_path: Path):
    test = tmp_path / "t.py"
    test.write_text('log.info("BEFORE")\nlog.error("the thing broke")\nprint("AFTER")\n')
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts", "-o",
                             str(tmp_path), "--", str(test)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "the thing broke" in result.stderr and "BEFORE" in result.stderr
    assert "AFTER" not in result.stdout
