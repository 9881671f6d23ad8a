"""The QMP client against a fake QEMU on a socketpair."""

import json
import socket
import threading
import time

import pytest

from test_driver.deadline import Deadline
from test_driver.errors import MachineError, QMPAPIError, QMPError, WaitTimeout
from test_driver.protocol.qmp import QMPClient


class FakeQEMU:
    """Reads commands, answers through ``respond`` (default: a plain ``return``)."""

    def __init__(self, respond=None):
        self.client_sock, self.server = socket.socketpair()
        self.client = QMPClient(self.client_sock.sendall, "fake")
        self.respond = respond or (lambda cmd: {"return": {}, "id": cmd["id"]})
        self.commands = []
        threading.Thread(target=self._client_reader, daemon=True).start()
        threading.Thread(target=self._server, daemon=True).start()

    def _client_reader(self):
        try:
            while data := self.client_sock.recv(65536):
                self.client.feed(data)
        except OSError:
            pass
        self.client.feed_eof()

    def _server(self):
        self.send({"QMP": {"version": {}, "capabilities": []}})
        buf = b""
        try:
            while data := self.server.recv(65536):
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    cmd = json.loads(line)
                    self.commands.append(cmd)
                    reply = self.respond(cmd)
                    if reply is not None:
                        self.send(reply)
        except OSError:
            pass

    def send(self, message):
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.server.sendall(data)

    def close(self):
        self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()


def test_handshake_and_command():
    qemu = FakeQEMU(lambda c: {"return": {"status": "running"}, "id": c["id"]})
    qemu.client.handshake(Deadline(5))
    assert qemu.client.command("query-status") == {"status": "running"}
    assert [c["execute"] for c in qemu.commands] == ["qmp_capabilities", "query-status"]


def test_replies_routed_by_id_out_of_order():
    held = []

    def respond(cmd):
        if cmd["execute"] == "slow":
            held.append(cmd)
            return None
        reply = {"return": cmd["execute"], "id": cmd["id"]}
        if held:  # answer the slow one after the fast one
            qemu.send(reply)
            return {"return": "slow", "id": held.pop()["id"]}
        return reply

    qemu = FakeQEMU(respond)
    qemu.client.handshake(Deadline(5))
    results = {}
    t = threading.Thread(target=lambda: results.update(slow=qemu.client.command("slow")))
    t.start()
    while not held:
        time.sleep(0.01)
    assert qemu.client.command("fast") == "fast"
    t.join(5)
    assert results == {"slow": "slow"}


def test_error_reply_raises_api_error():
    qemu = FakeQEMU(lambda c: {"error": {"class": "GenericError", "desc": "nope"}, "id": c["id"]}
                    if c["execute"] == "bad" else {"return": {}, "id": c["id"]})
    qemu.client.handshake(Deadline(5))
    with pytest.raises(QMPAPIError, match=r"\[GenericError\]: nope") as info:
        qemu.client.command("bad")
    assert info.value.__notes__ == ["(the QMP command 'bad')"]


def test_events_kept_and_awaited():
    qemu = FakeQEMU()
    qemu.client.handshake(Deadline(5))
    qemu.send({"event": "RESET", "data": {}, "timestamp": {}})
    since = None
    threading.Timer(0.1, qemu.send, [{"event": "SHUTDOWN", "data": {"reason": "guest-shutdown"}}]).start()
    _, event = qemu.client.wait_event(lambda e: e["event"] == "SHUTDOWN", timeout=5, since=since)
    assert event["data"]["reason"] == "guest-shutdown"
    assert [e["event"] for e in qemu.client.recent()] == ["RESET", "SHUTDOWN"]


def test_event_wait_times_out_with_last_events():
    qemu = FakeQEMU()
    qemu.client.handshake(Deadline(5))
    qemu.send({"event": "STOP"})
    time.sleep(0.05)
    with pytest.raises(WaitTimeout, match="STOP"):
        qemu.client.wait_event(lambda e: e["event"] == "RESUME", timeout=0.2)


def test_malformed_message_fails_pending_call_and_reader_goes_on():
    qemu = FakeQEMU(lambda c: b'{"return": {truncated\n' if c["execute"] == "broken"
                    else {"return": 42, "id": c["id"]})
    qemu.client.handshake(Deadline(5))
    with pytest.raises(QMPError, match="malformed"):
        qemu.client.command("broken", timeout=5)
    assert qemu.client.command("fine") == 42


def test_disconnect_wakes_every_pending_call():
    qemu = FakeQEMU(lambda c: None if c["execute"] == "hang" else {"return": {}, "id": c["id"]})
    qemu.client.handshake(Deadline(5))
    errors = []

    def call():
        try:
            qemu.client.command("hang", timeout=60)
        except QMPError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    start = time.monotonic()
    qemu.close()
    for t in threads:
        t.join(5)
    assert len(errors) == 3 and time.monotonic() - start < 2
    with pytest.raises(QMPError):
        qemu.client.command("anything")


