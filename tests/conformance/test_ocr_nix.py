"""nixpkgs' nixos-test-driver/ocr.nix: no machines; unit tests of ``test_driver.machine.ocr``.

The nixpkgs script imports the driver's OCR module by that name and patches it from the
outside (``ocr.subprocess.run``, ``ocr.shutil.which``, ``ocr.os.environ``, and the module's
own ``_run_tesseract`` / ``_preprocess_screenshot``), so neither tesseract nor a screenshot is
needed.  It asserts five things:

1. ``_run_tesseract(image, timeout)``: a tesseract run that times out reads as ``""`` instead
   of raising, and the timeout reached ``subprocess.run`` as its ``timeout=`` keyword;
2. ``_run_tesseract(image)``: tesseract's standard output comes back decoded, and the
   ``timeout=`` keyword is still passed, as ``None``;
3. ``perform_ocr_variants_on_screenshot(image, timeout=...)`` reads three variants (the raw
   screenshot and two processed copies) within one shared budget: a processed copy's
   tesseract gets what is left after its preprocessing, so less than the raw one's;
4. a worker still busy when the budget runs out gives ``""`` (``variants=False``: one result
   only), and the call returns only once no worker thread is alive any more;
5. a budget of zero gives one ``""`` per variant without running anything.

The script below is ours, asserting the same; it runs through our command line with no
machines, as nix runs the driver for ``nodes = { }``.
"""

from __future__ import annotations

SCRIPT = r'''
import subprocess
import threading
import time
from pathlib import Path
from unittest.mock import patch

from test_driver.machine import ocr

shot = Path("screen.png")

# 1. A tesseract run cut short by its timeout reads as nothing; the timeout is a keyword.
too_slow = subprocess.TimeoutExpired(["tesseract"], 0.02)
with patch.object(ocr.subprocess, "run", side_effect=too_slow) as fake_run:
    assert ocr._run_tesseract(shot, 0.02) == "", "a timeout must read as empty text"
    assert fake_run.call_args.kwargs["timeout"] == 0.02, fake_run.call_args

# 2. A finished run gives its decoded stdout; no timeout is passed on as timeout=None.
finished = subprocess.CompletedProcess(["tesseract"], 0, stdout=b"hello screen")
with patch.object(ocr.subprocess, "run", return_value=finished) as fake_run:
    assert ocr._run_tesseract(shot) == "hello screen"
    assert "timeout" in fake_run.call_args.kwargs and fake_run.call_args.kwargs["timeout"] is None

# 3. One budget for everything: preprocessing eats into the processed copies' tesseract time.
budgets = {}

def reading(image, budget):
    budgets[image] = budget
    return "read"

def slow_copy(image, negate, _budget):
    time.sleep(0.03)
    return image.with_name(image.name + (".dark" if negate else ".light"))

with patch.dict(ocr.os.environ, {"NIX_BUILD_CORES": "12"}), \
        patch.object(ocr.shutil, "which", return_value="/bin/true"), \
        patch.object(ocr, "_run_tesseract", side_effect=reading), \
        patch.object(ocr, "_preprocess_screenshot", side_effect=slow_copy):
    texts = ocr.perform_ocr_variants_on_screenshot(shot, timeout=0.1)
assert texts == ["read", "read", "read"], texts
raw_budget = budgets[shot]
assert raw_budget is not None, budgets
copy_budgets = [budget for image, budget in budgets.items() if image != shot and budget is not None]
assert len(copy_budgets) == 2, budgets
assert max(copy_budgets) < raw_budget - 0.02, budgets

# 4. A worker past the budget gives "", and none is left running when the call returns.
threads = []

def late_reading(_image, _budget):
    threads.append(threading.current_thread())
    time.sleep(0.05)
    return "too late"

with patch.object(ocr.shutil, "which", return_value="/bin/true"), \
        patch.object(ocr, "_run_tesseract", side_effect=late_reading):
    texts = ocr.perform_ocr_variants_on_screenshot(shot, variants=False, timeout=0.01)
assert texts == [""], texts
assert threads, "the raw screenshot's worker never started"
assert not any(thread.is_alive() for thread in threads), threads

# 5. No budget at all: one empty text per variant, nothing run (the screenshot does not exist).
with patch.object(ocr.shutil, "which", return_value="/bin/true"):
    assert ocr.perform_ocr_variants_on_screenshot(shot, timeout=0) == ["", "", ""]
print("OCR-NIX PASSED")
'''


def test_ocr_nix(nixos_test):
    run = nixos_test(SCRIPT).check()
    assert "OCR-NIX PASSED" in run.stdout
