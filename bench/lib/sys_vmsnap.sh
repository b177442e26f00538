# shellcheck shell=bash
# Adapters for vmsnap's own storage repositories, served by vmsnapd.
# Contract: see the top of sys_peers.sh.

vmsnap_bins_check() {
  [ -x "$BUILD_DIR/vmsnapd" ] && [ -x "$BUILD_DIR/vmsnap" ] && return 0
  echo "vmsnapd/vmsnap not built in $BUILD_DIR (cmake --build $BUILD_DIR --target vmsnapd vmsnap)"
  return 1
}

for _t in native zfs reflink; do
  eval "vmsnap_${_t}_label() { echo \"vmsnap ${_t} SR (vmsnapd)\"; }"
  eval "vmsnap_${_t}_check() { vmsnap_bins_check || return 1; echo 'vmsnap adapter not wired yet'; return 1; }"
  eval "vmsnap_${_t}_max_n() { echo 100000; }"
done
unset _t
