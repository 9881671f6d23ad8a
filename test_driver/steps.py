"""Data-driven test scripts: a JSON document of steps instead of Python.

    {"steps": [
      {"action": "start_all"},
      {"action": "wait_for_unit", "machine": "web", "unit": "nginx.service", "timeout": 60},
      {"name": "fetch", "action": "succeed", "machine": "client", "command": "curl http://web",
       "expect": "Welcome"},
      {"parallel": [{"action": "shutdown", "machine": "web"}, {"action": "shutdown", "machine": "client"}]}
    ]}

A step names a driver action (``start_all``, ``join_all``, ``serial_stdout_on``,
``serial_stdout_off``) or a public Machine method with its ``machine``, and the
method's parameters by their names; ``command`` stands for the commands of
``succeed``/``fail``.  Optional: ``name`` (the step becomes a subtest),
``expect`` (a regex its output must match), and instead of an action
``parallel`` (steps run at once).  Every step is checked against the real
method signatures before any VM starts, so the format cannot drift from the API.
"""

from __future__ import annotations

import datetime
import difflib
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .errors import DriverError, RequestedAssertionFailed
from .machine import BaseMachine, QemuMachine

if TYPE_CHECKING:
    from .driver import Driver

DRIVER_ACTIONS = ("start_all", "join_all", "serial_stdout_on", "serial_stdout_off")
STEP_KEYS = {"action", "machine", "name", "expect", "parallel"}


@dataclass
class Step:
    where: str  # e.g. "steps[2].parallel[0]", for messages
    action: str | None = None
    machine: str | None = None
    name: str | None = None
    expect: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    parallel: list["Step"] = field(default_factory=list)

    def describe(self) -> str:
        what = "parallel steps" if self.parallel else self.action
        return f"{self.where} ({what}{' on ' + self.machine if self.machine else ''})"


def is_steps_document(text: str) -> bool:
    """Whether a testScript is a steps document (JSON with "steps") rather than Python."""
    if not text.lstrip().startswith("{"):
        return False
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(document, dict) and "steps" in document


def machine_methods(kind: type[BaseMachine] = QemuMachine) -> dict[str, Callable[..., Any]]:
    return {name: member for name, member in inspect.getmembers(kind, inspect.isfunction)
            if not name.startswith("_")}


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a JSON value fits a parameter's type hint."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(option, value) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is datetime.timedelta:
        return False  # JSON has numbers of seconds instead
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, list)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return False  # callables and other objects cannot come from JSON


def _type_name(hint: Any) -> str:
    if datetime.timedelta in typing.get_args(hint):
        return "a number of seconds" + (" or null" if type(None) in typing.get_args(hint) else "")
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None").replace("datetime.timedelta", "timedelta")


