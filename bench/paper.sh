#!/usr/bin/env bash
# Reproduce the paper's experiment (Figures 9-11): IOPS, MB/s and response
# time of a VM disk as the number of snapshots grows, chained vs non-chained,
# for vmsnap and the peers a user would pick instead.  See docs/bench-paper.md.
#
#   bench/paper.sh                full run (<= 30 min on 2 cores)
#   bench/paper.sh --quick        smoke run: few N, short runs (CI)
#   bench/paper.sh --help         all options
#
# For every system and every N in the list the disk (2 GiB, fully written)
# gets N snapshots with about 1% of it rewritten at random before each one,
# then fio's nbd engine runs the paper's Table 1 load (2 KiB, 67% reads, 100%
# random, iodepth 16) and the same job read-only.  Every fio job must report
# no error; a verify pass (verify=crc32c, across a snapshot and a server
# restart) must pass for every system.  Results: CSV files, gnuplot figures.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/sys_peers.sh
. "$BENCH_DIR/lib/sys_peers.sh"
# shellcheck source=lib/sys_vmsnap.sh
. "$BENCH_DIR/lib/sys_vmsnap.sh"

ALL_SYSTEMS="raw-nbdkit raw-qemu qcow2-chain qcow2-internal vmsnap-native vmsnap-zfs vmsnap-reflink"

usage() {
  cat <<EOF
usage: bench/paper.sh [options]
  --quick               smoke mode: N=0 2, 32 MiB disk, 1 s runs, one mgmt size (32m)
  --systems LIST        comma-separated, from: ${ALL_SYSTEMS// /,}
                        (default: all; unavailable vmsnap systems are skipped
                        with a note unless --strict or CI=true)
  --n "LIST"            snapshot counts to measure (default "0 1 2 4 8 16 32 64 128 256")
  --runtime SEC         seconds per fio pass, after 1 s of ramp (default 3)
  --size SIZE           disk size, fio syntax (default 2g)
  --rewrite-pct P       percent of the disk rewritten before each snapshot (default 1)
  --extent SIZE         size of each rewrite (default 64k)
  --budget SEC          stop building a system's snapshots once building them
                        (rewrites + snapshot ops, not the measurements) took
                        SEC s in all (default 600; 0: no limit)
  --mgmt-sizes "LIST"   disk sizes for the management-op sweep (default "128m 512m 2g"; "" skips)
  --seed N              seed for the rewrites and verify pass (default: random, printed)
  --out DIR             results directory (default bench/results/run-<UTC time>)
  --work DIR            scratch directory for disks (default: mktemp under /var/tmp)
  --build DIR           CMake build directory with vmsnapd and vmsnap (default build)
  --strict              a system whose prerequisites are missing is an error
  --no-plot             skip the gnuplot figures
  --eta                 print the expected duration (idle machine) and exit
EOF
}

QUICK=0
SYSTEMS=$ALL_SYSTEMS
NLIST="0 1 2 4 8 16 32 64 128 256"
RUNTIME=3
RAMP=1
SIZE=2g
REWRITE_PCT=1
EXTENT=64k
BUDGET=600
MGMT_SIZES="128m 512m 2g"
SEED=
OUT=
WORK=
BUILD_DIR=$TOP/build
STRICT=0
PLOT=1
ETA_ONLY=0
[ "${CI:-}" = true ] && STRICT=1
ARGS=("$@")
set_n=0 set_runtime=0 set_size=0 set_mgmt=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --systems) SYSTEMS=${2//,/ }; shift ;;
    --n) NLIST=$2; set_n=1; shift ;;
    --runtime) RUNTIME=$2; set_runtime=1; shift ;;
    --size) SIZE=$2; set_size=1; shift ;;
    --rewrite-pct) REWRITE_PCT=$2; shift ;;
    --extent) EXTENT=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --mgmt-sizes) MGMT_SIZES=$2; set_mgmt=1; shift ;;
    --seed) SEED=$2; shift ;;
    --out) OUT=$2; shift ;;
    --work) WORK=$2; shift ;;
    --build) BUILD_DIR=$2; shift ;;
    --strict) STRICT=1 ;;
    --no-plot) PLOT=0 ;;
    --eta) ETA_ONLY=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  [ "$set_n" = 1 ] || NLIST="0 2"
  [ "$set_runtime" = 1 ] || RUNTIME=1
  [ "$set_size" = 1 ] || SIZE=32m
  [ "$set_mgmt" = 1 ] || MGMT_SIZES="32m"
  RAMP=0
