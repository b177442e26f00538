#!/bin/bash
# A real VM on a vmsnap disk: qemu-system-x86_64 (TCG) boots Linux with its
# root filesystem on the export vm1/root served by vmsnapd (the initramfs
# only loads the virtio drivers and switches root to /dev/vda).
#   boot 1: the guest writes "one" to /data/log, syncs, says so; while it
#           runs, a live snapshot s1 is taken; the guest then writes "two".
#   then  : rollback to s1 (refused while QEMU has the disk open, BUSY).
#   boot 2: the guest must see exactly "one".
# Needs a distribution kernel with its modules (/boot/vmlinuz-*, or
# VMS_KERNEL and VMS_KMODULES) and a static busybox (Debian:
# linux-image-cloud-amd64 busybox-static).
. "$(dirname "$0")/lib.sh" "$@"
need qemu-system-x86_64 mkfs.ext4 busybox gzip python3 nbdcopy

VMSNAPD=$BUILD/vmsnapd
[ -x "$VMSNAPD" ] || { echo "FAIL: $VMSNAPD not built"; echo "0 passed, 1 failed"; exit 1; }

KERNEL=${VMS_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)}
KVER=${KERNEL#*/vmlinuz-}
KMOD=${VMS_KMODULES:-/lib/modules/$KVER}
if [ ! -r "$KERNEL" ] || [ ! -d "$KMOD" ]; then
  KERNEL=; KMOD=
  [ "${CI:-}" = true ] && { echo "FAIL: no kernel in /boot (apt-get install linux-image-cloud-amd64)"; echo "0 passed, 1 failed"; exit 1; }
  echo "SKIP: no kernel with modules in /boot (apt-get install linux-image-cloud-amd64)" >&2
  echo "0 passed, 0 failed, 1 skipped"; exit 0
fi
BUSYBOX=$(command -v busybox)
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "FAIL: $BUSYBOX is not static (apt-get install busybox-static)"; echo "0 passed, 1 failed"; exit 1
fi

daemon_env

# ---- initramfs: busybox and the virtio modules, then switch_root to vda --
mkdir -p "$T/initrd/bin" "$T/initrd/modules"
cp "$BUSYBOX" "$T/initrd/bin/busybox"
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio_pci_legacy_dev.ko \
         drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko; do
  [ -f "$KMOD/kernel/$m" ] && cp "$KMOD/kernel/$m" "$T/initrd/modules/"
done
cat >"$T/initrd/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# In dependency order (modules.dep); a module built into the kernel is
# simply not there.
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
  [ -f /modules/$m.ko ] && { insmod /modules/$m.ko || echo "VMSNAP-ERROR: insmod $m"; }
done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
mount -t ext4 /dev/vda /newroot || { echo "VMSNAP-ERROR: cannot mount /dev/vda"; poweroff -f; }
exec switch_root /newroot /sbin/init
EOF
chmod +x "$T/initrd/init"
(cd "$T/initrd" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 >"$T/initrd.gz")

# ---- the root filesystem that goes onto the vmsnap disk -----------------
mkdir -p "$T/root/bin" "$T/root/sbin" "$T/root/proc" "$T/root/sys" "$T/root/dev" "$T/root/data"
cp "$BUSYBOX" "$T/root/bin/busybox"
cat >"$T/root/sbin/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
step=$(sed -n 's/.*vmsnap=\([a-z]*\).*/\1/p' /proc/cmdline)
case $step in
  write)
    echo one >>/data/log; sync
    echo "VMSNAP-WROTE-ONE at $(cut -d" " -f1 /proc/uptime)"
    # The host takes a live snapshot now, then writes "go" on the flag
    # disk (a raw export of the same daemon).
    n=0
    while [ $n -lt 600 ]; do
      [ "$(dd if=/dev/vdb bs=512 count=1 iflag=direct 2>/dev/null | head -c 2)" = go ] && break
      sleep 0.2; n=$((n + 1))
    done
    echo two >>/data/log; sync
    echo "VMSNAP-WROTE-TWO at $(cut -d" " -f1 /proc/uptime)"
    ;;
