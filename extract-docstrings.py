#!/usr/bin/env python3
"""Write the Markdown reference of the Machine methods, from their docstrings.

    python3 extract-docstrings.py [FILE.py ...] > machine-api.md

The files (by default the machine modules: ``SOURCES``) are read as source (with ``ast``,
nothing is imported): every public method of ``BaseMachine``, the mixins and
``QemuMachine`` gets a heading with its signature and its docstring, sorted by name; a
method defined twice is taken from the later class.  A public method without a docstring is an error (exit 1), so
the manual never has an empty entry.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
MACHINE = HERE / "test_driver" / "machine"
SOURCES = [MACHINE / name for name in ("base.py", "supervised.py", "session.py", "display.py", "x11.py", "uefi.py",
                                        "files.py", "tty.py", "qemu_interfaces.py", "qemu.py")]
"""The modules of ``QemuMachine``: its bases, its mixins (the backdoor session, screen and keys, X11,
UEFI variables, files, virtual terminals, QEMU's own interfaces), itself."""
CLASSES = ("BaseMachine", "SupervisedMachine", "BackdoorSession", "Display", "X11", "UefiVariables", "HostFiles",
           "VirtualTerminals", "QemuInterfaces", "QemuMachine")


def signature(func: ast.FunctionDef) -> str:
    return f"{func.name}({re.sub(r'^self(, )?', '', ast.unparse(func.args))})"


def methods(paths: list[Path]) -> dict[str, tuple[str, str | None]]:
    """``{name: (signature, docstring)}`` of the public methods; later classes win."""
    found: dict[str, tuple[str, str | None]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for cls in (node for node in tree.body if isinstance(node, ast.ClassDef) and node.name in CLASSES):
            for func in cls.body:
                if isinstance(func, ast.FunctionDef) and not func.name.startswith("_"):
                    if any(isinstance(d, ast.Name) and d.id == "property" for d in func.decorator_list):
                        continue
                    found[func.name] = (signature(func), ast.get_docstring(func))
    return found


def markdown(found: dict[str, tuple[str, str | None]]) -> str:
    out = ["# Machine objects", "",
           "The methods of each machine of a test (`machine.succeed(...)` and so on).", ""]
    for name in sorted(found):
        sig, doc = found[name]
        out += [f"## `{sig}` {{#test-opt-machine-{name.replace('_', '-')}}}", "",
                textwrap.dedent(doc or "").strip(), ""]
    return "\n".join(out)


def main() -> None:
    paths = [Path(arg) for arg in sys.argv[1:]] or SOURCES
    found = methods(paths)
    undocumented = sorted(name for name, (_, doc) in found.items() if not doc)
    if undocumented:
        sys.exit(f"extract-docstrings: public methods without a docstring: {', '.join(undocumented)}")
    sys.stdout.write(markdown(found))


if __name__ == "__main__":
    main()
