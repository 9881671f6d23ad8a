"""The QEMU human monitor client against a fake monitor (a Stream fed by hand)."""

from __future__ import annotations

from test_driver.deadline import Deadline
from test_driver.protocol.monitor import Monitor
from test_driver.protocol.stream import Stream


def test_answers_end_with_the_prompt_as_upstreams():
    """nixpkgs' low_level test: `"(qemu)" in machine.send_monitor_command("help")`."""
    stream = Stream("monitor")
    sent: list[bytes] = []

    def send(data: bytes) -> None:
        sent.append(data)
        stream.feed(b"info status\r\nVM status: running\r\n(qemu) ")

    monitor = Monitor(stream, send)
    stream.feed(b"QEMU 8.2.0 monitor - type 'help' for more information\r\n(qemu) ")
    assert monitor.wait_for_prompt(Deadline(5)).endswith("more information\r\n(qemu) ")
    assert monitor.command("info status", Deadline(5)) == "info status\r\nVM status: running\r\n(qemu) "
    assert sent == [b"info status\n"]
