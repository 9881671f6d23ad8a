#!/usr/bin/env python3
"""The container test guest: the Debian systemd guest's root file system, under systemd-nspawn.

    python3 tests/guests/nspawn.py build
    python3 tests/guests/nspawn.py start-script NAME DIR     # writes DIR/run-NAME-nspawn

The start script has the shape of nixpkgs' container start scripts.  It needs no
environment but the driver's three variables: RUN_NSPAWN_ROOT_DIR (the container's
state: its writable layer), RUN_NSPAWN_SHARED_DIR (bound at /tmp/shared) and
NOTIFY_SOCKET, which it leaves to systemd-nspawn (it sets its own PATH, as nixpkgs'
names its tools by store path).  It prints "systemd-nspawn's PID is N", then the
container's console.  The root is an overlay of the Debian guest's image (mounted
read-only through a loop device) and a layer in the state directory, all mounted in
a mount namespace of the script's own, so nothing stays mounted after it ends,
however it ends.  As on NixOS, /bin/sh is bash (a symlink in the writable layer).
The container has a private network (loopback only: no veth link to clean up) and
boots its systemd (``-b``); ``--register=no --keep-unit`` because the host's PID 1
need not be systemd.

Options: ``notify_ready`` (default True) gives systemd-nspawn ``--notify-ready=yes``,
so its READY=1 waits until the container's systemd has finished starting up
(nixpkgs' script does not: its READY=1 comes as soon as the init runs);
``notify_socket=False`` keeps NOTIFY_SOCKET from systemd-nspawn (a script that
does not notify at all).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debian  # noqa: E402
import tiny  # noqa: E402

START_SCRIPT = r"""#!/bin/sh
# run-{name}-nspawn: the Debian systemd test guest as a systemd-nspawn container.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
state=${{RUN_NSPAWN_ROOT_DIR:?RUN_NSPAWN_ROOT_DIR must be set}}
shared=${{RUN_NSPAWN_SHARED_DIR:?RUN_NSPAWN_SHARED_DIR must be set}}
{unset_notify}mkdir -p "$state/lower" "$state/upper/usr/bin" "$state/work" "$state/root"
ln -sfn bash "$state/upper/usr/bin/sh"
{extra}exec unshare --mount --propagation private /bin/sh -euc '
  mount -o loop,ro "$1" "$2/lower"
  mount -t overlay overlay -o "lowerdir=$2/lower,upperdir=$2/upper,workdir=$2/work" "$2/root"
{launch}' run-{name}-nspawn {image} "$state" {name} "$shared"
"""

LAUNCH_PRIVATE = r"""  echo "systemd-nspawn'"'"'s PID is $$"
  exec systemd-nspawn --quiet --boot --register=no --keep-unit --private-network {notify_ready}\
    --machine="$3" --directory="$2/root" --bind="$4:/tmp/shared"
"""

# On VLANs, as nixpkgs' run-nspawn: a network namespace of the container's own with a veth
# link per VLAN, whose host end joins the bridge brN (made if missing, with the driver's
# vde-tapN in it); all of it removed again when systemd-nspawn has ended.
LAUNCH_VLANS = r"""  netns=td-nspawn-$3 name=$3
  cleanup() {{
    for link in {host_links}; do ip link delete "$link" 2>/dev/null || true; done
    for vlan in {vlans}; do
      [ -z "$(ls /sys/class/net/br$vlan/brif 2>/dev/null | grep -v "^vde-tap$vlan\$")" ] && ip link delete "br$vlan" 2>/dev/null || true
    done
    ip netns delete "$netns" 2>/dev/null || true
  }}
  trap cleanup EXIT
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  mkdir -p "$2/net"
  printf "%s\n" "127.0.0.1 localhost" {hosts_lines} > "$2/net/hosts"
  for vlan in {vlans}; do
    if [ ! -e "/sys/class/net/br$vlan" ]; then
      ip link add "br$vlan" type bridge && ip link set "br$vlan" up && ip addr add "192.168.$vlan.254/24" dev "br$vlan"
    fi
    if [ -e "/sys/class/net/vde-tap$vlan" ]; then ip link set "vde-tap$vlan" master "br$vlan" up; fi
    ip link add "$name-vl$vlan" type veth peer name "vl$vlan" netns "$netns"
    ip link set "$name-vl$vlan" master "br$vlan" up
  done
{addresses}  exec 3<&0
  systemd-nspawn --quiet --boot --register=no --keep-unit {notify_ready}\
    --network-namespace-path="/run/netns/$netns" --bind-ro="$2/net/hosts:/etc/hosts" \
    --machine="$3" --directory="$2/root" --bind="$4:/tmp/shared" <&3 3<&- &
  child=$!
  echo "systemd-nspawn'"'"'s PID is $child"
  trap "kill -TERM $child 2>/dev/null || true" TERM INT HUP
  status=0
  while kill -0 "$child" 2>/dev/null; do wait "$child" && status=0 || status=$?; done
  exit "$status"
"""


def build() -> debian.DebianGuest:
    return debian.build()


# The X11 guest's tree as a container (x11.py): lightdm's X server is Xvfb there.
X11_SETUP = """mkdir -p "$state/upper/etc/lightdm/lightdm.conf.d"
ln -sfn /usr/local/share/td/lightdm-container.conf "$state/upper/etc/lightdm/lightdm.conf.d/60-td-container.conf"
"""


def write_start_script(directory: Path, name: str, guest: debian.DebianGuest | None = None,
                       notify_ready: bool = True, notify_socket: bool = True,
                       vlans: dict[int, int] | None = None, hosts: dict[str, str] | None = None,
                       x11: bool = False, **_options: object) -> Path:
    """Write DIRECTORY/run-NAME-nspawn starting the container guest (options: see above;
    ``vlans``: VLAN -> this container's number N on it, 192.168.VLAN.N on interface vlVLAN;
    ``hosts``: its /etc/hosts; ``x11``: ``guest`` is the X11 guest, whose X server is Xvfb then)."""
    guest = guest or build()
    path = Path(directory) / f"run-{name}-nspawn"
    notify = "--notify-ready=yes " if notify_ready else ""
    if vlans:
        addresses = "".join(f'  ip -n "$netns" addr add 192.168.{vlan}.{n}/24 dev vl{vlan} && '
                            f'ip -n "$netns" link set vl{vlan} up\n' for vlan, n in vlans.items())
        launch = LAUNCH_VLANS.format(
            vlans=" ".join(map(str, vlans)), host_links=" ".join(f'"$name-vl{vlan}"' for vlan in vlans),
            hosts_lines=" ".join(f'"{addr} {host}"' for host, addr in (hosts or {}).items()),
            addresses=addresses, notify_ready=notify)
    else:
        launch = LAUNCH_PRIVATE.format(notify_ready=notify)
    return tiny.write_executable(path, START_SCRIPT.format(
        name=name, image=guest.image, launch=launch, extra=X11_SETUP if x11 else "",
        unset_notify="" if notify_socket else "unset NOTIFY_SOCKET\n"))


def main() -> None:
    tiny.run_cli(__doc__ or "", build, write_start_script, vlans=False)


if __name__ == "__main__":
    main()
