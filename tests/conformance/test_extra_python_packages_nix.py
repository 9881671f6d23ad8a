"""nixpkgs' nixos-test-driver/extra-python-packages.nix: no machines; the option
``extraPythonPackages = p: [ p.numpy ]`` puts numpy into the driver's Python (and the type
check's).  Here numpy is installed beside the driver (setup.py's test extra), as the nix
option does it; our nix module passes ``extraPythonPackages`` on to the package
(tests/unit/test_nix_module.py).

What it asserts: the script imports numpy and uses it (nixpkgs' assertion is always true:
its parenthesis wraps the whole comparison in ``str()``; ours compares for real).  We also
type-check the script with our type check, which must find numpy.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r'''
import numpy as np
assert str(np.zeros(4)) == "[0. 0. 0. 0.]", str(np.zeros(4))
print("EXTRA-PYTHON-PACKAGES PASSED")
'''


def test_extra_python_packages_nix(nixos_test, tmp_path):
    run = nixos_test(SCRIPT).check()
    assert "EXTRA-PYTHON-PACKAGES PASSED" in run.stdout
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    checked = subprocess.run([sys.executable, "-m", "test_driver.typecheck", str(script)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
