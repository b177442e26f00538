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

bench_now_ns() { date +%s%N; }
# Milliseconds (3 decimals) since a bench_now_ns stamp.
bench_ms_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }

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

# Start a server command in the background (its output goes to the log),
# record its pid in SERVER_PID and the launch time in SERVER_T0.
bench_server_start() {
  SERVER_T0=$(bench_now_ns)
  "$@" >>"$BENCH_LOG" 2>&1 &
  SERVER_PID=$!
  bench_track_pid "$SERVER_PID"
}

# Connect to the export, negotiate and read its first block; print the
# milliseconds since the server was launched (the "open time").
bench_probe_open() { # socket export
  python3 "$BENCH_DIR/lib/nbdprobe.py" --socket "$1" --export "${2:-}" \
    --since-ns "$SERVER_T0" --timeout 300
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
  if ! fio --name=job --ioengine=nbd --uri="$uri" --output-format=json \
       --output="$out" "$@" >>"$BENCH_LOG" 2>&1; then
    bench_log "fio failed: $* (see $out and $BENCH_LOG)"
    return 1
  fi
  python3 "$BENCH_DIR/lib/fiojson.py" check "$out" || return 1
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

# Host bytes allocated by a list of files or directories.
bench_alloc_bytes() { du -s -B1 "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

bench_csv_append() { # file header line
  [ -s "$1" ] || echo "$2" >"$1"
  echo "$3" >>"$1"
}