fi

to_bytes() { # fio-style size: 2g, 64m, 64k, 512 (binary multiples)
  local v=${1,,}
  case $v in
    *t) echo $(( ${v%t} * 1024 ** 4 )) ;;
    *g) echo $(( ${v%g} * 1024 ** 3 )) ;;
    *m) echo $(( ${v%m} * 1024 ** 2 )) ;;
    *k) echo $(( ${v%k} * 1024 )) ;;
    *) echo $(( v )) ;;
  esac
}
valid_int() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in $NLIST; do valid_int "$v" || bench_die "--n: '$v' is not a snapshot count"; done
valid_int "$RUNTIME" && [ "$RUNTIME" -ge 1 ] || bench_die "--runtime must be a whole number of seconds >= 1"
valid_int "$BUDGET" || bench_die "--budget must be a whole number of seconds"
[[ $SIZE =~ ^[0-9]+[kKmMgGtT]?$ ]] || bench_die "--size: bad size '$SIZE'"
[[ $EXTENT =~ ^[0-9]+[kKmM]?$ ]] || bench_die "--extent: bad size '$EXTENT'"
[[ $REWRITE_PCT =~ ^[0-9]+(\.[0-9]+)?$ ]] || bench_die "--rewrite-pct: bad percentage '$REWRITE_PCT'"
for s in $MGMT_SIZES; do [[ $s =~ ^[0-9]+[kKmMgG]?$ ]] || bench_die "--mgmt-sizes: bad size '$s'"; done
SIZE_B=$(to_bytes "$SIZE")
EXTENT_B=$(to_bytes "$EXTENT")
[ "$SIZE_B" -ge $((16 * 1024 * 1024)) ] || bench_die "--size must be at least 16m"
[ "$EXTENT_B" -ge 2048 ] && [ $((EXTENT_B % 2048)) -eq 0 ] || bench_die "--extent must be a multiple of 2k"
for s in $SYSTEMS; do
  case " $ALL_SYSTEMS " in *" $s "*) ;; *) bench_die "unknown system '$s' (known: $ALL_SYSTEMS)" ;; esac
