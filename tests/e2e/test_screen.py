"""Screens, keys and OCR on the tiny guest's VGA text console (SeaBIOS, 720x400)."""

from __future__ import annotations

import os
import tempfile

import pytest
import tiny
from PIL import Image

from test_driver.driver import Driver
from test_driver.errors import WaitTimeout


@pytest.fixture
def screen(guest, tmp_path, private_tmp, log):
    script = tiny.write_start_script(tmp_path, "screen", guest, seabios=True)
    out = tmp_path / "out"
    out.mkdir()
    with Driver([str(script)], [], "", out, log) as driver:
        machine = driver.machines[0]
        machine.succeed("printf '\\033[2J\\033[H' > /dev/tty1")  # a clear screen
        yield machine


def tmpdir_entries() -> set[str]:
    return set(os.listdir(tempfile.gettempdir()))


def test_text_written_to_the_console_is_read_by_ocr(screen, tmp_path):
    before = tmpdir_entries()
    screen.succeed("echo 'The quick brown fox jumps over the lazy dog' > /dev/tty1")
    screen.wait_for_text("quick brown fox", timeout=60)
    variants = screen.get_screen_text_variants()
    assert len(variants) >= 2 and any("lazy dog" in text for text in variants)
    assert "fox" in screen.get_screen_text()
    with pytest.raises(WaitTimeout, match="/never on screen/ on the screen.*OCR read"):
        screen.wait_for_text("never on screen", timeout=1)
    assert tmpdir_entries() == before  # OCR left no temp files (tesseract's included)

    # As upstream's: the unprocessed screenshot first, then the processed ones; tesseract reads
    # sparse text (--psm 11), so words far apart on a line come as blocks of their own.
    screen.succeed("printf '\\033[2J\\033[H' > /dev/tty1; printf 'ALPHA%50sOMEGA\\n' '' > /dev/tty1")
    screen.wait_for_text("OMEGA", timeout=60)
    text, variants = screen.get_screen_text(), screen.get_screen_text_variants()
    assert len(variants) == 3 and text == variants[0], (text, variants)
    assert "ALPHA" in text and "OMEGA" in text and "ALPHA OMEGA" not in text, text

    checks: list[str] = []
    screen.callbacks.append(lambda: checks.append("polled"))
    screen.screenshot("shot")
    assert checks == ["polled"]  # as upstream's screendump through the monitor: polling conditions run
    with Image.open(tmp_path / "out" / "shot.png") as image:
        image.verify()  # a valid PNG...
    with Image.open(tmp_path / "out" / "shot.png") as image:
        assert image.format == "PNG"
        assert image.size == (720, 400)  # ...at the guest's resolution: VGA text mode


def test_send_chars_into_a_guest_program_changes_the_screen(screen, log):
    # A program on tty1 (the active VT, where the keyboard types) that answers each line.
    screen.succeed("(while read -r line; do echo \"REPLY $line\" | tr a-z A-Z; done"
                   " </dev/tty1 >/dev/tty1 2>&1 &) >/dev/null 2>&1")
    with pytest.raises(WaitTimeout):
        screen.wait_for_text("REPLY", timeout=1)
    screen.send_chars("hello world\n")
    screen.wait_for_text("REPLY HELLO WORLD", timeout=60)
    screen.send_chars("second Line")
    screen.send_key("enter")  # an alias of QEMU's "ret"
    screen.wait_for_text("REPLY SECOND LINE", timeout=60)
    screen.send_key("A")
    assert "sending key 'shift-a'" in log.text  # the key sent, as upstream logs it
