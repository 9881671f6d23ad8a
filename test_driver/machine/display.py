"""A VM's screen and keyboard: screenshots, keys and typed text, and OCR of what the screen shows.

A mixin of ``QemuMachine``: the screen is read through QMP's ``screendump``, keys go through
the monitor's ``sendkey``; a container has neither (its calls raise ``NotForContainers``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import tempfile
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable

from ..deadline import Duration, seconds
from ..duration import FIFTEEN_MINUTES, warn_if_number
from ..keys import key_for
from ..protocol.qmp import QMPClient
from .base import BaseMachine
from .ocr import RAW, VARIANTS, text_variants


class Display(BaseMachine):
    """Screenshots, keys and OCR of a QEMU machine."""

    qmp_client: QMPClient

    @abstractmethod
    def send_monitor_command(self, command: str) -> str: ...

    def _screendump_png(self, target: Path, timeout: float = 30) -> None:
        from PIL import Image

        with tempfile.TemporaryDirectory(dir=self.state_dir) as tmp:
            ppm = Path(tmp) / "screen.ppm"
            self.qmp_client.command("screendump", {"filename": str(ppm)}, timeout=timeout)
            with Image.open(ppm) as image:
                image.save(target, "PNG")

    def screenshot(self, filename: str) -> None:
        """Save a PNG picture of the display; a name without a directory goes to the
        output directory, a name without an extension gets ``.png``."""
        if "." not in filename:
            filename += ".png"
        if "/" not in filename:
            filename = os.path.join(self.out_dir, filename)
        with self.nested(f"making screenshot {filename}", {"image": os.path.basename(filename)}):
            self.run_callbacks()  # (upstream's screendump goes through the monitor, which runs them)
            self._screendump_png(Path(filename))

    def send_key(self, key: str, delay: Duration | None = datetime.timedelta(milliseconds=10),
                 log: bool | None = True) -> None:
        """Press a key: QEMU ``sendkey`` syntax (e.g. ``ctrl-alt-delete``) or one character;
        then wait ``delay`` (seconds or ``timedelta``)."""
        warn_if_number(delay, "send_key")
        key = key_for(key)
        with self.nested(f"sending key {key!r}") if log else contextlib.nullcontext():
            self.send_monitor_command(f"sendkey {key}")
        if delay is not None:
            time.sleep(seconds(delay) or 0.0)

    def send_chars(self, chars: str, delay: Duration | None = datetime.timedelta(milliseconds=10)) -> None:
        """Type ``chars`` on the virtual keyboard, e.g. ``send_chars("ls\\n")``, waiting
        ``delay`` (seconds or ``timedelta``) after each key."""
        warn_if_number(delay, "send_chars")
        with self.nested(f"sending keys {chars!r}"):
            for char in chars:
                self.send_key(char, delay, log=False)

    def _ocr(self, variants: dict[str, Callable[[Any], Any]] = VARIANTS) -> list[str]:
        with tempfile.TemporaryDirectory(dir=self.state_dir) as tmp:
            png = Path(tmp) / "screen.png"
            self._screendump_png(png)
            return text_variants(png, variants)

    def get_screen_text_variants(self) -> list[str]:
        """What the screen shows, read by OCR: one text per image variant, the unprocessed
        screenshot's first (as ``get_screen_text``), then processed copies that read more."""
        return self._ocr()

    def get_screen_text(self) -> str:
        """What the screen shows, read by OCR from the unprocessed screenshot."""
        return self._ocr(RAW)[0]

    def wait_for_text(self, regex: str, timeout: Duration = FIFTEEN_MINUTES) -> None:
        """Wait until OCR of the screen matches ``regex`` (in any variant)."""
        warn_if_number(timeout, "wait_for_text")
        texts: list[str] = []

        def matches(_remaining: float | None) -> bool:
            nonlocal texts
            texts = self._ocr()
            return any(re.search(regex, text) for text in texts)

        with self.nested(f"waiting for {regex} to appear on screen"):
            self._poll_until(matches, timeout, f"/{regex}/ on the screen",
                             lambda: f"OCR read {texts[0][-300:] if texts else ''!r}",
                             last_words=lambda: f"Last OCR attempt failed. Text was: {texts}")