def test_event_storm_keeps_bounded_history():
    qemu = FakeQEMU()
    qemu.client.handshake(Deadline(5))
    qemu.send(b"".join(json.dumps({"event": "X", "n": i}).encode() + b"\n" for i in range(5000)))
    qemu.send({"event": "LAST"})
    qemu.client.wait_event(lambda e: e["event"] == "LAST", timeout=5, since=0)
    assert len(qemu.client.history) == QMPClient.HISTORY
    assert qemu.client.command("still-answers") == {}


def answer(cmd, reply):
    """``reply`` to ``cmd``, with its id if it had one (as QEMU does)."""
    return {**reply, "id": cmd["id"]} if "id" in cmd else reply


def test_upstream_names_send_and_module_path():
    from test_driver.machine.qmp import QMPAPIError as UpstreamPathError, QMPSession

    assert UpstreamPathError is QMPAPIError and QMPSession is QMPClient
    qemu = FakeQEMU(lambda c: answer(c, {"error": {"class": "GenericError", "desc": "nope"}}
                                     if c["execute"] == "bad" else {"return": {"echo": c.get("arguments")}}))
    qemu.client.handshake(Deadline(5))
    assert qemu.client.send("ok", {"a": 1}) == {"return": {"echo": {"a": 1}}}
    with pytest.raises(UpstreamPathError, match="nope"):
        qemu.client.send("bad")


def test_send_is_upstreams_a_command_without_id_and_the_whole_reply():
    """As nixpkgs' qmp-api-error test: an unknown command raises QMPAPIError (a RuntimeError, as
    upstream, and a MachineError, as ours) with class_name, description and no transaction id."""
    not_found = {"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}
    qemu = FakeQEMU(lambda c: answer(c, not_found if c["execute"] == "nope" else {"return": {"status": "running"}}))
    qemu.client.handshake(Deadline(5))
    assert qemu.client.send("query-status") == {"return": {"status": "running"}}
    with pytest.raises(QMPAPIError) as info:
        qemu.client.send("nope")
    error = info.value
    assert (error.class_name, error.description, error.transaction_id) == (
        "CommandNotFound", "The command nope has not been found", None)
    assert isinstance(error, RuntimeError) and isinstance(error, MachineError)
    assert str(error) == "<QMP API error related to transaction None [CommandNotFound]: The command nope has not been found>"
    assert qemu.commands[1:] == [{"execute": "query-status"}, {"execute": "nope"}]
    assert qemu.client.command("query-status") == {"status": "running"}  # ours: an id, the return value
    with pytest.raises(QMPAPIError) as info:
        qemu.client.command("nope")
    assert info.value.transaction_id == qemu.commands[-1]["id"]


def test_a_reply_without_id_goes_to_send_while_commands_with_ids_wait():
    held = []

    def respond(cmd):
        if cmd["execute"] == "slow":
            held.append(cmd)
            return None
        if held:  # answer send's command, then the held one
            qemu.send(answer(cmd, {"return": "fast"}))
            return {"return": "slow", "id": held.pop()["id"]}
        return answer(cmd, {"return": {}})

    qemu = FakeQEMU(respond)
    qemu.client.handshake(Deadline(5))
    results = {}
    t = threading.Thread(target=lambda: results.update(slow=qemu.client.command("slow")))
    t.start()
    while not held:
        time.sleep(0.01)
    assert qemu.client.send("fast") == {"return": "fast"}
    t.join(5)
    assert results == {"slow": "slow"}


def test_upstreams_event_queue_calls():
    """Upstream's QMPSession: pending_events (a Queue), wait_for_event, events(), read_pending_messages."""
    qemu = FakeQEMU()
    qemu.client.handshake(Deadline(5))
    qemu.client.read_pending_messages()  # nothing to do, as nothing is left unread
    qemu.send({"event": "STOP"})
    qemu.send({"event": "RESUME"})
    assert qemu.client.wait_for_event()["event"] == "STOP"
    threading.Timer(0.2, qemu.send, [{"event": "RESET"}]).start()
    assert qemu.client.wait_for_event()["event"] == "RESUME"
    assert qemu.client.wait_for_event()["event"] == "RESET"  # waits for it
    qemu.send({"event": "A"})
    qemu.send({"event": "B"})
    deadline = time.monotonic() + 5
    while qemu.client.pending_events.qsize() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e["event"] for e in qemu.client.events()] == ["A", "B"]
    assert qemu.client.pending_events.empty()
    threading.Timer(0.2, qemu.close).start()
    with pytest.raises(QMPError, match="connection closed"):
        qemu.client.wait_for_event()  # a connection that ends wakes the wait