done
NLIST=$(tr ' ' '\n' <<<"$NLIST" | sort -n -u | tr '\n' ' ')
NMAX=$(tr ' ' '\n' <<<"$NLIST" | sort -n | tail -1)
[ -n "$SEED" ] || SEED=$(( (RANDOM << 15 | RANDOM) % 1000000 + 1 ))
valid_int "$SEED" || bench_die "--seed must be a number"
# Expected duration on an idle 2-core machine, from a cost model of each
# system (seconds; estimates from the CPU time of single steps and from
# earlier runs, to be corrected from a quiet run: docs/bench-paper.md):
#   fill      seconds per GiB to fill a disk through NBD
#   step      seconds per snapshot built at 2 GiB with a 1.5% rewrite (the
#             rewrite scales with the disk size and --rewrite-pct)
#   op        seconds per timed snapshot/rollback/delete op
#   warm      seconds per GiB to read a disk back into the page cache before
#             a measurement (only where a rollback dropped it: vmsnap zfs
#             and reflink)
eta_model() { # system -> "fill step op warm"
  case $1 in
    raw-nbdkit|raw-qemu) echo "2.5 0 0 0" ;;
    qcow2-chain) echo "6 0.45 0.4 0" ;;
    qcow2-internal) echo "6 0.7 0.5 0" ;;
    vmsnap-native) echo "3 0.25 0.15 0" ;;
    vmsnap-reflink) echo "3 0.45 0.3 1.5" ;;
    vmsnap-zfs) echo "12 0.9 1.5 12" ;;
  esac
}
eta_seconds() {
  local s fn maxn pts m total=0 gib scale sizes_gib=0 sz
  gib=$(awk -v b="$SIZE_B" 'BEGIN { print b / 1073741824 }')
  scale=$(awk -v g="$gib" -v p="$REWRITE_PCT" 'BEGIN { print g / 2 * p / 1.5 }')
  for sz in $MGMT_SIZES; do sizes_gib=$(awk -v a="$sizes_gib" -v b="$(to_bytes "$sz")" 'BEGIN { print a + b / 1073741824 }'); done
  for s in $SYSTEMS; do
    fn=${s//-/_}
    "${fn}_check" >/dev/null 2>&1 || continue
    maxn=$("${fn}_max_n"); [ "$maxn" -gt "$NMAX" ] && maxn=$NMAX
    pts=0; for n in $NLIST; do [ "$n" -le "$maxn" ] && pts=$((pts + 1)); done
    m=$(eta_model "$s")
    total=$(awk -v t="$total" -v m="$m" -v g="$gib" -v sc="$scale" -v maxn="$maxn" -v pts="$pts" \
                -v rt="$RUNTIME" -v ramp="$RAMP" -v sg="$sizes_gib" 'BEGIN {
      split(m, c, " ")
      fill = c[1] * g; build = maxn * (c[2] * sc + 0.05)
      point = 2 * (rt + ramp + 1) + 1.5 + (maxn > 0 ? 3 * c[3] + 1 : 0)
      warm = (pts > 2 ? pts - 2 : 0) * c[4] * g
      verify = 10 + (maxn > 0 ? 2 * c[3] + 1 : 0)
      sweep = (maxn > 0 && sg > 0) ? c[1] * sg + 3 * (c[2] + 0.5) * 3 + 3 * c[3] * 3 : 0
      printf "%.0f", t + 3 + fill + build + pts * point + warm + verify + sweep }')
  done
  echo "$total"
}
ETA_S=$(eta_seconds)
if [ "$ETA_ONLY" = 1 ]; then
  echo "expected duration on an idle 2-core machine: about $(( (ETA_S + 30) / 60 )) min ($ETA_S s)"
  exit 0
fi
[ -n "$OUT" ] || OUT=$BENCH_DIR/results/run-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$OUT" || bench_die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
BENCH_LOG=$OUT/bench.log
: >"$BENCH_LOG"

trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /var/tmp/vmsnap-bench.XXXXXX) || bench_die "mktemp failed"
  bench_on_exit "rm -rf '$WORK'"
else
  mkdir -p "$WORK" || bench_die "cannot create $WORK"
fi
SOCK=$WORK/nbd.sock
RAW_OUT=$OUT/fio
mkdir -p "$RAW_OUT"

RUNS=$OUT/runs.csv
MGMT=$OUT/mgmt.csv
CHECKS=$OUT/checks.csv
RUNS_HDR="system,n,pass,runtime_s,iops,read_iops,write_iops,mbps,lat_mean_us,lat_p99_us,read_lat_mean_us,read_lat_p99_us,open_ms,server_rss_kb,alloc_bytes"
MGMT_HDR="system,op,series,disk_bytes,n,ms"
CHECKS_HDR="system,check,n,result,detail"

bench_log "seed $SEED (replay with --seed $SEED); results in $OUT; log $BENCH_LOG"

bench_log "expected duration on an idle 2-core machine: about $(( (ETA_S + 30) / 60 )) min (load average now $(cut -d' ' -f1 /proc/loadavg); more under load)"
{
  echo "command: bench/paper.sh ${ARGS[*]}"
  echo "seed: $SEED"
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null)"
  echo "n_list: $NLIST"
  echo "runtime_s: $RUNTIME"
  echo "disk_bytes: $SIZE_B"
  echo "rewrite: ${REWRITE_PCT}% in $EXTENT_B-byte extents before each snapshot"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "mem: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "workdir_fs: $(df -T "$WORK" | awk 'NR == 2 { print $2 }')"
  echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "fio: $(fio --version 2>/dev/null)"
  echo "qemu: $(qemu-img --version 2>/dev/null | head -1)"
  echo "nbdkit: $(nbdkit --version 2>/dev/null)"
} >"$OUT/meta.txt"

