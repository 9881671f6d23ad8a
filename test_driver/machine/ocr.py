"""Text on a screenshot, read by tesseract: the screenshot itself (what ``get_screen_text()``
reads) and processed copies of it (``get_screen_text_variants()``, ``wait_for_text()``).

The module has nixpkgs' name and entry points, so test scripts that import
``test_driver.machine.ocr`` (as nixpkgs' ``nixos-test-driver/ocr.nix``) work unchanged:

- ``perform_ocr_on_screenshot(path, timeout=None)``: the screenshot's text;
- ``perform_ocr_variants_on_screenshot(path, variants=True, timeout=None)``: one text per
  variant, the raw screenshot's first, then the two processed copies';
- ``_run_tesseract(image, timeout=None)`` and ``_preprocess_screenshot(path, negate, timeout)``,
  the two steps, which the functions above look up in this module when they run (so a test
  may patch them, as it may patch ``subprocess``, ``shutil.which`` and ``os.environ`` here).

A ``timeout`` is one budget, in seconds, for the whole reading: every variant's preprocessing
and tesseract run gets what is left of it; a variant that has not finished when it is spent
reads as ``""``, and the call still returns only once its worker threads have ended (tesseract
is killed at the end of the budget). A budget of zero or less reads nothing: ``""`` for each.

Tesseract runs as upstream asks it: sparse text (``--psm 11``), with the legacy and LSTM
engines combined (``--oem 2``) where the installed language data has the legacy engine;
Debian's has the LSTM model only, so once tesseract has said so the default engine reads.
Each run is held to one OpenMP thread (unless ``OMP_THREAD_LIMIT`` says otherwise): several
tesseracts at once, each multi-threaded, spin against each other, and one thread each is about
3x faster here for the variants together, which run in parallel, a thread each.

The processed copies differ from upstream's (two ImageMagick pipelines; no ImageMagick is
needed here: pillow makes ours). They were picked with ``benchmarks/run.py --only ocr`` (share
of words recovered from VGA console screens of known text): consoles are light text on black
and tesseract reads dark text on light best; scaling up helps with the small 9x16 glyphs, and a
thresholded 3x copy reads some words the 2x one misses. ``BASELINE`` holds, for that benchmark
only, what they are compared with: the unscaled inverted screen, and pillow's rendering of
upstream's two pipelines (300 dpi, normalized, posterized; light and dark text).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import MachineError

SPARSE_TEXT = ["--psm", "11"]
BOTH_ENGINES = ["--oem", "2"]
NO_TESSERACT = ("OCR requested but enableOCR is false (no tesseract program on PATH; "
                "Debian: apt-get install tesseract-ocr)")

_legacy_engine_missing = False
"""Set once tesseract has refused ``--oem 2`` for want of the legacy engine's data."""


def _unchanged(image: Any) -> Any:
    return image


def _inverted(image: Any) -> Any:
    from PIL import ImageOps

    return ImageOps.invert(ImageOps.grayscale(image.convert("RGB")))


def _scaled(image: Any, factor: float) -> Any:
    from PIL import Image

    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS)


def _upstream_pipeline(image: Any, negate: bool) -> Any:
    """Upstream's ImageMagick steps done with pillow: 72 to 300 dpi (bicubic), stretched
    contrast, despeckled, sharpened, three grey levels, then every non-black pixel white
    (its gamma 100), softened by a 3x3 blur."""
    from PIL import Image, ImageFilter, ImageOps

    grey = ImageOps.grayscale(image.convert("RGB"))
    grey = grey.resize((round(grey.width * 300 / 72), round(grey.height * 300 / 72)), Image.Resampling.BICUBIC)
    grey = ImageOps.autocontrast(grey, cutoff=(2, 1)).filter(ImageFilter.MedianFilter(3))
    grey = grey.filter(ImageFilter.UnsharpMask(radius=1, percent=100, threshold=0))
    grey = grey.point(lambda v: 0 if v < 64 else 128 if v < 192 else 255)
    if negate:
        grey = ImageOps.invert(grey)
    return grey.point(lambda v: 255 if v else 0).filter(ImageFilter.BoxBlur(1))


