"""nixpkgs' nixos-test-driver/polling_condition.py (common.py first; one minimal VM as
``machine``; nixpkgs skips its type check).  Our tiny guest stands in for the VM.

What it asserts: a condition that returns False, or raises (here a failing ``succeed``
inside it), fails the command run under it with "Polling condition failed: NAME" (the
function's name); a condition that returns None or True, or has a description (given,
or its docstring), lets commands run; ``.condition.description`` is that description.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
with subtest("Failures"):
    @polling_condition
    def polling_condition_always_false():
        return False

    @polling_condition
    def polling_condition_raises():
        machine.succeed("false")

    for condition in [polling_condition_always_false, polling_condition_raises]:
        with must_raise(f"Polling condition failed: {condition.condition.description}"):
            with condition:
                machine.succeed("true")

with subtest("Successes"):
    @polling_condition
    def polling_condition_simple():
        machine.succeed("true")

    @polling_condition
    def polling_condition_always_true():
        return True

    @polling_condition(description="This is a description")
    def polling_condition_explicit_description():
        pass

    @polling_condition
    def polling_condition_docstring_description():
        "This is a description"
        pass

    assert polling_condition_explicit_description.condition.description == "This is a description"
    assert polling_condition_docstring_description.condition.description == "This is a description"
    for condition in [polling_condition_simple, polling_condition_always_true,
                      polling_condition_explicit_description, polling_condition_docstring_description]:
        with condition:
            machine.succeed("true")
print("POLLING-CONDITION PASSED")
'''


def test_polling_condition_py(nixos_test):
    run = nixos_test(SCRIPT, {"basic": Node("tiny")}, common=True).check()
    assert "POLLING-CONDITION PASSED" in run.stdout
