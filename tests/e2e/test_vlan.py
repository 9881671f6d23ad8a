"""VLANs through vde_switch on real tiny guests: addresses, names, TCP, routing, block/unblock, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import tiny

from test_driver.driver import Driver

pytestmark = pytest.mark.serial  # (counts every vde_switch of the host)

# name -> {vlan: host number}: a, b on VLAN 1; c on VLAN 2; r on both (a router).
LAYOUT = {"a": {1: 1}, "b": {1: 2}, "c": {2: 4}, "r": {1: 3, 2: 3}}
HOSTS = {name: f"192.168.{vlan}.{n}" for name, vlans in LAYOUT.items() for vlan, n in sorted(vlans.items())[:1]}


def vde_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "vde_switch"], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def scripts(guest, directory) -> list[str]:
    return [str(tiny.write_start_script(directory, name, guest, vlans=vlans, hosts=HOSTS))
            for name, vlans in LAYOUT.items()]


@pytest.fixture(scope="module")
def net(guest, tmp_path_factory):
    base = tmp_path_factory.mktemp("vlan")
    before = vde_pids()
    from e2e_support import Log

    driver = Driver(scripts(guest, base), [1, 2], "", base, Log())
    try:
        driver.start_all()
        yield driver, {m.name: m for m in driver.machines}
    finally:
        driver.cleanup()
    assert vde_pids() - before == set()


def test_vlans_are_symbols_and_switches_run(net):
    driver, _ = net
    symbols = driver.test_symbols()
    assert [v.nr for v in symbols["vlans"]] == [1, 2] and symbols["vlan2"].nr == 2
    for vlan in driver.vlans:
        assert (vlan.socket_dir / "ctl").exists() and vlan.process.poll() is None


def test_machines_reach_each_other_by_address_and_name(net):
    _, m = net
    m["a"].succeed("ping -c1 -W5 192.168.1.2", "ping -c1 -W5 b")
    m["b"].succeed("ping -c1 -W5 a")
    assert "192.168.1.1" in m["a"].succeed("ip addr show eth1")


def test_file_over_tcp(net):
    _, m = net
    m["b"].succeed("mkdir -p /tmp/www && head -c 300000 /dev/urandom > /tmp/www/blob",
                   "httpd -p 8080 -h /tmp/www")
    want = m["b"].succeed("sha256sum /tmp/www/blob").split()[0]
    m["a"].succeed("wget -q -O /tmp/got http://b:8080/blob")
    assert m["a"].succeed("sha256sum /tmp/got").split()[0] == want


def test_machine_on_two_vlans_routes_between_them(net):
    _, m = net
    m["r"].succeed("ping -c1 -W5 192.168.1.1", "ping -c1 -W5 192.168.2.4")
    m["a"].fail("ping -c1 -W2 192.168.2.4")  # no route yet
    m["r"].succeed("echo 1 > /proc/sys/net/ipv4/ip_forward")
    m["a"].succeed("ip route add 192.168.2.0/24 via 192.168.1.3")
    m["c"].succeed("ip route add 192.168.1.0/24 via 192.168.2.3")
    m["a"].succeed("ping -c1 -W5 192.168.2.4")


def test_block_and_unblock(net):
    _, m = net
    m["a"].succeed("ping -c1 -W5 b")
    m["a"].block()
    m["a"].fail("ping -c1 -W2 b")
    m["b"].fail("ping -c1 -W2 a")
    m["a"].unblock()
    m["a"].wait_until_succeeds("ping -c1 -W2 b", timeout=30)


def test_dead_switch_is_reported_not_hung_on(guest, tmp_path, private_tmp, log):
    names = {"a": {1: 1}, "b": {1: 2}}
    start_scripts = [str(tiny.write_start_script(tmp_path, n, guest, vlans=v, hosts=HOSTS))
                     for n, v in names.items()]
    with Driver(start_scripts, [1], "", tmp_path, log) as driver:
        driver.start_all()
        a = driver.machines[0]
        a.succeed("ping -c1 -W5 b")
        os.kill(driver.vlans[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while driver.vlans[0].died is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.vlans[0].died and "died" in log.text
        start = time.monotonic()
        a.fail("ping -c1 -W2 b")
        assert time.monotonic() - start < 10


def switch_dirs() -> set[str]:
    """The driver's short socket directories (/tmp/td-*) that hold a VLAN's switch directory."""
    return {p for p in os.listdir("/tmp") if p.startswith("td-") and os.path.exists(f"/tmp/{p}/vde1.ctl")}


@pytest.mark.parametrize("ending", ["passes", "fails", "sigterm"])
def test_switches_gone_after_the_driver_ends(guest, tmp_path, private_tmp, ending):
    before = vde_pids()
    dirs_before = switch_dirs()
    script = tiny.write_start_script(tmp_path, "solo", guest, vlans={1: 1})
    test = tmp_path / "t.py"
    test.write_text({"passes": "solo.succeed('ip link show eth1')\n",
                     "fails": "solo.succeed('false')\n",
                     "sigterm": "solo.succeed('echo up')\nsolo.succeed('sleep 600')\n"}[ending])
    proc = subprocess.Popen([sys.executable, "-m", "test_driver.cli_main", "--vlans", "1", "--start-scripts",
                             str(script), "-o", str(tmp_path), "--", str(test)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if ending == "sigterm":
            assert proc.stdout is not None
            for line in proc.stdout:
                if "must succeed: sleep 600" in line:
                    break
            assert vde_pids() - before
            proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
        proc.wait()
    assert (proc.returncode == 0) == (ending == "passes"), output
    assert vde_pids() - before == set()
    assert switch_dirs() - dirs_before == set()


def test_bad_vlan_number_is_a_clear_error(tmp_path):
    test = tmp_path / "t.py"
    test.write_text("")
    for bad in ("abc", "-1", "300"):
        result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--vlans", "1", bad, "--",
                                 str(test)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and f"bad VLAN number '{bad}'" in result.stderr
        assert "start vlan" not in result.stderr  # refused before any switch started
    # VLAN 0 is one, as upstream's (a NIC's MAC address holds the number: 0 to 255)
    test.write_text("assert [v.nr for v in vlans] == [0] and vlan0.nr == 0\n")
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--vlans", "0", "-o", str(tmp_path),
                             "--", str(test)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_netcat_transfer_with_stdin_left_open(net):
    """Busybox nc half-closes when its stdin ends: under upstream a command's stdin never ends."""
    _, m = net
    m["b"].succeed("head -c 200000 /dev/urandom > /tmp/blob",
                   "nc -l -p 7777 < /tmp/blob >/dev/null 2>&1 &")
    want = m["b"].succeed("md5sum < /tmp/blob").split()[0]
    m["a"].succeed("nc -w 5 b 7777 > /tmp/got", timeout=60)
    assert m["a"].succeed("md5sum < /tmp/got").split()[0] == want


