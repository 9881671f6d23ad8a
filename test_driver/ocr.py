"""Text on a screenshot, with tesseract (pytesseract): the screenshot itself, as upstream's
``get_screen_text()`` reads it, and processed variants of it.

Tesseract runs as upstream asks it: sparse text (``--psm 11``), with the legacy and
LSTM engines combined (``--oem 2``) where the installed language data has the
legacy engine; Debian's has the LSTM model only, so there the default engine reads.

The processed variants were picked with ``benchmarks/run.py --only ocr`` (share of
words recovered from VGA console screens of known text): consoles are light text
on black, and tesseract reads dark text on light best; scaling up helps with the
small 9x16 glyphs, and a thresholded 3x copy reads some words the 2x one misses.
``BASELINE`` holds, for that benchmark only, the variants it compares them with:
the unscaled inverted screen, and pillow's rendering of upstream's two ImageMagick
pipelines (scaled to 300 dpi, normalized, posterized; light and dark text).
"""

from __future__ import annotations

import functools
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from .errors import MachineError

SPARSE_TEXT = "--psm 11"
BOTH_ENGINES = "--oem 2"


def _inverted(image: Any) -> Any:
    from PIL import ImageOps

    return ImageOps.invert(ImageOps.grayscale(image.convert("RGB")))


def _scaled(image: Any, factor: float) -> Any:
    from PIL import Image

    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS)


def _upstream_pipeline(image: Any, negate: bool) -> Any:
    """Upstream's ``magick convert`` steps done with pillow: 72 to 300 dpi (bicubic),
    stretched contrast, despeckled, sharpened, three grey levels, then every
    non-black pixel white (its gamma 100), softened by a 3x3 blur."""
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
    "raw": lambda image: image,
    "inverted-2x": lambda image: _scaled(_inverted(image), 2),
    "inverted-3x-threshold": lambda image: _scaled(_inverted(image), 3).point(lambda v: 255 if v > 128 else 0),
}
"""The variants OCR reads: the screenshot itself first (``get_screen_text`` reads it alone),
as upstream's list, then the processed ones that recover the most words here."""

BASELINE: dict[str, Callable[[Any], Any]] = {
    "inverted": _inverted,
    "upstream-light": lambda image: _upstream_pipeline(image, negate=False),
    "upstream-dark": lambda image: _upstream_pipeline(image, negate=True),
}
"""Variants the benchmark measures for comparison only."""


@functools.cache
def _engine_option() -> str:
    """``--oem 2`` if the installed English data has the legacy engine, else nothing."""
    import pytesseract  # type: ignore[import-untyped]
    from PIL import Image

    try:
        pytesseract.image_to_string(Image.new("L", (8, 8), 255), config=f"{BOTH_ENGINES} {SPARSE_TEXT}")
    except pytesseract.TesseractError:
        return ""
    return BOTH_ENGINES


def read(image: Any) -> str:
    """What tesseract reads on ``image``, as upstream runs it."""
    try:
        import pytesseract
    except ImportError as exc:
        raise MachineError(f"OCR needs pytesseract: {exc}") from None
    # tesseract's OpenMP threads spin against each other when several run at once:
    # one thread each is about 3x faster here for the variants together.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    try:
        return str(pytesseract.image_to_string(image, config=f"{_engine_option()} {SPARSE_TEXT}".strip()))
    except pytesseract.TesseractNotFoundError:
        raise MachineError("OCR needs the tesseract program (Debian: apt-get install tesseract-ocr)") from None
    except pytesseract.TesseractError as exc:
        raise MachineError(f"OCR failed: tesseract: {exc}") from None


def text_variants(path: Path, variants: dict[str, Callable[[Any], Any]] = VARIANTS) -> list[str]:
    """OCR of each variant of the picture at ``path``, in parallel (tesseract runs as processes)."""
    from PIL import Image

    if shutil.which("tesseract") is None:  # upstream's words: nix puts tesseract on PATH for enableOCR
        raise MachineError("OCR requested but enableOCR is false (no tesseract program on PATH; "
                           "Debian: apt-get install tesseract-ocr)")

    with Image.open(path) as picture:
        picture.load()
    if len(variants) == 1:
        return [read(make(picture)) for make in variants.values()]
    with ThreadPoolExecutor(len(variants)) as pool:
        return list(pool.map(lambda make: read(make(picture)), variants.values()))


RAW = {"raw": VARIANTS["raw"]}
"""The screenshot alone: what ``get_screen_text`` reads."""