VARIANTS: dict[str, Callable[[Any], Any]] = {
    "raw": _unchanged,
    "inverted-2x": lambda image: _scaled(_inverted(image), 2),
    "inverted-3x-threshold": lambda image: _scaled(_inverted(image), 3).point(lambda v: 255 if v > 128 else 0),
}
"""The variants OCR reads, by name: the screenshot itself first (``get_screen_text`` reads it
alone), as upstream's list, then the processed copies that recover the most words here."""

RAW: dict[str, Callable[[Any], Any]] = {"raw": VARIANTS["raw"]}
"""The screenshot alone: what ``get_screen_text`` reads."""

BASELINE: dict[str, Callable[[Any], Any]] = {
    "inverted": _inverted,
    "upstream-light": lambda image: _upstream_pipeline(image, negate=False),
    "upstream-dark": lambda image: _upstream_pipeline(image, negate=True),
}
"""Variants the benchmark measures for comparison only."""

PROCESSED_COPY: dict[bool, str] = {False: "inverted-2x", True: "inverted-3x-threshold"}
"""Which of our processed copies ``_preprocess_screenshot(path, negate)`` makes. Upstream's two
copies differ in polarity (``negate``); both of ours are negated (dark text reads best), so the
flag picks the first or the second of them, in the order ``perform_ocr_variants_on_screenshot``
returns them, as upstream's."""

Budget = Optional[float]
"""Seconds left for a step (``None``: no limit)."""

Preparation = Optional[Callable[[Path, Budget], Path]]
"""How one variant's image file is made from the screenshot's within a budget (raises
``subprocess.TimeoutExpired`` past it); ``None`` for the screenshot itself."""


def perform_ocr_on_screenshot(screenshot_path: Path, timeout: float | None = None) -> str:
    """The text tesseract reads on the screenshot at ``screenshot_path`` (unprocessed);
    ``""`` if ``timeout`` seconds (``None``: no limit) ran out first."""
    return perform_ocr_variants_on_screenshot(screenshot_path, False, timeout)[0]


def perform_ocr_variants_on_screenshot(screenshot_path: Path, variants: bool = True,
                                       timeout: float | None = None) -> list[str]:
    """The texts tesseract reads on the screenshot at ``screenshot_path``: the unprocessed
    screenshot's, then (``variants``) those of its two processed copies, read in parallel.

    ``timeout`` (seconds; ``None``: no limit) is shared by all of it: a variant not read
    within it gives ``""``; zero or less reads nothing. Raises ``MachineError`` when there is
    no tesseract or it fails."""
    return text_variants(screenshot_path, VARIANTS if variants else RAW, timeout)


def text_variants(screenshot_path: Path, variants: dict[str, Callable[[Any], Any]] = VARIANTS,
                  timeout: float | None = None) -> list[str]:
    """The texts tesseract reads on each of ``variants`` (name -> pillow image to pillow image)
    of the screenshot at ``screenshot_path``, in their order, read in parallel within the
    shared ``timeout`` budget of ``perform_ocr_variants_on_screenshot``. Our own variants are
    made by ``_preprocess_screenshot``; others (the benchmark's) are written next to it the
    same way."""
    if shutil.which("tesseract") is None:  # upstream's words: nix puts tesseract on PATH for enableOCR
        raise MachineError(NO_TESSERACT)
    if timeout is not None and timeout <= 0:
        return [""] * len(variants)
    return _read_in_parallel(screenshot_path, [_preparation(name, make) for name, make in variants.items()],
                             timeout)


def _preparation(name: str, make: Callable[[Any], Any]) -> Preparation:
    """How the variant ``name`` (``make``) is made; through ``_preprocess_screenshot`` (looked
    up when it runs) for our processed copies."""
    if make is _unchanged:
        return None
    ours = {copy: negate for negate, copy in PROCESSED_COPY.items()}
    if name in ours and make is VARIANTS[name]:
        negate = ours[name]
        return lambda path, budget: _preprocess_screenshot(path, negate, budget)
    return lambda path, budget: _write_variant(path, name, make, budget)