# Results of every self-check go to checks.csv (also from subshells, which
# is why failures are counted from the file at the end).
check_result() { # system check n ok|FAIL detail
  bench_csv_append "$CHECKS" "$CHECKS_HDR" "$1,$2,$3,$4,${5//,/;}"
  [ "$4" = ok ] || bench_log "CHECK FAILED: $1 $2 at N=$3: $5"
}

# The paper's Table 1 load, and the same job reading only.
fio_pass() { # system n pass uri -> CSV fields, or fails
  local sys=$1 n=$2 pass=$3 uri=$4 json rw
  json=$RAW_OUT/$sys-n$n-$pass.json
  case $pass in db) rw="--rw=randrw --rwmixread=67" ;; read) rw="--rw=randread" ;; esac
  # shellcheck disable=SC2086
  if bench_fio "$json" "$uri" $rw --bs=2k --iodepth=16 --size="$SIZE_B" \
       --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --randrepeat=0 --randseed=$((SEED + n)) \
       --norandommap --unified_rw_reporting=both --lat_percentiles=1; then
    check_result "$sys" "fio-$pass" "$n" ok "no errors"
    "$BENCH_PY" "$BENCH_DIR/lib/fiojson.py" row "$json"
  else
    check_result "$sys" "fio-$pass" "$n" FAIL "fio error, see $json"
    return 1
  fi
}

# Start serving the live disk on $SOCK (an adapter may choose another
# socket: it sets SYS_SOCK).
serve() { # fn
  SYS_SOCK=$SOCK SYS_EXPORT=
  "${1}_serve" "$SOCK"
}

# Serve, time the open, run both passes, record memory; then stop serving.
measure() { # system fn n
  local sys=$1 fn=$2 n=$3 open rss db rd alloc uri
  if declare -F "${fn}_warm" >/dev/null; then
    bench_time_op "${fn}_warm" || { check_result "$sys" warm "$n" FAIL "reading the disk into the cache failed"; return 1; }
    awk -v t="$TIMED_MS" 'BEGIN { exit !(t > 1000) }' && bench_log "$sys N=$n: cache warm-up took $TIMED_MS ms"
  fi
  serve "$fn" || { check_result "$sys" serve "$n" FAIL "server did not start"; return 1; }
  if bench_probe_open 2>>"$BENCH_LOG"; then
    open=$OPEN_MS
  else
    check_result "$sys" open "$n" FAIL "export did not open, see $BENCH_LOG"
    "${fn}_unserve"; return 1
  fi
  uri=$(bench_nbd_uri "$SYS_SOCK" "$SYS_EXPORT")
  db=$(fio_pass "$sys" "$n" db "$uri") || { "${fn}_unserve"; return 1; }
  rd=$(fio_pass "$sys" "$n" read "$uri") || { "${fn}_unserve"; return 1; }
  rss=$(bench_server_rss_kb "$SYS_RSS_PID")
  "${fn}_unserve"
  alloc=$("${fn}_alloc")
  bench_csv_append "$RUNS" "$RUNS_HDR" "$sys,$n,db,$RUNTIME,$db,$open,$rss,$alloc"
  bench_csv_append "$RUNS" "$RUNS_HDR" "$sys,$n,read,$RUNTIME,$rd,$open,$rss,$alloc"
  bench_log "$sys N=$n: db $(cut -d, -f1 <<<"$db") IOPS, read $(cut -d, -f1 <<<"$rd") IOPS, open ${open} ms, rss ${rss} KiB"
}

# Serve and write: fill the whole disk (sequential) or rewrite a few percent.
serve_and() { # fn what seed
  local fn=$1 uri json rc=0
  serve "$fn" || return 1
  bench_probe_open 2>>"$BENCH_LOG" || { "${fn}_unserve"; return 1; }
  uri=$(bench_nbd_uri "$SYS_SOCK" "$SYS_EXPORT")
  json=$WORK/write.json
  case $2 in
    fill) bench_fio "$json" "$uri" --rw=write --bs=1m --iodepth=8 --size="$CUR_SIZE" || rc=1 ;;
    rewrite) bench_rewrite "$uri" "$CUR_SIZE" "$REWRITE_PCT" "$EXTENT_B" "$3" "$json" >/dev/null || rc=1 ;;
  esac
  "${fn}_unserve"
  return $rc
}

