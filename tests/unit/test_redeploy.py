"""``rebuild()`` (test_driver/redeploy.py) without booting anything: machines that were never
started, real VLAN switches.  What changes and what stays, for both ways the driver gets its
configuration, and bad input that leaves everything as it was."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from test_driver.cli import parse_arguments, what_to_run
from test_driver.driver import Driver
from test_driver.logger import CompositeLogger, TerminalLogger
from test_driver.redeploy import RebuildError, Redeployer, Source

DRIVER = f"{sys.executable} -m test_driver.cli_main"


def start_script(path: Path, tag: str) -> str:
    path.write_text(f"#!/bin/sh\n# {tag}\nexit 1\n")
    path.chmod(0o755)
    return str(path)


def build(root: Path, name: str, machines: dict[str, str], vlans: list[int], script: str) -> Path:
    """A build: ``machines`` (name -> start script, "" for one of its own), the configuration
    JSON, the test script and a ``bin/nixos-test-driver`` wrapper setting the older variables."""
    out = root / name
    out.mkdir()
    vms = {m: {"name": m, "start_script": path or start_script(out / f"run-{m}-vm", name)}
           for m, path in machines.items()}
    (out / "test-script").write_text(script)
    (out / "driver-configuration.json").write_text(json.dumps(
        {"vms": vms, "vlans": vlans, "test_script": str(out / "test-script")}))
    wrapper = out / "bin" / "nixos-test-driver"
    wrapper.parent.mkdir()
    variables = " ".join(f"{k}='{v}'" for k, v in older_variables(out).items())
    wrapper.write_text(f'#!/bin/sh\nexport {variables}\nexec {DRIVER} "$@"\n')
    wrapper.chmod(0o755)
    return out


def older_variables(out: Path) -> dict[str, str]:
    """A build's machines, VLANs and script as the older framework's wrapper sets them."""
    config = json.loads((out / "driver-configuration.json").read_text())
    return {"startScripts": " ".join(vm["start_script"] for vm in config["vms"].values()),
            "vlans": " ".join(map(str, config["vlans"])), "testScript": config["test_script"]}


class Session:
    """A driver started as the CLI starts it, its shell namespace and its ``rebuild``."""

    def __init__(self, root: Path, argv: list[str], environ: dict[str, str], exe: str | None = None) -> None:
        self.log = io.StringIO()
        run = what_to_run(parse_arguments([_from(root, a) for a in argv], environ))
        self.driver = Driver(run.start_scripts, run.vlans, run.script.read_text(), root,
                             CompositeLogger([TerminalLogger(self.log, colour=False, live=False)]),
                             test_script_path=str(run.script), machine_names=run.machine_names)
        self.namespace = self.driver.test_symbols()
        self.rebuild = Redeployer(self.driver, self.namespace, Source(argv, environ, str(root), exe)).rebuild

    def state(self) -> dict[str, Any]:
        d = self.driver
        return {"machines": list(d.machines), "vlans": list(d.vlans), "tests": d.tests, "script": d.script,
                "namespace": dict(self.namespace), "config": d.config}


def _from(root: Path, arg: str) -> str:
    return str(root / arg) if arg.startswith("result/") else arg


@pytest.fixture
def root(tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """build0 (dud, db, machine; VLANs 1 2) and build1 (db as before, machine changed, web new;
    VLANs 1 3); ``result`` -> build0."""
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    db = start_script(shared / "run-db-vm", "shared")
    build(tmp_path, "build0", {"dud": "", "db": db, "machine": ""}, [1, 2], "start_all()  # 0\n")
    build(tmp_path, "build1", {"db": db, "machine": "", "web": ""}, [1, 3], "start_all()  # 1\n")
    (tmp_path / "result").symlink_to("build0")
    return tmp_path


@pytest.fixture(params=["config", "env"])
def session(request: pytest.FixtureRequest, root: Path) -> Iterator[Session]:
    """The driver started with ``--config result/...`` (read again by rebuild), or by the
    older variables with ``rebuildExe`` (rebuild asks the new wrapper)."""
    if request.param == "config":
        s = Session(root, ["--config", "result/driver-configuration.json"], {})
    else:
        s = Session(root, [], older_variables(root / "result"), exe="./result/bin/nixos-test-driver")
    yield s
    s.driver.cleanup()


def test_changed_machines_are_replaced_removed_ones_stopped_new_ones_added(session: Session, root: Path):
    before = session.state()
    old = {m.name: m for m in before["machines"]}
    vlan1, vlan2 = before["vlans"]
    session.rebuild(f"ln -sfn build1 {root}/result")
    d, ns = session.driver, session.namespace
    assert [m.name for m in d.machines] == ["db", "machine", "web"]
    assert d.machines[0] is old["db"] and ns["db"] is old["db"], "an unchanged machine stays as it is"
    assert d.machines[1] is not old["machine"] and ns["machine"] is d.machines[1]
    assert str(d.machines[1].start_command.command) == str(root / "build1" / "run-machine-vm")
    assert ns["web"] is d.machines[2] and not d.machines[2].booted, "new machines are not started"
    assert "dud" not in ns and "vlan2" not in ns and ns["vlan3"] is d.vlans[1]
    assert [v.nr for v in d.vlans] == [1, 3] and d.vlans[0] is vlan1 and ns["machines"] is d.machines
    assert vlan2.process.poll() is not None, "a VLAN no longer in the test is stopped"
    assert vlan1.process.poll() is None and d.vlans[1].process.poll() is None
    assert d.tests == "start_all()  # 1\n" and d.test_script_path == str(root / "build1" / "test-script")
    assert list(d.config.vms) == ["db", "machine", "web"] and d.config.vlans == [1, 3]
    assert d.machines[1].extra_env == {**vlan1.env, **d.vlans[1].env}
    text = session.log.getvalue()
    for line in ("dud is no longer in the test: stopping it", "machine changed: stopping it",
                 "web is new in the test: start it with web.start() or start_all()", "db unchanged",
                 "vlan 2 is no longer in the test", "test script updated", "(finished: updating machines"):
        assert line in text


def test_a_failing_command_changes_nothing(session: Session):
    before = session.state()
    with pytest.raises(RebuildError, match="the rebuild command `exit 3` failed with status 3"):
        session.rebuild("exit 3")
    assert session.state() == before
    assert "the machines are unchanged" in session.log.getvalue()
    assert "updating machines" not in session.log.getvalue()


def test_a_missing_configuration_changes_nothing(session: Session, root: Path):
    before = session.state()
    with pytest.raises(RebuildError, match="No such file|not found|cannot"):
        session.rebuild(f"rm {root}/result")
    assert session.state() == before


@pytest.mark.parametrize("breakage, message", [
    ("chmod -x build2/run-machine-vm", "machine 'machine': start script .* is not an executable file"),
    ("echo 'start_all(' > build2/test-script", "syntax error in the test script .*test-script, line 1"),
    ("rm build2/test-script", "cannot read the new test script|cannot read"),
])
def test_an_invalid_configuration_changes_nothing_and_starts_no_vlan(session: Session, root: Path, breakage: str,
                                                                     message: str):
    build(root, "build2", {"machine": ""}, [1, 4], "start_all()\n")
    before = session.state()
    with pytest.raises(RebuildError, match=message):
        session.rebuild(f"cd {root} && {breakage} && ln -sfn build2 result")
    assert session.state() == before
    assert not (session.driver.socket_root / "vde4.ctl").exists(), "vlan 4 must not have started"


def test_bad_json_is_named(root: Path):
    session = Session(root, ["--config", "result/driver-configuration.json"], {})
    try:
        before = session.state()
        (root / "build0" / "driver-configuration.json").write_text('{"vms": {}, "vlans": "1", "test_script": "/t"}')
        with pytest.raises(RebuildError, match='"vlans" must be a list of numbers'):
            session.rebuild()
        assert session.state() == before
    finally:
        session.driver.cleanup()


def test_the_same_configuration_again_changes_nothing_and_says_how_to_name_a_new_driver(root: Path):
    session = Session(root, ["--config", str(root / "build0" / "driver-configuration.json")], {})
    try:
        before = session.state()
        session.rebuild(f"ln -sfn build1 {root}/result")  # (a nix-like absolute path: not followed)
        assert session.state()["machines"] == before["machines"]
        assert "exe='./result/bin/nixos-test-driver'" in session.log.getvalue()
        session.rebuild(exe=str(root / "result" / "bin" / "nixos-test-driver"))
        assert [m.name for m in session.driver.machines] == ["db", "machine", "web"]
    finally:
        session.driver.cleanup()


def test_an_exe_that_fails_is_named(root: Path):
    session = Session(root, ["--config", "result/driver-configuration.json"], {})
    try:
        before = session.state()
        with pytest.raises(RebuildError, match="`/bin/false --print-config` failed with status 1"):
            session.rebuild(exe="/bin/false")
        assert session.state() == before
    finally:
        session.driver.cleanup()


def test_print_config_prints_the_configuration_the_flags_name(tmp_path: Path):
    script = start_script(tmp_path / "run-m-vm", "")
    (tmp_path / "t.py").write_text("")
    done = subprocess.run([*DRIVER.split(), "--print-config", "t.py", "--start-scripts", "run-m-vm", "--vlans", "2",
                           "1"], cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "vlans": "9"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "vms": {"m": {"name": "m", "start_script": script}}, "containers": {}, "vlans": [2, 1],
        "test_script": str(tmp_path / "t.py"), "global_timeout": 3600, "enable_ssh_backdoor": False}
    done = subprocess.run([*DRIVER.split(), "--print-config", "t.py", "--vlans", "x"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "bad VLAN number 'x'" in done.stderr
