"""One self-contained HTML page of a run, made from its JSON events (``--json-log``).

The driver writes the page at the end of every run it lives through (``--html-report``),
and ``nixos-test-driver-report EVENTS.jsonl -o report.html`` makes the same page later
from a saved event log.  The page needs nothing from the network: styles are inline,
screenshots are embedded as data URIs, and the timeline is inline SVG.  Jinja2 renders it
with autoescaping on, so guest output can never become markup.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jinja2

CLIP = 2000
"""Characters of a command's output shown before the rest is folded away."""
CONTEXT = 3
"""Lines of the test script shown around the failing one."""
WIDTH = 1000
"""Width of the timeline's drawing area, in SVG units."""


@dataclass
class Node:
    """One entry of the log tree: a nested block, a subtest, a command or a line."""

    kind: str  # "nest", "subtest", "command", "line", "error"
    title: str
    start: float
    id: int
    machine: str | None = None
    end: float | None = None
    status: str | None = None  # passed/failed for subtests, the exit status for commands
    output: str = ""
    output_chars: int = 0
    image: str | None = None  # a data URI
    children: list["Node"] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else self.start) - self.start

    @property
    def failed(self) -> bool:
        if self.kind == "command":  # -1, -2: check_return/check_output off; None: the call raised
            return self.status not in ("0", "-1", "-2")
        return self.status == "failed" or self.kind == "error"


@dataclass
class Span:
    """A bar of the timeline."""

    lane: str
    start: float
    end: float
    label: str
    css: str
    target: int


@dataclass
class Run:
    """What the page shows, read from the events."""

    script: str = ""
    source: list[str] = field(default_factory=list)
    machines: list[str] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    end_event: dict[str, Any] = field(default_factory=dict)
    root: Node = field(default_factory=lambda: Node("root", "run", 0.0, 0))
    spans: list[Span] = field(default_factory=list)
    markers: list[Span] = field(default_factory=list)
    serial: dict[str, list[str]] = field(default_factory=dict)
    watch_run: int | None = None
    """The number of the run in a ``--watch`` session."""
    files: list[tuple[str, str, int]] = field(default_factory=list)
    """What the run left in the output directory: (link, name, bytes)."""

    @property
    def subtests(self) -> list[tuple[str, Node]]:
        """Every subtest, nested ones too, as (its path, its node), in order."""
        found: list[tuple[str, Node]] = []

        def walk(node: Node, path: list[str]) -> None:
            for child in node.children:
                if child.kind == "subtest":
                    found.append((" › ".join([*path, child.title]), child))
                walk(child, [*path, child.title] if child.kind == "subtest" else path)
        walk(self.root, [])
        return found

    @property
    def verdict(self) -> str:
        return str(self.end_event.get("verdict", "unfinished (the driver was killed)"))

    @property
    def verdict_class(self) -> str:
        """The verdict as a CSS class: passed, failed, error, interrupted, timed-out, unfinished."""
        return self.verdict.split(" (")[0].replace(" ", "-")

    @property
    def bars(self) -> list[Span]:
        """The timeline's bars, drawn in this order: waits first, commands on top of them."""
        return sorted(self.spans, key=lambda span: span.css != "wait") + self.markers

    @property
    def lanes(self) -> list[str]:
        return ["script", *self.machines]

    def failing_source(self) -> list[tuple[int, str, bool]]:
        """The lines around the script's last failing frame: (number, text, is_the_failing_one)."""
        frames = self.end_event.get("frames") or []
        if not frames or not self.source:
            return []
        line = int(frames[-1]["line"])
        first, last = max(1, line - CONTEXT), min(len(self.source), line + CONTEXT)
        return [(n, self.source[n - 1], n == line) for n in range(first, last + 1)]


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a JSON log; a last line cut by a killed driver is skipped."""
    events = []
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"nixos-test-driver-report: skipping line {number} of {path}: not JSON", file=sys.stderr)
    return events


def _data_uri(path: Path) -> str | None:
    try:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return None


def build(events: Iterable[dict[str, Any]], out_dir: Path) -> Run:
    """The page's model from the events, in order."""
    run = Run()
    stack = [run.root]
    ids = iter(range(1, 1 << 62))
    for event in events:
        kind, now = event.get("kind"), float(event.get("time", 0.0))
        if not run.start:
            run.start = now
        run.end = max(run.end, now)
        machine = event.get("machine")
        if machine and machine not in run.machines:
            run.machines.append(machine)
        top = stack[-1]
        if kind == "run-start":
            run.script, run.source = event.get("script", ""), str(event.get("source", "")).splitlines()
            run.machines += [m for m in event.get("machines", []) if m not in run.machines]
            run.watch_run = event.get("watch_run")
        elif kind == "run-end":
            run.end_event = event
        elif kind in ("nest-start", "subtest-start"):
            subtest = kind == "subtest-start"
            node = Node("subtest" if subtest else "nest", event.get("name" if subtest else "message", ""),
                        now, next(ids), machine)
            if event.get("image"):
                node.image = _data_uri(out_dir / event["image"])
            top.children.append(node)
            stack.append(node)
        elif kind in ("nest-end", "subtest-end") and len(stack) > 1:
            node = stack.pop()
            node.end = now
            if kind == "subtest-end":
                node.status = event.get("status")
                run.spans.append(Span("script", node.start, now, f"subtest {node.title}: {node.status}",
                                      "fail" if node.status == "failed" else "pass", node.id))
            elif machine and node.title.startswith("waiting for"):
                run.spans.append(Span(machine, node.start, now, f"{node.title} ({node.seconds:.2f} s)",
                                      "wait", node.id))
        elif kind == "command":
            seconds = float(event.get("seconds") or 0.0)
            node = Node("command", event.get("command", ""), now - seconds, next(ids), machine, now,
                        str(event.get("status")), event.get("output", ""), int(event.get("output_chars", 0)))
            top.children.append(node)
            run.spans.append(Span(machine or "script", node.start, now,
                                  f"{node.title} (status {node.status}, {seconds:.2f} s)",
                                  "cmdfail" if node.failed else "cmd", node.id))
        elif kind == "connected":
            node = Node("line", f"{machine}: connected to the guest's shell", now, next(ids), machine, now)
            top.children.append(node)
            run.spans.append(Span(machine or "script", now - float(event.get("seconds") or 0.0), now,
                                  f"boot ({float(event.get('seconds') or 0.0):.2f} s)", "boot", node.id))
        elif kind in ("crash", "restart"):
            text = f"{machine}: {kind}: {event.get('cause') or event.get('restart') or ''}"
            node = Node("error", text, now, next(ids), machine, now)
            top.children.append(node)
            run.markers.append(Span(machine or "script", now, now, text, "crash", node.id))
        elif kind == "serial":
            run.serial.setdefault(machine or "?", []).append(str(event.get("line", "")))
        elif kind in ("log", "test-error"):
            message = str(event.get("message", ""))
            error = kind == "test-error" or event.get("level") == "error"
            top.children.append(Node("error" if error else "line",
                                     f"{machine}: {message}" if machine else message, now, next(ids), machine, now))
    for node in stack[1:]:  # blocks a killed driver never closed
        node.end = run.end
    return run


