# shellcheck shell=bash
# Shared helpers of the integration tests.  Each test script is run by ctest
# as `bash tests/integration/test_X.sh BUILD_DIR` and sources this file:
#
#   . "$(dirname "$0")/lib.sh" "$@"
#   need qemu-img nbdinfo            # prerequisites (a failure under CI=true)
#   t_begin "what this step checks"; ...; t_ok   (or t_fail "why")
#   t_end                            # prints "N passed, N failed", sets the exit code
#
# Every script gets its own scratch directory $T (removed at exit, kept when
# VMS_KEEP=1) and registers cleanups with `on_exit CMD` (run in reverse
# order even when the script fails: daemons, loop mounts, zfs pools).
set -uo pipefail

BUILD=${1:-}
[ -n "$BUILD" ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
BUILD=$(cd "$BUILD" && pwd)
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$BUILD:$PATH"

T=$(mktemp -d "${TMPDIR:-/tmp}/vms-it.XXXXXX")
_cleanups=()
on_exit() { _cleanups+=("$*"); }
_run_cleanups() {
  local i
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
    eval "${_cleanups[$i]}" >/dev/null 2>&1 || true
  done
  if [ "${VMS_KEEP:-0}" = 1 ]; then echo "kept scratch dir $T" >&2; else rm -rf "$T"; fi
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

_passed=0
_failed=0
_step=""

# need PROG...: every program must be on PATH.  Under CI=true a missing one
# fails the test; elsewhere the test is skipped (exit 0 with a note).
# The project's own binaries: VMSNAPD and VMSNAP set from $BUILD; a test
# without them fails (never skips: they are what it tests).
need_built() {
  VMSNAPD=$BUILD/vmsnapd
  VMSNAP=$BUILD/vmsnap
  local b
  for b in "$VMSNAPD" "$VMSNAP"; do
    [ -x "$b" ] || { echo "FAIL: $b not built"; echo "0 passed, 1 failed"; exit 1; }
  done
}

need() {
  local p missing=()
  for p in "$@"; do command -v "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  if [ "${CI:-}" = true ]; then
    echo "FAIL: missing prerequisite(s): ${missing[*]} (run scripts/deps.sh)" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
  echo "SKIP: missing prerequisite(s): ${missing[*]}" >&2
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
}

t_begin() { _step=$*; }
t_ok() { _passed=$((_passed + 1)); echo "ok   $_step" >&2; }
t_fail() { _failed=$((_failed + 1)); echo "FAIL $_step${1:+: $*}" >&2; }

# check DESCRIPTION CMD...: run CMD, pass if it exits 0.
check() {
  local what=$1; shift
  t_begin "$what"
  local out
  if out=$("$@" 2>&1); then t_ok; else t_fail "$(printf '%s' "$out" | tail -5)"; fi
}

# check_fails DESCRIPTION EXPECTED_EXIT CMD...: CMD must exit with that code.
check_fails() {
  local what=$1 want=$2; shift 2
  t_begin "$what"
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" = "$want" ]; then t_ok; else t_fail "exit $rc, wanted $want: $(printf '%s' "$out" | tail -3)"; fi
}

t_end() {
  echo "$_passed passed, $_failed failed"
  [ "$_failed" -eq 0 ]
  exit $?
}

# daemon_env [DIR]: where a test's vmsnapd lives (HOME_DIR=$T/home, its NBD
# socket SOCK and control socket CTL in DIR, default HOME_DIR, log LOG), for
# the helpers below:
#   uri EXPORT             the NBD URI of an export on SOCK
#   ctl JSON               one control request; the response line on stdout
#   json_get JSON EXPR     EXPR evaluated in Python with j = the parsed JSON
#   ok_result RESPONSE     the response is a result, not an error
# A test that serves elsewhere (TCP, TLS) defines its own uri after this.
daemon_env() {
  HOME_DIR=$T/home
  SOCK=${1:-$HOME_DIR}/nbd.sock
  CTL=${1:-$HOME_DIR}/control.sock
  LOG=$T/vmsnapd.log
}
uri() { printf 'nbd+unix:///%s?socket=%s' "$1" "$SOCK"; }
ctl() { python3 "$TOP/tests/integration/nbd_ctl.py" "$CTL" "$1"; }
json_get() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
ok_result() { [ "$(json_get "$1" '"result" in j' 2>/dev/null)" = True ]; }

# wait_for_socket PATH [SECONDS]: wait until a Unix socket exists.
wait_for_socket() {
  local p=$1 n=$((${2:-10} * 10))
  while ((n-- > 0)); do [ -S "$p" ] && return 0; sleep 0.1; done
  return 1
}
