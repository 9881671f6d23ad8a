"""Text on a screenshot, with tesseract (pytesseract) on a few preprocessed variants."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import MachineError


def _variants(path: Path) -> list["object"]:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        gray = ImageOps.grayscale(image)
    big = gray.resize((gray.width * 2, gray.height * 2), Image.Resampling.LANCZOS)
    # Consoles are light text on dark: tesseract reads dark text on light best.
    inverted = ImageOps.invert(big)
    threshold = inverted.point(lambda v: 255 if v > 128 else 0)
    return [inverted, threshold, big]


def text_variants(path: Path) -> list[str]:
    """OCR of each variant, in parallel (tesseract runs as separate processes)."""
    try:
        import pytesseract  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MachineError(f"OCR needs pytesseract: {exc}") from None
    images = _variants(path)
    try:
        with ThreadPoolExecutor(len(images)) as pool:
            return list(pool.map(lambda image: pytesseract.image_to_string(image), images))
    except pytesseract.TesseractNotFoundError:
        raise MachineError("OCR needs the tesseract program (Debian: apt-get install tesseract-ocr)") from None
