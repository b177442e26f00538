#!/usr/bin/env bash
# vmsnap check and check --repair on every SR type (native, zfs, reflink on
# XFS and btrfs): a VM with data and snapshots, then damage done from the
# outside -- a snapshot's backend object deleted behind the catalog's back,
# orphans made in the backend (a disk with data no catalog row names, one
# that an orphan note names as vmsnap's own, and per type a zfs snapshot
# taken by hand or a reflink copy dropped into a VM's directory), and a
# snapshot row written into the catalog with sqlite3 whose backing never
# existed.  check must name every problem and exit 1; --repair -n must say
# what it would do and change nothing; --repair must fix everything as
# docs/reliability.md says (remove what is vmsnap's own, adopt what holds
# data into a lost_found VM, drop the snapshots without backing); a second
# check is clean, the VM's data and its remaining snapshots are intact, and
# the adopted data reads back.
. "$(dirname "$0")/lib.sh" "$@"
. "$(dirname "$0")/storage.sh"
need jq sqlite3 vmsnap it_diskio it_srtool zfs zpool zfs-fuse mkfs.xfs mkfs.btrfs losetup mount umount
need_root

ok() { check "$NAME: $1" "${@:2}"; }
is() {
  t_begin "$NAME: $1"
  if [ "$2" = "$3" ]; then t_ok; else t_fail "got '$3', wanted '$2'"; fi
}
# has DESCRIPTION REGEX FILE: a line of FILE matches REGEX.
has() {
  t_begin "$NAME: $1"
  if grep -Eq -- "$2" "$3"; then t_ok; else t_fail "no /$2/ in: $(head -c 3000 "$3")"; fi
}
san() { tr -c 'A-Za-z0-9\n' _ <<<"$1"; }