esac
echo "VMSNAP-STATE: $(cat /data/log 2>/dev/null | tr '\n' ' ')"
sync
poweroff -f
EOF
chmod +x "$T/root/sbin/init"
truncate -s 64M "$T/rootfs.img"
mkfs.ext4 -q -F -d "$T/root" "$T/rootfs.img" >/dev/null

# ---- daemon, SR, VM ---------------------------------------------------------
head -c 4096 /dev/zero >"$T/flag.img"
"$VMSNAPD" --foreground --home "$HOME_DIR" --raw flag="$T/flag.img" --log-file "$LOG" --log-level info &
DPID=$!
on_exit "kill $DPID 2>/dev/null"
t_begin "daemon, native SR and VM with a 64 MiB root disk"
if wait_for_socket "$CTL" 10 &&
   ok_result "$(ctl "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\",\"location\":\"$T/sr\",\"size\":\"512M\"}}")" &&
   ok_result "$(ctl '{"op":"vm.create","args":{"name":"vm1","sr":"sr1","disks":[{"name":"root","size":"64M"}]}}')"; then
  t_ok
else
  t_fail "$(tail -3 "$LOG")"; t_end
fi
URI="nbd+unix:///vm1/root?socket=$SOCK"
check "root filesystem copied onto the vmsnap disk" nbdcopy "$T/rootfs.img" "$URI"

boot() { # step console
  timeout 300 qemu-system-x86_64 -machine accel=tcg -m 256 -smp 1 -display none -no-reboot \
    -kernel "$KERNEL" -initrd "$T/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet vmsnap=$1" \
    -drive "file=$URI,format=raw,if=virtio,cache=none" \
    -drive "file=nbd+unix:///flag?socket=$SOCK,format=raw,if=virtio,cache=none,readonly=on" \
    -serial "file:$2" -monitor none
}

t_begin "boot 1: the guest writes, a live snapshot is taken while it runs"
boot write "$T/console1.log" &
QEMU=$!
on_exit "kill $QEMU 2>/dev/null"
snap=
for _ in $(seq 2400); do
  if grep -q VMSNAP-WROTE-ONE "$T/console1.log" 2>/dev/null; then
    echo "    guest wrote: $(date +%T.%N)" >&2
    snap=$(ctl '{"op":"snapshot.create","args":{"vm":"vm1","name":"s1"}}')
    echo "    snapshot taken: $(date +%T.%N)" >&2
    busy=$(ctl '{"op":"vm.rollback","args":{"vm":"vm1","snapshot":"s1"}}')
    printf go | dd of="$T/flag.img" conv=notrunc status=none
    break
  fi
  kill -0 "$QEMU" 2>/dev/null || break
  sleep 0.1
done
wait "$QEMU"
state=$(sed -n 's/.*VMSNAP-STATE: //p' "$T/console1.log" | tr -d '\r')
if ok_result "$snap" && grep -q VMSNAP-WROTE-TWO "$T/console1.log" && [ "$state" = "one two " ]; then
  t_ok
else
  t_fail "snapshot: $snap; guest said: $(grep VMSNAP "$T/console1.log" | tr '\n' ' ')"
fi

t_begin "rollback while the VM runs is refused: BUSY"
code=$(json_get "${busy:-null}" '(j or {}).get("error", {}).get("code")' 2>/dev/null)
[ "$code" = BUSY ] && t_ok || t_fail "rollback attempt said: $busy"

t_begin "rollback to s1 with the VM off"
out=$(ctl '{"op":"vm.rollback","args":{"vm":"vm1","snapshot":"s1"}}')
ok_result "$out" && t_ok || t_fail "$out"

t_begin "boot 2: the guest sees the snapshot's state"
boot read "$T/console2.log"
state=$(sed -n 's/.*VMSNAP-STATE: //p' "$T/console2.log" | tr -d '\r')
[ "$state" = "one " ] && t_ok || t_fail "guest said: $(grep VMSNAP "$T/console2.log" | tr '\n' ' ') $(tail -5 "$T/console2.log")"

kill -TERM "$DPID"; wait "$DPID"
t_end