def _read_in_parallel(screenshot_path: Path, preparations: list[Preparation], timeout: float | None) -> list[str]:
    """Each variant made and read by tesseract in a thread of its own, within one deadline."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def left() -> Budget:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def spent(budget: Budget) -> bool:
        return budget is not None and budget <= 0

    def read(prepare: Preparation) -> str:
        budget = left()
        if spent(budget):
            return ""
        image = screenshot_path
        if prepare is not None:
            try:
                image = prepare(screenshot_path, budget)
            except subprocess.TimeoutExpired:
                return ""
            budget = left()
            if spent(budget):
                return ""
        return _run_tesseract(image, budget)

    pool = ThreadPoolExecutor(max_workers=len(preparations), thread_name_prefix="ocr")
    try:
        futures: list[Future[str]] = [pool.submit(read, prepare) for prepare in preparations]
        texts: list[str] = []
        for future in futures:
            try:
                texts.append(future.result(timeout=left()))
            except FutureTimeout:
                texts.append("")
        return texts
    finally:
        # A late worker ends by the deadline too (its tesseract is killed then); wait for it, so
        # that no thread outlives the call nor reads a file its caller is about to remove.
        pool.shutdown(wait=True, cancel_futures=True)


def _tesseract_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.setdefault("OMP_THREAD_LIMIT", "1")
    return environment


def _run_tesseract(image: Path, timeout: float | None = None) -> str:
    """What tesseract reads on the image file ``image`` (sparse text, both engines where
    possible); ``""`` if it did not finish within ``timeout`` seconds (``None``: no limit),
    when it is killed. Raises ``MachineError`` if tesseract is missing or fails."""
    global _legacy_engine_missing
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        engine = [] if _legacy_engine_missing else BOTH_ENGINES
        try:
            done = subprocess.run(["tesseract", str(image), "-", *engine, *SPARSE_TEXT], capture_output=True,
                                  env=_tesseract_environment(), timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""
        except FileNotFoundError:
            raise MachineError(NO_TESSERACT) from None
        if done.returncode == 0:
            return (done.stdout or b"").decode("utf-8", errors="replace")
        complaint = (done.stderr or b"").decode("utf-8", errors="replace").strip()
        if engine and "legacy" in complaint.lower():
            # This language data has the LSTM model only: read with the default engine from now on.
            _legacy_engine_missing = True
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return ""
            continue
        last_line = complaint.splitlines()[-1] if complaint else "(nothing on stderr)"
        raise MachineError(f"OCR failed with exit code {done.returncode}: tesseract: {last_line}")


def _preprocess_screenshot(screenshot_path: Path, negate: bool = False, timeout: float | None = None) -> Path:
    """Write one of our two processed copies of the screenshot next to it (``negate`` picks
    which: see ``PROCESSED_COPY``) and return the copy's path. Raises
    ``subprocess.TimeoutExpired`` if ``timeout`` seconds (``None``: no limit) are none, or
    were not enough."""
    name = PROCESSED_COPY[negate]
    return _write_variant(screenshot_path, name, VARIANTS[name], timeout)


def _write_variant(screenshot_path: Path, name: str, make: Callable[[Any], Any], timeout: float | None) -> Path:
    """``make`` applied to the screenshot, as ``SCREENSHOT.NAME.png`` in its directory."""
    if timeout is not None and timeout <= 0:
        raise subprocess.TimeoutExpired(f"preprocess {name}", timeout)
    started = time.monotonic()
    try:
        from PIL import Image
    except ImportError as exc:
        raise MachineError(f"OCR of processed screenshots needs pillow: {exc}") from None
    target = screenshot_path.with_name(f"{screenshot_path.stem}.{name}.png")
    with Image.open(screenshot_path) as picture:
        picture.load()
        make(picture).save(target, "PNG", compress_level=1)  # pixels are what count: the fastest zlib level
    if timeout is not None and time.monotonic() - started > timeout:
        raise subprocess.TimeoutExpired(f"preprocess {name}", timeout)
    return target
