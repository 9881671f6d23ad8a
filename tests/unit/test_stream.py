import re
import threading
import time

import pytest

from test_driver.deadline import Deadline
from test_driver.errors import MachineStopped, WaitTimeout
from test_driver.protocol.stream import Stream, StreamEOF


def test_expect_consumes_through_the_match():
    s = Stream("t")
    s.feed(b"abc KEY 12\nrest")
    before, match = s.expect(re.compile(rb"KEY (\d+)\n"), Deadline(1), "key")
    assert before == b"abc " and match[1] == b"12"
    s.feed(b"\0next")
    assert s.read_until(b"\0", Deadline(1), "rest") == b"rest"
    assert bytes(s.buf) == b"next"


def test_match_split_across_feeds_is_found():
    s = Stream("t")
    pattern = re.compile(rb"Spawning backdoor")
    threading.Timer(0.05, s.feed, [b"xx Spawn"]).start()
    threading.Timer(0.1, s.feed, [b"ing backdoor"]).start()
    before, _ = s.expect(pattern, Deadline(2), "greeting")
    assert before == b"xx "


def test_timeout_names_what_and_last_bytes():
    s = Stream("t")
    s.feed(b"boot boot boot")
    with pytest.raises(WaitTimeout, match=r"after 0.2\d seconds \(timeout=0.2\) waiting for the thing.*boot boot"):
        s.expect(re.compile(rb"never"), Deadline(0.2), "the thing")


def test_eof_is_distinct_from_timeout():
    s = Stream("t")
    s.feed(b"partial")
    s.feed_eof()
    with pytest.raises(StreamEOF):
        s.expect(re.compile(rb"never"), Deadline(10), "x")
    with pytest.raises(StreamEOF):
        s.read_until(b"\0", Deadline(10), "x")


def test_fail_wakes_a_blocked_waiter_at_once():
    s = Stream("t")
    threading.Timer(0.1, s.fail, [MachineStopped("m", "crashed: test")]).start()
    start = time.monotonic()
    with pytest.raises(MachineStopped):
        s.read_until(b"\0", Deadline(30), "x")
    assert time.monotonic() - start < 5


def test_read_until_finds_a_delimiter_split_across_feeds_and_searches_once():
    s = Stream("t")
    threading.Timer(0.05, s.feed, [b"x" * 100_000 + b"<E"]).start()
    threading.Timer(0.1, s.feed, [b"ND>tail"]).start()
    assert s.read_until(b"<END>", Deadline(2), "end") == b"x" * 100_000
    assert bytes(s.buf) == b"tail"
    with pytest.raises(WaitTimeout, match=r"4 bytes without the end b'<END>'"):
        s.read_until(b"<END>", Deadline(0.1), "end")
