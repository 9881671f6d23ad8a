"""The driver's error hierarchy.

Compatible with upstream's ``test_driver.errors``: everything a testScript can
cause derives from ``TestScriptError`` (the driver prints only the testScript's
own frames for these), and failed requests (``succeed``, ``wait_for_unit``, a
wait that ran out) are ``RequestedAssertionFailed``.

    Exception
     ├─ DriverError                 bad configuration or arguments, found before any VM starts
     └─ TestScriptError             (upstream) the test script failed
         ├─ RequestedAssertionFailed    (upstream) a requested assertion failed
         │   └─ WaitTimeout                 a wait ran out of time; says what, how long, last state
         ├─ GlobalTimeout               the whole test ran past --global-timeout
         └─ MachineError                (upstream) something went wrong with a machine
             ├─ MachineStopped              the machine is not running while a call needed it
             │   ├─ MachineCrashed              it died unexpectedly; carries the post-mortem
             │   └─ UnexpectedShutdown          the guest powered itself off, unasked
             ├─ BackdoorError               the guest's root shell broke the protocol
             └─ QMPError                    the QMP connection failed
                 └─ QMPAPIError                 QEMU answered a QMP command with an error
                                                (also a RuntimeError, as upstream's)

``MachineStopped`` is also a ``ConnectionError``, the base of the
``BrokenPipeError`` that upstream surfaces when a VM dies, so existing
``except ConnectionError`` code keeps working.
"""

from __future__ import annotations

from typing import Any


class DriverError(Exception):
    """Bad input to the driver (arguments, start scripts, test script)."""


class TestScriptError(Exception):
    """The test script failed; only its own stack frames are shown."""

    __test__ = False  # not a pytest test class


class RequestedAssertionFailed(TestScriptError, AssertionError):
    """A requested assertion failed, e.g. ``machine.succeed(...)``.  An AssertionError, as
    upstream's: a script's ``except AssertionError`` catches it."""


class WaitTimeout(RequestedAssertionFailed):
    """A wait ran out of time."""

    def __init__(self, what: str | None, timeout: float, last_state: str | None = None,
                 elapsed: float | None = None) -> None:
        self.what = what
        self.timeout = timeout
        self.last_state = last_state
        self.elapsed = timeout if elapsed is None else elapsed
        # upstream's words first (scripts and log readers match them), then what was awaited
        message = f"action timed out after {self.elapsed:.2f} seconds (timeout={float(timeout)})"
        if what:
            message += f" waiting for {what}"
        if last_state:
            message += f"; last state: {last_state}"
        super().__init__(message)


class PollingConditionError(Exception):
    """An active polling condition did not hold.  A plain Exception, as upstream's (a
    script's ``except RequestedAssertionFailed`` does not catch it); reported as a test
    failure, not as a bug of the driver."""


class GlobalTimeout(TestScriptError):
    """The test ran longer than the global timeout."""


class MachineError(TestScriptError):
    """Something went wrong with a machine."""


class NotForContainers(MachineError, AttributeError):
    """A VM-only method asked of a container: a missing attribute too, as upstream's
    containers lack it (``hasattr`` is False), with the reason when it is called."""


class MachineStopped(MachineError, ConnectionError):
    """The machine is not running while a call needed it."""

    def __init__(self, machine: str, cause: str, post_mortem: Any = None) -> None:
        self.machine = machine
        self.cause = cause
        self.post_mortem = post_mortem
        super().__init__(f"machine {machine!r} {cause}")


class MachineCrashed(MachineStopped):
    """The machine died unexpectedly; ``post_mortem`` says how."""

    def __str__(self) -> str:
        text = super().__str__()
        if self.post_mortem is not None:
            text += "\n" + self.post_mortem.summary()
        return text


class UnexpectedShutdown(MachineStopped):
    """The guest powered itself off (or reset without ``allow_reboot``) while no shutdown
    was asked for: every command fails until the script says it expected it
    (``wait_for_shutdown()``) or starts the machine again."""


class BackdoorError(MachineError):
    """The guest's root shell sent something the protocol does not allow."""


class QMPError(MachineError):
    """The QMP connection failed or was closed."""


class QMPAPIError(QMPError, RuntimeError):
    """QEMU answered a QMP command with an error (``message``, the whole answer).

    As upstream's: a ``RuntimeError`` with ``class_name``, ``description`` and
    ``transaction_id`` (the command's id; ``None`` for one sent without, as ``send`` does).
    """

    def __init__(self, message: dict[str, Any], command: str | None = None) -> None:
        self.error: dict[str, Any] = message.get("error") or {}
        self.class_name: str = self.error.get("class", "")
        self.description: str = self.error.get("desc", "")
        self.transaction_id: Any = message.get("id")
        self.command = command
        super().__init__(f"<QMP API error related to transaction {self.transaction_id} "
                         f"[{self.class_name}]: {self.description}>")
        if command is not None:
            self.add_note(f"(the QMP command {command!r})")
