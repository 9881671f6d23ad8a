#!/usr/bin/env python3
"""The container test guest: the Debian systemd guest's root file system, under systemd-nspawn.

    python3 tests/guests/nspawn.py build
    python3 tests/guests/nspawn.py start-script NAME DIR     # writes DIR/run-NAME-nspawn

The start script has the shape of nixpkgs' container start scripts: it runs with
RUN_NSPAWN_ROOT_DIR (the container's state: its writable layer) and
RUN_NSPAWN_SHARED_DIR (bound at /tmp/shared), prints "systemd-nspawn's PID is N",
then the container's console.  The root is an overlay of the Debian guest's image
(mounted read-only through a loop device) and a layer in the state directory, all
mounted in a mount namespace of the script's own, so nothing stays mounted after
it ends, however it ends.  The container has a private network (loopback only:
no veth link to clean up) and boots its systemd (``-b``); ``--register=no
--keep-unit`` because the host's PID 1 need not be systemd.
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
state=${{RUN_NSPAWN_ROOT_DIR:?RUN_NSPAWN_ROOT_DIR must be set}}
shared=${{RUN_NSPAWN_SHARED_DIR:?RUN_NSPAWN_SHARED_DIR must be set}}
mkdir -p "$state/lower" "$state/upper" "$state/work" "$state/root"
exec unshare --mount --propagation private /bin/sh -euc '
  mount -o loop,ro "$1" "$2/lower"
  mount -t overlay overlay -o "lowerdir=$2/lower,upperdir=$2/upper,workdir=$2/work" "$2/root"
  echo "systemd-nspawn'"'"'s PID is $$"
  exec systemd-nspawn --quiet --boot --register=no --keep-unit --private-network \
    --machine="$3" --directory="$2/root" --bind="$4:/tmp/shared"
' run-{name}-nspawn {image} "$state" {name} "$shared"
"""


def build() -> debian.DebianGuest:
    return debian.build()


def write_start_script(directory: Path, name: str, guest: debian.DebianGuest | None = None,
                       **_options: object) -> Path:
    """Write DIRECTORY/run-NAME-nspawn starting the container guest."""
    guest = guest or build()
    path = Path(directory) / f"run-{name}-nspawn"
    return tiny.write_executable(path, START_SCRIPT.format(name=name, image=guest.image))


def main() -> None:
    tiny.run_cli(__doc__ or "", build, write_start_script, vlans=False)


if __name__ == "__main__":
    main()