# MGMT_SERIES says which sweep a timing belongs to: "n" (the snapshot-count
# sweep on the main disk) or "size" (the disk-size sweep).
MGMT_SERIES=n
# Rewrite about REWRITE_PCT% of the disk: with the adapter's own writer
# when it has one (<s>_rewrite SEED: qemu-io on the image, or through a
# server it keeps running between snapshots), else through a server
# started for the purpose.
rewrite() { # fn seed
  if declare -F "${1}_rewrite" >/dev/null; then
    "${1}_rewrite" "$2" >>"$BENCH_LOG" 2>&1
  else
    serve_and "$1" rewrite "$2"
  fi
}

timed_op() { # system fn op disk_bytes n args... -> appends to mgmt.csv
  local sys=$1 fn=$2 op=$3 disk=$4 n=$5; shift 5
  # untimed preparation the adapter wants before an operation (vmsnap: the
  # daemon that takes the request must be up, as it is for a user)
  if declare -F "${fn}_ops_begin" >/dev/null; then
    "${fn}_ops_begin" >>"$BENCH_LOG" 2>&1 || { check_result "$sys" "$op" "$n" FAIL "could not prepare $op"; return 1; }
  fi
  bench_time_op "${fn}_${op%%-*}" "$@" || { check_result "$sys" "$op" "$n" FAIL "$op $* failed"; return 1; }
  bench_csv_append "$MGMT" "$MGMT_HDR" "$sys,$op,$MGMT_SERIES,$disk,$n,$TIMED_MS"
}

# The verify pass: write 1/32 of the disk (at most 8 MiB: 2 KiB writes
# are slow where each one copies a cluster) with crc32c headers at random
# and read it back, snapshot (so
# the data now lives below the live layer), restart the server and verify
# it again with verify_only.
verify_pass() { # system fn n
  local sys=$1 fn=$2 n=$3 uri vargs ok=1
  local vbytes=$((SIZE_B / 32))
  [ "$vbytes" -le $((8 * 1024 * 1024)) ] || vbytes=$((8 * 1024 * 1024))
  vargs=(--rw=randwrite --bs=2k --iodepth=16 --size="$SIZE_B" --io_size="$vbytes"
         --verify=crc32c --verify_fatal=1 --randrepeat=0 --randseed=$((SEED + 777)))
  serve "$fn" && bench_probe_open 2>>"$BENCH_LOG" || ok=0
  uri=$(bench_nbd_uri "$SYS_SOCK" "$SYS_EXPORT")
  [ $ok = 1 ] && { bench_fio "$RAW_OUT/$sys-verify-write.json" "$uri" "${vargs[@]}" --do_verify=1 || ok=0; }
  "${fn}_unserve"
  if [ $ok = 1 ] && [ "$n" -gt 0 ]; then "${fn}_snapshot" verify >>"$BENCH_LOG" 2>&1 || ok=0; fi
  if [ $ok = 1 ]; then
    serve "$fn" && bench_probe_open 2>>"$BENCH_LOG" || ok=0
    [ $ok = 1 ] && { bench_fio "$RAW_OUT/$sys-verify-reread.json" "$uri" "${vargs[@]}" --verify_only=1 || ok=0; }
    "${fn}_unserve"
  fi
  if [ $ok = 1 ]; then
    check_result "$sys" verify-crc32c "$n" ok "$vbytes bytes written and read back, again after snapshot+restart"
  else
    check_result "$sys" verify-crc32c "$n" FAIL "see $RAW_OUT/$sys-verify-*.json and $BENCH_LOG"
  fi
}

