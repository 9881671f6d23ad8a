"""Text on a screenshot, with tesseract (pytesseract) on a few preprocessed variants.

The variants were picked with ``benchmarks/run.py --only ocr`` (share of words
recovered from VGA console screens of known text): consoles are light text on
black, and tesseract reads dark text on light best; scaling up helps with the
small 9x16 glyphs, and a thresholded 3x copy reads some words the 2x one misses.
The unprocessed screenshot (``raw``) and the unscaled inverted one recover no
word those two miss; the benchmark keeps them for comparison only.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from .errors import MachineError


def _inverted(image: Any) -> Any:
    from PIL import ImageOps

    return ImageOps.invert(ImageOps.grayscale(image.convert("RGB")))


def _scaled(image: Any, factor: int) -> Any:
    from PIL import Image

    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)


VARIANTS: dict[str, Callable[[Any], Any]] = {
    "inverted-2x": lambda image: _scaled(_inverted(image), 2),
    "inverted-3x-threshold": lambda image: _scaled(_inverted(image), 3).point(lambda v: 255 if v > 128 else 0),
}
"""The variants OCR reads, best first (``get_screen_text`` returns the first)."""

BASELINE: dict[str, Callable[[Any], Any]] = {"raw": lambda image: image, "inverted": _inverted}
"""Variants measured by the benchmark only: they recover no word the others miss."""


def read(image: Any) -> str:
    try:
        import pytesseract  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MachineError(f"OCR needs pytesseract: {exc}") from None
    # tesseract's OpenMP threads spin against each other when several run at once:
    # one thread each is about 3x faster here for the variants together.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    try:
        return str(pytesseract.image_to_string(image))
    except pytesseract.TesseractNotFoundError:
        raise MachineError("OCR needs the tesseract program (Debian: apt-get install tesseract-ocr)") from None


def text_variants(path: Path, variants: dict[str, Callable[[Any], Any]] = VARIANTS) -> list[str]:
    """OCR of each variant of the picture at ``path``, in parallel (tesseract runs as processes)."""
    from PIL import Image

    with Image.open(path) as picture:
        picture.load()
    with ThreadPoolExecutor(len(variants)) as pool:
        return list(pool.map(lambda make: read(make(picture)), variants.values()))