scenario() {
  NAME=$1
  local type=$2 loc=$3 rc
  shift 3
  H=$T/home-$NAME
  V() { vmsnap --home "$H" --no-daemon "$@"; }
  J() { vmsnap --home "$H" --no-daemon --json "$@" 2>/dev/null; }
  D() { it_diskio "$H" "$@"; }
  S() { it_srtool "$type" "$loc" "$@"; }

  ok "sr create" V sr create sr1 --type "$type" "$@" "$loc"
  ok "vm create" V vm create vm1 --sr sr1 --disk root:8M --disk data:4M
  ok "write root" D vm1/root write 1 0 8M
  ok "write data" D vm1/data write 5 0 4M
  ok "snapshot s1" V snapshot create vm1 s1
  ok "rewrite part of root" D vm1/root write 2 0 1M
  ok "snapshot s2" V snapshot create vm1 s2
  ok "rewrite more of root" D vm1/root write 3 2M 1M
  ok "snapshot s3" V snapshot create vm1 s3
  ok "a clone of s3" V vm clone vm1@s3 c1
  ok "check before any damage" V check

  local vm sr root data s1 s1root ghost sum_root sum_data sum_s2 sum_s3 sum_c1
  vm=$(J vm show vm1 | jq -r .result.uuid)
  sr=$(J sr show sr1 | jq -r .result.uuid)
  root=$(J vdi show vm1/root | jq -r .result.uuid)
  data=$(J vdi show vm1/data | jq -r .result.uuid)
  s1=$(J snapshot show vm1@s1 | jq -r .result.uuid)
  s1root=$(J snapshot show vm1@s1 | jq -r '.result.disks[] | select(.name=="root") | .ref')
  sum_root=$(D vm1/root sum 0 8M); sum_data=$(D vm1/data sum 0 4M)
  sum_s2=$(D vm1/root@s2 sum 0 8M); sum_s3=$(D vm1/root@s3 sum 0 8M); sum_c1=$(D c1/root sum 0 8M)

  # ---- damage from the outside
  # 1. the backend object of snapshot s1 goes behind the catalog's back
  t_begin "$NAME: delete s1's backing behind the catalog's back"
  case $type in
    native) S delete "$s1root" ;;                                  # its root volume
    zfs) zfs destroy "$loc/$vm@$s1" ;;                             # the whole ZFS snapshot
    reflink) rm "$loc/$vm/snapshots/$s1/$root.raw" ;;              # its root file
  esac && t_ok || t_fail "could not"
  # 2. a disk with data that no catalog row names (a VM key nobody knows)
  local okey=0a1b2c3d-0000-4000-8000-00000000beef odisk=0a1b2c3d-1111-4000-8000-00000000cafe
  ok "an orphan disk with data" S disk "$okey" "$odisk" 4M 77
  # 3. an orphan that a note says is vmsnap's own interrupted create
  local nkey=0a1b2c3d-2222-4000-8000-000000000001 ndisk=0a1b2c3d-3333-4000-8000-000000000002
  ok "an orphan disk an orphan note names" S disk "$nkey" "$ndisk" 2M 88
  ok "its orphan note" sqlite3 "$H/catalog.db" \
    "INSERT INTO orphan(sr_uuid, kind, uuid, detail, time) VALUES('$sr', 'vdi', '$ndisk', 'test', 0)"
  # 4. per type: a snapshot taken by hand, or a reflink copy of a disk
  case $type in
    zfs) ok "a zfs snapshot taken by hand" zfs snapshot "$loc/$vm@byhand" ;;
    reflink) ok "a copy of root dropped into the VM's directory" \
      cp --reflink=always "$loc/$vm/disks/$root.raw" "$loc/$vm/disks/0a1b2c3d-4444-4000-8000-000000000003.raw" ;;
  esac
  # 5. the catalog names a snapshot whose backing never existed
  ghost=0a1b2c3d-5555-4000-8000-000000000004
  local gref="$vm@$ghost/$root"
  [ "$type" = native ] && gref=999999
  ok "a snapshot row without backing (sqlite3)" sqlite3 "$H/catalog.db" \
    "INSERT INTO snapshot(uuid, vm_uuid, name, time, seq, is_deleted, state, created) VALUES('$ghost', '$vm', 'ghost', 1700000000, 999, 0, 1, 1700000000);
     INSERT INTO snapshot_disk(snapshot_uuid, vdi_uuid, disk_name, device, size, ref) VALUES('$ghost', '$root', 'root', 0, 8388608, '$gref')"

  # ---- check names every problem
  V check >"$T/check1" 2>&1; rc=$?
  is "check exits 1 on the damage" 1 "$rc"
  has "check: s1 has no backing" "missing: snapshot vm1@s1_" "$T/check1"
  has "check: the ghost snapshot has no backing" "missing: snapshot vm1@ghost_" "$T/check1"
  has "check: the orphan disk" "orphan: .*$odisk.*holds data|orphan: .*holds data" "$T/check1"
  has "check: the noted orphan" "orphan note names it" "$T/check1"
  J check >"$T/check1.json"
  is "check --json: ok false" false "$(jq -r .result.ok "$T/check1.json")"
  is "check --json: the orphan disk listed with its key" 1 \
    "$(jq "[.result.srs[0].orphans[] | select(.vm_key==\"$okey\")] | length" "$T/check1.json")"
  case $type in
    zfs) is "check --json: the hand-made zfs snapshot is an orphan" 1 \
      "$(jq '[.result.srs[0].orphans[] | select(.snapshot_key=="byhand")] | length' "$T/check1.json")" ;;
    reflink) has "check: the dropped copy is an orphan" "orphan: .*0a1b2c3d-4444" "$T/check1" ;;
  esac

  # ---- a dry run changes nothing
  S enum | jq -S . >"$T/objs-before"
  V check --repair -n >"$T/dry" 2>&1; rc=$?
  is "check --repair -n exits 1 (nothing repaired)" 1 "$rc"
  has "dry run: would adopt" "would adopt orphan" "$T/dry"
  has "dry run: would remove" "would remove (orphan|snapshot)" "$T/dry"
  S enum | jq -S . >"$T/objs-after"
  ok "dry run: the backend objects are unchanged" cmp -s "$T/objs-before" "$T/objs-after"
  is "dry run: no lost_found VM" 0 "$(J vm list | jq '[.result.vms[] | select(.name|startswith("lost_found"))] | length')"

  # ---- repair
  V check --repair >"$T/repair" 2>&1; rc=$?
  is "check --repair exits 0" 0 "$rc"
  [ "$rc" = 0 ] || cat "$T/repair" >&2
  has "repair: the orphan disk adopted" "adopted orphan .*as VM lost_found_" "$T/repair"
  has "repair: the noted orphan removed" "removed orphan .*vmsnap's own" "$T/repair"
  has "repair: s1 dropped from the catalog" "removed snapshot vm1@s1_.* from the catalog" "$T/repair"
  has "repair: the ghost dropped from the catalog" "removed snapshot vm1@ghost_.* from the catalog" "$T/repair"
  V check >"$T/check2" 2>&1; rc=$?
  is "a second check is clean" 0 "$rc"
  [ "$rc" = 0 ] || cat "$T/check2" >&2
  is "no orphan note left" 0 "$(J check | jq '.result.orphans | length')"

  # ---- nothing lost
  is "vm1/root intact" "$sum_root" "$(D vm1/root sum 0 8M)"
  is "vm1/data intact" "$sum_data" "$(D vm1/data sum 0 4M)"
  is "vm1@s2 intact" "$sum_s2" "$(D vm1/root@s2 sum 0 8M)"
  is "vm1@s3 intact" "$sum_s3" "$(D vm1/root@s3 sum 0 8M)"
  is "clone c1 intact" "$sum_c1" "$(D c1/root sum 0 8M)"
  is "vm1 keeps s2 and s3 only" "s2 s3" "$(J snapshot list vm1 | jq -r '[.result.snapshots[].user_name] | join(" ")')"
  J vdi list >"$T/vdis.json"
  local lf
  lf=$(jq -r ".result.vdis[] | select(.name==\"$(san "$odisk")\") | .vm" "$T/vdis.json")
  is "the orphan disk is a disk of a lost_found VM" lost_found_ "${lf:0:11}"
  ok "the adopted orphan's data reads back" D "$lf/$(san "$odisk")" verify 77 0 1M
  is "the noted orphan was not adopted" 0 \
    "$(jq "[.result.vdis[] | select(.name==\"$(san "$ndisk")\")] | length" "$T/vdis.json")"
  is "the noted orphan is gone from the SR" 0 "$(S enum | jq "[.objects[] | select(.disk==\"$ndisk\")] | length")"
  case $type in
    zfs)
      # the hand-made snapshot's disks, adopted: root as it was when taken
      lf=$(jq -r ".result.vdis[] | select(.name==\"$(san "$root")\" and (.vm|startswith(\"lost_found\"))) | .vm" "$T/vdis.json")
      ok "the hand-made snapshot's root reads back" test "$(D "$lf/$(san "$root")" sum 0 8M)" = "$sum_root"
      ;;
    reflink)
      lf=$(jq -r '.result.vdis[] | select(.name=="0a1b2c3d_4444_4000_8000_000000000003") | .vm' "$T/vdis.json")
      ok "the dropped copy reads back as root" test "$(D "$lf/0a1b2c3d_4444_4000_8000_000000000003" sum 0 8M)" = "$sum_root"
      ;;
  esac
  if [ "$type" != zfs ]; then
    # s1's data disk survived its root: adopted before s1 went
    lf=$(jq -r ".result.vdis[] | select(.name==\"data\" and (.vm|startswith(\"lost_found\"))) | .vm" "$T/vdis.json")
    ok "s1's surviving data disk was adopted and reads back" D "$lf/data" verify 5 0 4M
  fi
  ok "a lost_found VM can be deleted" V vm delete "$(jq -r '[.result.vdis[] | select(.vm|startswith("lost_found")) | .vm][0]' "$T/vdis.json")" -r
  ok "check after all" V check
}

each_sr_type scenario vmsrep

t_end