# Build snapshots FROM..TO of the current disk, or fewer once the build
# budget is spent: with the adapter's batch builder when it has one
# (<s>_build FROM TO SEED_BASE BUDGET_S: one process for the whole run,
# printing "N,rewrite_ms,snapshot_ms" per snapshot), else one rewrite and
# one timed snapshot op at a time.  BUILT_N: the last snapshot built;
# BUILT_S: seconds spent building so far (rewrites + snapshot ops); BUDGET_LEFT
# says whether any budget was left.  BUDGET 0: no limit.
BUILT_S=0
budget_left() { # -> seconds left (0: spent); "0" budget means unlimited
  if [ "$1" -eq 0 ]; then echo 1000000; elif [ "$BUILT_S" -lt "$1" ]; then echo $(($1 - BUILT_S)); else echo 0; fi
}
build_snapshots() { # system fn from to seed_base budget
  local sys=$1 fn=$2 from=$3 to=$4 seed=$5 budget=$6 t_all=$SECONDS
  BUILT_N=$((from - 1))
  [ "$to" -ge "$from" ] || return 0
  build_snapshots_1 "$@" || return 1
  bench_log "$sys: snapshots $from..$BUILT_N built in $((SECONDS - t_all)) s"
}
build_snapshots_1() {
  local sys=$1 fn=$2 from=$3 to=$4 seed=$5 budget=$6 n t0 left rw ms rc=0
  if declare -F "${fn}_build" >/dev/null; then
    left=$(budget_left "$budget")
    [ "$left" -gt 0 ] || return 0
    t0=$SECONDS
    "${fn}_build" "$from" "$to" "$seed" "$([ "$budget" -eq 0 ] && echo 0 || echo "$left")" \
      >"$WORK/build.out" 2>>"$BENCH_LOG" || rc=1
    BUILT_S=$((BUILT_S + SECONDS - t0))
    while IFS=, read -r n rw ms; do
      [[ $n =~ ^[0-9]+$ ]] || continue
      bench_csv_append "$MGMT" "$MGMT_HDR" "$sys,snapshot,$MGMT_SERIES,$CUR_SIZE,$n,$ms"
      BUILT_N=$n
    done <"$WORK/build.out"
    if [ "$rc" != 0 ]; then
      check_result "$sys" build "$((BUILT_N + 1))" FAIL "building snapshots $from..$to failed, see $BENCH_LOG"
      return 1
    fi
    return 0
  fi
  for ((n = from; n <= to; n++)); do
    [ "$(budget_left "$budget")" -gt 0 ] || return 0
    t0=$SECONDS
    rewrite "$fn" $((seed + n)) || { check_result "$sys" rewrite "$n" FAIL "rewrite failed"; return 1; }
    timed_op "$sys" "$fn" snapshot "$CUR_SIZE" "$n" "s$n" || return 1
    BUILT_S=$((BUILT_S + SECONDS - t0))
    BUILT_N=$n
  done
}