def _bind(where: str, action: str, method: Callable[..., Any], given: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Check ``given`` against ``method``'s signature; return its positional and keyword arguments."""
    _reject_unknown(where, action, method, given)
    signature = inspect.signature(method)
    hints = typing.get_type_hints(method)
    parameters = [p for p in signature.parameters.values() if p.name != "self"]
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    rest = dict(given)
    for parameter in parameters:
        hint = hints.get(parameter.name, Any)
        if parameter.kind is parameter.VAR_POSITIONAL:  # succeed(*commands): "command" or "commands"
            singular = parameter.name.rstrip("s")
            if singular in rest and parameter.name in rest:
                raise DriverError(f"{where}: give {singular!r} or {parameter.name!r}, not both")
            values = [rest.pop(singular)] if singular in rest else rest.pop(parameter.name, None)
            if not isinstance(values, list) or not values or not all(_accepts(hint, v) for v in values):
                raise DriverError(f"{where}: {action} needs {singular!r} (a string) or {parameter.name!r} "
                                  "(a list of strings)")
            args += values
            continue
        if parameter.kind is parameter.VAR_KEYWORD:
            continue
        if parameter.name not in rest:
            if parameter.default is parameter.empty:
                raise DriverError(f"{where}: {action} needs the parameter {parameter.name!r}")
            continue
        value = rest.pop(parameter.name)
        if not _accepts(hint, value):
            raise DriverError(f"{where}: parameter {parameter.name!r} of {action} must be "
                              f"{_type_name(hint)}, not {json.dumps(value)}")
        kwargs[parameter.name] = value
    return args, kwargs


def _parameter_keys(method: Callable[..., Any]) -> list[str]:
    """The keys a step may give ``method``: its parameters' names, ``command`` or ``commands``
    for ``*commands``."""
    keys: list[str] = []
    for parameter in inspect.signature(method).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            keys += [parameter.name.rstrip("s"), parameter.name]
        elif parameter.name != "self" and parameter.kind is not parameter.VAR_KEYWORD:
            keys.append(parameter.name)
    return keys


def _reject_unknown(where: str, action: str, method: Callable[..., Any], given: dict[str, Any]) -> None:
    """A key that is no parameter of ``method`` (a typo, mostly) is named before anything else."""
    known = _parameter_keys(method)
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, [*known, *sorted(STEP_KEYS)], n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"{action} takes: {', '.join(known) or 'none'}"
            raise DriverError(f"{where}: unknown parameter {key!r} ({hint})")


def parse_step(raw: Any, where: str, machines: dict[str, type[BaseMachine]]) -> Step:
    if not isinstance(raw, dict):
        raise DriverError(f"{where}: a step must be an object, not {json.dumps(raw)}")
    name, expect = raw.get("name"), raw.get("expect")
    if name is not None and not isinstance(name, str):
        raise DriverError(f"{where}: \"name\" must be a string")
    if expect is not None:
        if not isinstance(expect, str):
            raise DriverError(f"{where}: \"expect\" must be a regex string")
        try:
            re.compile(expect)
        except re.error as exc:
            raise DriverError(f"{where}: \"expect\" is not a valid regex: {exc}") from None
    if "parallel" in raw:
        extra = set(raw) - {"parallel", "name"}
        branches = raw["parallel"]
        if extra or not isinstance(branches, list) or not branches:
            raise DriverError(f"{where}: a parallel step holds a non-empty list \"parallel\" "
                              f"(and maybe a \"name\"){', not ' + ', '.join(sorted(extra)) if extra else ''}")
        return Step(where, name=name, parallel=[parse_step(branch, f"{where}.parallel[{i}]", machines)
                                                for i, branch in enumerate(branches)])
    action = raw.get("action")
    if not isinstance(action, str):
        raise DriverError(f"{where}: a step needs an \"action\" (a driver action or a Machine method) "
                          "or \"parallel\"")
    params = {key: value for key, value in raw.items() if key not in STEP_KEYS}
    methods = machine_methods()
    machine = raw.get("machine")
    if action in DRIVER_ACTIONS:
        if machine is not None:
            raise DriverError(f"{where}: {action} is a driver action: it takes no \"machine\"")
        if params:
            raise DriverError(f"{where}: {action} takes no parameters, not {', '.join(sorted(params))}")
        if expect is not None:
            raise DriverError(f"{where}: {action} has no output for \"expect\" to match")
        return Step(where, action, None, name, expect)
    if action not in methods:
        close = difflib.get_close_matches(action, [*DRIVER_ACTIONS, *methods])
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DriverError(f"{where}: unknown action {action!r}{hint}")
    _reject_unknown(where, action, methods[action], params)
    if not isinstance(machine, str) or machine not in machines:
        which = f"unknown machine {machine!r}" if machine is not None else "no \"machine\""
        raise DriverError(f"{where}: {which} for {action} (machines: {', '.join(machines) or 'none'})")
    methods = machine_methods(machines[machine])
    if action not in methods:
        raise DriverError(f"{where}: {action} needs a QEMU machine: {machine!r} is a container")
    args, kwargs = _bind(where, action, methods[action], params)
    returns = typing.get_type_hints(methods[action]).get("return")
    has_output = returns is str or (typing.get_origin(returns) is tuple and str in typing.get_args(returns))
    if expect is not None and not has_output:
        raise DriverError(f"{where}: {action} has no output for \"expect\" to match")
    return Step(where, action, machine, name, expect, args, kwargs)


def parse(text: str, machines: list[str] | dict[str, type[BaseMachine]]) -> list[Step]:
    """The steps of a steps document, every one checked; a ``DriverError`` names the first bad one.
    ``machines``: the machine names, or each name with its kind (QemuMachine by default)."""
    if not isinstance(machines, dict):
        machines = {name: QemuMachine for name in machines}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DriverError(f"the steps document is not JSON: {exc}") from None
    steps = document.get("steps") if isinstance(document, dict) else None
    if not isinstance(steps, list):
        raise DriverError("a steps document is an object with a list \"steps\"")
    extra = set(document) - {"steps"}
    if extra:
        raise DriverError(f"a steps document has only \"steps\", not {', '.join(sorted(extra))}")
    return [parse_step(raw, f"steps[{i}]", machines) for i, raw in enumerate(steps)]


def plan(text: str, machines: dict[str, type[BaseMachine]]) -> Callable[["Driver"], None]:
    """A document checked against ``machines`` (name: class), as what runs it on a driver."""
    parsed = parse(text, machines)
    return lambda driver: run(driver, parsed)


def run(driver: "Driver", steps: list[Step]) -> None:
    for step in steps:
        run_step(driver, step)


def run_step(driver: "Driver", step: Step) -> None:
    if step.name is not None:
        with driver.subtest(step.name):
            _run(driver, step)
    else:
        _run(driver, step)


def _run(driver: "Driver", step: Step) -> None:
    if step.parallel:
        driver.parallel(*[lambda branch=branch: run_step(driver, branch) for branch in step.parallel])
        return
    assert step.action is not None
    if step.machine is None:
        getattr(driver, step.action)()
        return
    machine = next(m for m in driver.machines if m.name == step.machine)
    result = getattr(machine, step.action)(*step.args, **step.kwargs)
    if step.expect is not None:
        output = result[1] if isinstance(result, tuple) else result
        if not isinstance(output, str) or not re.search(step.expect, output):
            raise RequestedAssertionFailed(f"{step.describe()}: the output does not match /{step.expect}/: "
                                           f"{str(output)[-300:]!r}")
