"""Steps documents are checked against the real Machine API before anything runs."""

import json

import pytest

from test_driver.errors import DriverError
from test_driver.steps import is_steps_document, parse


def doc(*steps) -> str:
    return json.dumps({"steps": list(steps)})


def test_a_valid_document():
    steps = parse(doc({"action": "start_all"},
                      {"name": "fetch", "action": "succeed", "machine": "a", "command": "echo hi",
                       "timeout": 5, "expect": "h."},
                      {"action": "wait_until_succeeds", "machine": "b", "command": "true", "timeout": 30},
                      {"parallel": [{"action": "shutdown", "machine": "a"}, {"action": "shutdown", "machine": "b"}]}),
                  ["a", "b"])
    assert [s.action for s in steps[:3]] == ["start_all", "succeed", "wait_until_succeeds"]
    assert steps[1].args == ["echo hi"] and steps[1].kwargs == {"timeout": 5} and steps[1].name == "fetch"
    assert steps[2].args == [] and steps[2].kwargs == {"command": "true", "timeout": 30}
    assert [b.machine for b in steps[3].parallel] == ["a", "b"]


@pytest.mark.parametrize("step, message", [
    ({"action": "wait_for_unti", "machine": "a", "unit": "x"},
     "steps[0]: unknown action 'wait_for_unti'; did you mean wait_for_unit"),
    ({"action": "succeed", "machine": "zz", "command": "true"}, "steps[0]: unknown machine 'zz' for succeed (machines: a, b)"),
    ({"action": "succeed", "command": "true"}, "steps[0]: no \"machine\" for succeed"),
    ({"action": "wait_for_unit", "machine": "a"}, "steps[0]: wait_for_unit needs the parameter 'unit'"),
    ({"action": "wait_for_unit", "machine": "a", "unit": "x", "colour": 1},
     "steps[0]: unknown parameter 'colour' (wait_for_unit takes: unit, user, timeout)"),
    ({"action": "succeed", "machine": "a", "comand": "true"},
     "steps[0]: unknown parameter 'comand' (did you mean 'command'?)"),
    ({"action": "wait_for_unit", "machine": "a", "unti": "x"},
     "steps[0]: unknown parameter 'unti' (did you mean 'unit'?)"),
    ({"action": "succeed", "machne": "a", "command": "true"},
     "steps[0]: unknown parameter 'machne' (did you mean 'machine'?)"),
    ({"action": "wait_for_unit", "machine": "a", "unit": 5}, "parameter 'unit' of wait_for_unit must be str, not 5"),
    ({"action": "wait_for_unit", "machine": "a", "unit": "x", "timeout": "soon"},
     "parameter 'timeout' of wait_for_unit must be a number of seconds, not \"soon\""),
    ({"action": "succeed", "machine": "a"}, "succeed needs 'command' (a string) or 'commands'"),
    ({"action": "wait_for_unit", "machine": "a", "unit": "x", "expect": "y"},
     "wait_for_unit has no output for \"expect\" to match"),
    ({"action": "succeed", "machine": "a", "command": "x", "expect": "("}, "\"expect\" is not a valid regex"),
    ({"action": "start_all", "machine": "a"}, "start_all is a driver action: it takes no \"machine\""),
    ({"action": "wait_for_qmp_event", "machine": "a", "event_filter": "x"},
     "parameter 'event_filter' of wait_for_qmp_event must be Callable"),
    ({"parallel": []}, "steps[0]: a parallel step holds a non-empty list \"parallel\""),
    ({"parallel": [{"action": "succeed", "machine": "a", "command": 1}]},
     "steps[0].parallel[0]: succeed needs 'command' (a string)"),
    ({"machine": "a"}, "steps[0]: a step needs an \"action\""),
    ("start_all", "steps[0]: a step must be an object"),
])
def test_each_mistake_is_named(step, message):
    with pytest.raises(DriverError) as info:
        parse(doc(step), ["a", "b"])
    assert message in str(info.value)


def test_documents_and_python_are_told_apart():
    assert is_steps_document(doc({"action": "start_all"}))
    assert not is_steps_document("start_all()\n")
    assert not is_steps_document("{'steps': []}  # a Python dict, not JSON\n")
    with pytest.raises(DriverError, match="has only \"steps\""):
        parse(json.dumps({"steps": [], "extra": 1}), [])


def test_a_container_step_is_checked_against_the_container_api():
    from test_driver.machine import NspawnMachine, QemuMachine

    kinds = {"vm": QemuMachine, "box": NspawnMachine}
    assert parse(doc({"action": "wait_for_unit", "machine": "box", "unit": "x"}), kinds)[0].machine == "box"
    with pytest.raises(DriverError, match="steps\\[0\\]: screenshot needs a QEMU machine: 'box' is a container"):
        parse(doc({"action": "screenshot", "machine": "box", "filename": "x"}), kinds)
