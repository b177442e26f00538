#!/usr/bin/env bash
# The main job on the embedded default, from a fresh Debian 12 machine (root):
# install dependencies, build, create a native SR in a local folder, a VM
# with a disk on it, start vmsnapd serving that disk over NBD, write to the
# disk through a real NBD client, take snapshots while it is served (live),
# and show that every snapshot still reads back its own content.
#
#   bash scripts/quickstart.sh            (home: ./vmsnap-demo)
#   VMSNAP_HOME=/some/dir bash scripts/quickstart.sh
#
# The daemon keeps running afterwards so you can connect your own clients;
# the script prints how to stop it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/scripts/deps.sh"
bash "$top/scripts/build.sh" "$top/build"
B=$top/build
export PATH="$B:$PATH"
export VMSNAP_HOME=${VMSNAP_HOME:-$top/vmsnap-demo}
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

if [ -S "$VMSNAP_HOME/control.sock" ] && vmsnap daemon status >/dev/null 2>&1; then
  echo "a vmsnapd already serves $VMSNAP_HOME; stopping it first" >&2
  vmsnap daemon stop || true
  sleep 1
fi
rm -rf "$VMSNAP_HOME"
mkdir -p "$VMSNAP_HOME"

say vmsnap sr create sr1 --type native --size 4G "$VMSNAP_HOME/sr1"
say vmsnap vm create vm1 --sr sr1 --disk root:1G --disk data:256M
say vmsnapd --home "$VMSNAP_HOME" --pidfile "$VMSNAP_HOME/vmsnapd.pid" --log-file "$VMSNAP_HOME/vmsnapd.log"
for _ in $(seq 50); do [ -S "$VMSNAP_HOME/nbd.sock" ] && break; sleep 0.1; done
sock="$VMSNAP_HOME/nbd.sock"
url() { echo "nbd+unix:///$1?socket=$sock"; }

say nbdinfo --list "$(url vm1/root)"
say qemu-io -f raw -c 'write -P 0x11 0 4M' "$(url vm1/root)"
say vmsnap snapshot create vm1 first
say qemu-io -f raw -c 'write -P 0x22 0 4M' "$(url vm1/root)"
say vmsnap snapshot create vm1 second
say qemu-io -f raw -c 'write -P 0x33 1M 1M' "$(url vm1/root)"
say vmsnap snapshot list vm1

# Every snapshot reads back exactly what the disk held when it was taken.
say qemu-io -r -f raw -c 'read -P 0x11 0 4M' "$(url vm1/root@first)"
say qemu-io -r -f raw -c 'read -P 0x22 0 4M' "$(url vm1/root@second)"
say qemu-io -r -f raw -c 'read -P 0x33 1M 1M' "$(url vm1/root)"

# Roll the live disk back to the first snapshot, keeping the second.
say vmsnap vm rollback vm1 first --force
say qemu-io -r -f raw -c 'read -P 0x11 0 4M' "$(url vm1/root)"
say vmsnap vm clone vm1@second vm2
say qemu-io -r -f raw -c 'read -P 0x22 0 4M' "$(url vm2/root)"
say vmsnap vm tree
say vmsnap stats --sr sr1
say vmsnap check

cat <<EOF

vmsnapd is serving $VMSNAP_HOME (NBD socket $sock).
  qemu-img info '$(url vm1/root)'
  vmsnap --home $VMSNAP_HOME export list
Stop it with:  vmsnap --home $VMSNAP_HOME daemon stop
EOF