def render(run: Run) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True)
    duration = max(run.end - run.start, 1e-6)

    def x(t: float) -> float:
        return round((t - run.start) / duration * WIDTH, 2)

    def w(span: Span) -> float:
        return max(round((span.end - span.start) / duration * WIDTH, 2), 1.0)

    return environment.get_template("report.html.j2").render(run=run, x=x, w=w, width=WIDTH, clip=CLIP)


def output_files(out_dir: Path, page: Path, limit: int = 200) -> list[tuple[str, str, int]]:
    """The files in the output directory (screenshots, post-mortems, copied files, logs), as
    links relative to the page; hidden ones and the page itself left out."""
    found = []
    for path in sorted(out_dir.rglob("*")):
        relative = path.relative_to(out_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file() \
                or path.resolve() == page.resolve() or path.name.endswith(".partial"):
            continue
        found.append((os.path.relpath(path, page.parent), str(relative), path.stat().st_size))
        if len(found) == limit:
            break
    return found


def write_report(events: Path, target: Path, out_dir: Path) -> None:
    """Render the page of the run whose events are in ``events`` to ``target``; screenshots
    are looked up in ``out_dir``, whose files the page lists."""
    run = build(read_events(events), out_dir)
    run.files = output_files(out_dir, target)
    page = render(run)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nixos-test-driver-report",
                                     description="Make the HTML page of a run from its JSON event log.")
    parser.add_argument("events", type=Path, help="the run's --json-log")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"), help="the page to write")
    parser.add_argument("--screenshots", type=Path, metavar="DIR",
                        help="where the run's screenshots are (default: the event log's directory)")
    args = parser.parse_args(argv)
    if not args.events.is_file():
        parser.error(f"no event log at {args.events}")
    write_report(args.events, args.output, args.screenshots or args.events.parent)


if __name__ == "__main__":
    main()
