# shellcheck shell=bash
# Shared helpers for bench/paper.sh: logging, cleanup, NBD servers, fio.
#
# Every process the harness starts is registered with bench_track_pid and
# every resource (mount, pool, directory) with bench_on_exit; bench_cleanup
# (installed as an EXIT/INT/TERM trap by paper.sh) undoes them in reverse
# order, so a failed or interrupted run leaves nothing behind.

BENCH_PIDS=()
BENCH_EXIT_CMDS=()

bench_log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
bench_die() { bench_log "ERROR: $*"; exit 1; }

bench_track_pid() { BENCH_PIDS+=("$1"); }
bench_untrack_pid() {
  local p keep=()
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}
# Run a shell command at exit (last registered runs first).
bench_on_exit() { BENCH_EXIT_CMDS+=("$1"); }

bench_cleanup() {
  local rc=$? p i
  trap - EXIT INT TERM
  for p in "${BENCH_PIDS[@]}"; do
    kill "$p" 2>/dev/null && bench_wait_gone "$p" 100
    kill -9 "$p" 2>/dev/null
  done
  BENCH_PIDS=()
  for ((i = ${#BENCH_EXIT_CMDS[@]} - 1; i >= 0; i--)); do
    eval "${BENCH_EXIT_CMDS[$i]}" >/dev/null 2>&1 || true
  done
  BENCH_EXIT_CMDS=()
  return "$rc"
}

# bench_wait_gone PID TENTHS: wait up to TENTHS/10 s for PID to exit.
bench_wait_gone() {
  local n=0
  while kill -0 "$1" 2>/dev/null && [ "$n" -lt "$2" ]; do sleep 0.1; n=$((n + 1)); done
  ! kill -0 "$1" 2>/dev/null
}

# Wall-clock nanoseconds (microsecond resolution) without forking date(1).
bench_now_ns() { local t=${EPOCHREALTIME/[.,]/}; echo "${t}000"; }
# Milliseconds (3 decimals) since a bench_now_ns stamp.
bench_ms_since() { awk -v a="$1" -v b="$(bench_now_ns)" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }

# bench_time_op CMD...: run CMD in this shell (adapters keep state in shell
# variables, so no subshell), output to $BENCH_LOG; elapsed ms in TIMED_MS.
bench_time_op() {
  local t0 rc
  t0=$(bench_now_ns)
  "$@" >>"$BENCH_LOG" 2>&1
  rc=$?
  TIMED_MS=$(bench_ms_since "$t0")
  [ "$rc" -eq 0 ] || bench_log "command failed ($rc): $*"
  return "$rc"
}

# The Python interpreter the helpers run under: the system one when present
# (a pyenv shim adds a second or more of start-up per call on a busy machine).
if [ -z "${BENCH_PY:-}" ]; then
  if [ -x /usr/bin/python3 ]; then BENCH_PY=/usr/bin/python3; else BENCH_PY=python3; fi
fi

# Start a server command in the background (its output goes to the log),
# record its pid in SERVER_PID and the launch time in SERVER_T0.
#
# The export open time is measured by nbdprobe.py, which is started (and
# waited for, through a FIFO) before the server, so that its own start-up is
# not counted: it then connects as soon as the socket accepts, negotiates
# NBD_OPT_GO for $SYS_EXPORT and reads the first block; bench_probe_open
# collects the result.  A stale socket file at $SYS_SOCK (nbdkit leaves its
# socket behind when killed) is removed first, else the server could not
# bind it.
bench_server_start() {
  local fifo=$WORK/probe.fifo
  SYS_SOCK=${SYS_SOCK:-$SOCK}
  rm -f "$SYS_SOCK" "$fifo" "$WORK/probe.pid" "$WORK/probe.out"
  mkfifo "$fifo" || return 1
  "$BENCH_PY" "$BENCH_DIR/lib/nbdprobe.py" --socket "$SYS_SOCK" --export "${SYS_EXPORT:-}" \
    --ready-fifo "$fifo" --pid-file "$WORK/probe.pid" --timeout 300 \
    >"$WORK/probe.out" 2>>"$BENCH_LOG" &
  PROBE_PID=$!
  bench_track_pid "$PROBE_PID"
  if ! read -r -t 60 _ <>"$fifo"; then
    bench_log "the open-time probe did not start"
    return 1
  fi
  SERVER_T0=$(bench_now_ns)
  "$@" >>"$BENCH_LOG" 2>&1 &
  SERVER_PID=$!
  bench_track_pid "$SERVER_PID"
  echo "$SERVER_PID" >"$WORK/probe.pid.new" && mv "$WORK/probe.pid.new" "$WORK/probe.pid"
}

# Wait for the probe started with the server; set OPEN_MS to the export
# open time: milliseconds from the server's launch to the first block read
# back.  (Not a command substitution: the probe is this shell's child.)
bench_probe_open() {
  local end rc
  OPEN_MS=
  wait "$PROBE_PID"
  rc=$?
  bench_untrack_pid "$PROBE_PID"
  [ "$rc" -eq 0 ] || return 1
  end=$(cat "$WORK/probe.out") || return 1
  [[ $end =~ ^[0-9]+$ ]] || { bench_log "probe printed '$end'"; return 1; }
  OPEN_MS=$(awk -v a="$SERVER_T0" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
}

# Peak resident set of the server so far, in KiB (VmHWM).
bench_server_rss_kb() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

bench_server_stop() {
  [ -n "${SERVER_PID:-}" ] || return 0
  kill "$SERVER_PID" 2>/dev/null
  bench_wait_gone "$SERVER_PID" 300 || kill -9 "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  bench_untrack_pid "$SERVER_PID"
  SERVER_PID=
  [ -z "${SYS_SOCK:-}" ] || rm -f "$SYS_SOCK"
}

# Wait until a Unix socket exists (servers that create it late).
bench_wait_socket() { # path tenths
  local n=0
  while [ ! -S "$1" ] && [ "$n" -lt "${2:-300}" ]; do sleep 0.1; n=$((n + 1)); done
  [ -S "$1" ]
}

bench_nbd_uri() { # socket export
  printf 'nbd+unix:///%s?socket=%s' "${2:-}" "$1"
}

# bench_fio OUTJSON URI ARGS...: run one fio job over NBD; JSON to OUTJSON.
# Fails if fio fails or any job reports an error.
bench_fio() {
  local out=$1 uri=$2; shift 2
  if ! fio --name=job --ioengine=nbd --uri="$uri" --verify_state_save=0 --output-format=json \
       --output="$out" "$@" >>"$BENCH_LOG" 2>&1; then
    bench_log "fio failed: $* (see $out and $BENCH_LOG)"
    return 1
  fi
  "$BENCH_PY" "$BENCH_DIR/lib/fiojson.py" check "$out" || return 1
}

# Rewrite about PCT percent of the disk at random, in EXTENT-sized aligned
# writes, deterministically from SEED.  Prints the number of writes.
bench_rewrite() { # uri size_bytes pct extent_bytes seed outjson
  local count
  count=$(awk -v s="$2" -v p="$3" -v e="$4" 'BEGIN { c = int(s * p / 100 / e); if (c < 1) c = 1; print c }')
  bench_fio "$6" "$1" --rw=randwrite --bs="$4" --blockalign="$4" --iodepth=16 \
    --number_ios="$count" --io_size="$(( count * $4 ))" --randrepeat=0 --randseed="$5" \
    --size="$2" || return 1
  echo "$count"
}

# bench_rewrite_offsets SIZE PCT EXTENT SEED: the offsets (one a line) of
# the same number of EXTENT-aligned writes as bench_rewrite, uniformly at
# random, deterministic from SEED; for adapters that write offline.
bench_rewrite_offsets() {
  awk -v s="$1" -v p="$2" -v e="$3" -v seed="$4" 'BEGIN {
    c = int(s * p / 100 / e); if (c < 1) c = 1
    srand(seed); slots = int(s / e)
    for (i = 0; i < c; i++) printf "%d\n", int(rand() * slots) * e
  }'
}

# Host bytes allocated by a list of files or directories.
bench_alloc_bytes() { du -s -B1 "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

bench_csv_append() { # file header line
  [ -s "$1" ] || echo "$2" >"$1"
  echo "$3" >>"$1"
}