def test_vlan_tagged_frames_pass_between_machines(net):
    """Upstream's switch is a hub: 802.1Q-tagged frames reach the other machines (nixpkgs'
    networkd-and-scripted vlan-ping); a learning switch drops them."""
    _, m = net
    for name, host in (("a", 1), ("b", 2)):
        m[name].succeed("ip link add link eth1 name eth1.5 type vlan id 5",
                        f"ip addr add 10.5.0.{host}/24 dev eth1.5", "ip link set eth1.5 up")
    m["a"].succeed("ping -c1 -W10 10.5.0.2")
    m["b"].succeed("ping -c1 -W10 10.5.0.1")


TAP_SCRIPT = r'''
import os
import subprocess
start_all()
assert os.environ["QEMU_VDE_SOCKET_1"] == str(vlan1.socket_dir)
solo.succeed("true")
subprocess.run("ip link set vde-tap1 up && ip addr add 192.168.1.254/24 dev vde-tap1", shell=True, check=True)
solo.succeed("ping -c1 -W10 192.168.1.254")
print("TAP OK")
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="a tap interface and a network namespace need root")
def test_the_driver_side_tap_is_on_the_vlan(guest, tmp_path, private_tmp):
    """As upstream, vde_plug2tap plugs vde-tap<N> of the driver's network namespace into VLAN N
    (containers' start scripts bridge to it).  The driver runs in a namespace of its own, as in
    the Nix sandbox: the host's network is untouched."""
    script = tiny.write_start_script(tmp_path, "solo", guest, vlans={1: 1})
    test = tmp_path / "t.py"
    test.write_text(TAP_SCRIPT)
    result = subprocess.run(["unshare", "--net", sys.executable, "-m", "test_driver.cli_main",
                             "--start-scripts", str(script), "--vlans", "1", "-o", str(tmp_path), "--",
                             str(test)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "TAP OK" in result.stdout, result.stdout + result.stderr
    assert "creating tap interface vde-tap1" in result.stderr