run_system() { # system
  local sys=$1 fn=${1//-/_} maxn n=0 t why d
  if ! why=$("${fn}_check"); then
    if [ "$STRICT" = 1 ]; then
      check_result "$sys" prerequisites - FAIL "$why"
    else
      bench_log "skipping $sys: $why"
      bench_csv_append "$CHECKS" "$CHECKS_HDR" "$sys,prerequisites,-,skipped,${why//,/;}"
    fi
    return 0
  fi
  maxn=$("${fn}_max_n")
  [ "$maxn" -gt "$NMAX" ] && maxn=$NMAX
  d=$WORK/$sys
  CUR_SIZE=$SIZE_B
  BUILT_S=0
  bench_log "$sys: $("${fn}_label"), building up to N=$maxn"
  bench_on_exit "${fn}_teardown"
  "${fn}_setup" "$d" "$SIZE_B" || { check_result "$sys" setup 0 FAIL "setup failed"; return 1; }
  serve_and "$fn" fill || { check_result "$sys" fill 0 FAIL "filling the disk failed"; "${fn}_teardown"; return 1; }
  # The budget counts the time spent building snapshots (rewrite +
  # snapshot), not the measurements at each N.
  # n: the largest N built so far (measured unless the budget stopped it)
  for t in $NLIST; do
    [ "$t" -le "$maxn" ] || break
    if [ "$t" -gt "$n" ]; then
      build_snapshots "$sys" "$fn" $((n + 1)) "$t" $((SEED * 1000)) "$BUDGET" || { n=$BUILT_N; break; }
      n=$BUILT_N
      if [ "$n" -lt "$t" ]; then
        bench_log "$sys: build budget of ${BUDGET}s spent at N=$n; larger N not measured"
        bench_csv_append "$CHECKS" "$CHECKS_HDR" "$sys,budget,$n,stopped,build budget ${BUDGET}s spent"
        break
      fi
    fi
    measure "$sys" "$fn" "$n" || break
    if [ "$n" -gt 0 ]; then
      # Drop the load's writes so every snapshot differs from the last by
      # the rewrite alone; then delete the newest snapshot and take it again
      # (same content), which times delete and create at this N.
      timed_op "$sys" "$fn" rollback "$SIZE_B" "$n" "s$n" || break
      timed_op "$sys" "$fn" delete-newest "$SIZE_B" "$n" "s$n" || break
      timed_op "$sys" "$fn" snapshot "$SIZE_B" "$n" "s$n" || break
    fi
  done
  bench_log "$sys: built N=$n in ${BUILT_S}s"
  verify_pass "$sys" "$fn" "$n"
  if [ "$n" -ge 3 ]; then
    # Retention deletes the oldest snapshot; a user cleaning up, any.
    timed_op "$sys" "$fn" delete-middle "$SIZE_B" "$n" "s$((n / 2))" &&
      timed_op "$sys" "$fn" delete-oldest "$SIZE_B" "$((n - 1))" s1 || true
  fi
  "${fn}_teardown"
}

# Management operations vs disk size: fill a disk of each size, take three
# snapshots with rewrites between, then roll back and delete.
mgmt_sweep() { # system
  local sys=$1 fn=${1//-/_} sz b d
  "${fn}_check" >/dev/null || return 0
  [ "$("${fn}_max_n")" -ge 3 ] || return 0
  for sz in $MGMT_SIZES; do
    b=$(to_bytes "$sz"); d=$WORK/$sys-size$sz; CUR_SIZE=$b
    bench_log "$sys: management ops on a $sz disk"
    "${fn}_setup" "$d" "$b" || { check_result "$sys" setup-size "$sz" FAIL "setup failed"; continue; }
    if serve_and "$fn" fill; then
      build_snapshots "$sys" "$fn" 1 3 $((SEED * 1000 + 900)) 0 &&
        [ "$BUILT_N" = 3 ] &&
        timed_op "$sys" "$fn" rollback "$b" 3 s3 &&
        timed_op "$sys" "$fn" delete-middle "$b" 3 s2 &&
        timed_op "$sys" "$fn" delete-oldest "$b" 2 s1 || true
    else
      check_result "$sys" fill-size "$sz" FAIL "fill failed"
    fi
    "${fn}_teardown"
  done
}

for s in $SYSTEMS; do run_system "$s"; done
MGMT_SERIES=size
for s in $SYSTEMS; do mgmt_sweep "$s"; done
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
echo "duration_s: $SECONDS (expected on an idle machine: $ETA_S)" >>"$OUT/meta.txt"

if [ "$PLOT" = 1 ] && [ -s "$RUNS" ]; then
  if command -v gnuplot >/dev/null; then
    "$BENCH_PY" "$BENCH_DIR/lib/report.py" --out "$OUT" --plot-dir "$OUT/img" \
      --gp "$BENCH_DIR/plot" >>"$BENCH_LOG" 2>&1 || check_result all plot - FAIL "figures failed, see $BENCH_LOG"
  else
    check_result all plot - FAIL "gnuplot not installed (apt-get install gnuplot-nox)"
  fi
fi
[ -s "$RUNS" ] || check_result all runs - FAIL "no system was measured"

FAILURES=$(grep -c ',FAIL,' "$CHECKS" 2>/dev/null)
bench_log "done: $(grep -c ',ok,' "$CHECKS" 2>/dev/null) checks passed, $FAILURES failed; results in $OUT"
[ "$FAILURES" -eq 0 ]
