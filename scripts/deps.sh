#!/usr/bin/env bash
# Install everything vmsnap needs to build, test and benchmark on Debian 12.
# Idempotent; skips apt when every package is already installed.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libsqlite3-dev sqlite3 libgnutls28-dev gnutls-bin
  qemu-utils qemu-system-x86 nbdkit libnbd-bin fio gnuplot-nox
  zfs-fuse xfsprogs btrfs-progs util-linux e2fsprogs
  python3 jq procps psmisc
  linux-image-cloud-amd64 busybox-static   # test_daemon_vm.sh: a guest kernel and a static busybox
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
