#!/bin/bash
# kill -9 vmsnapd at random moments while a client writes and flushes, and
# snapshots, clones and deletes are in flight; restart it and check that
# every acknowledged flush is on disk, every snapshot and clone reads back
# the checksum recorded when it was made, acknowledged deletes stay done,
# `check` is clean (daemon and `vmsnap --json check`) and the reaper drains.
# The work is in crashcheck.py (see there).
#
#   VMS_KILLS=N   kills (default 20, the CI run; 200 for the long run)
#   VMS_SEED=S    replay the choices of a run (the seed is printed)
. "$(dirname "$0")/lib.sh" "$@"
need python3

need_built

HOME_DIR=$T/home
KILLS=${VMS_KILLS:-20}
SEED=${VMS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "seed $SEED (replay with VMS_SEED=$SEED)" >&2

t_begin "native SR and vm1 with a 16 MiB disk, in process"
if out=$("$VMSNAP" --home "$HOME_DIR" --no-daemon sr create sr1 "$T/sr" --type native --size 256M 2>&1) &&
   out=$("$VMSNAP" --home "$HOME_DIR" --no-daemon vm create vm1 --sr sr1 --disk root:16M 2>&1); then
  t_ok
else
  t_fail "$out"; t_end
fi

t_begin "$KILLS kills of vmsnapd under load: nothing acknowledged lost, check clean, reaper drains"
if python3 "$TOP/tests/integration/crashcheck.py" --vmsnapd "$VMSNAPD" --vmsnap "$VMSNAP" \
     --home "$HOME_DIR" --log "$T/vmsnapd.log" --kills "$KILLS" --seed "$SEED" >"$T/crash.out" 2>&1; then
  t_ok
  tail -1 "$T/crash.out" >&2
else
  grep -v '^round [0-9]*: ok' "$T/crash.out" | tail -30 >&2
  echo "--- daemon log tail" >&2; tail -20 "$T/vmsnapd.log" >&2
  t_fail "seed $SEED"
fi

t_begin "after the last clean stop, an in-process check agrees"
out=$("$VMSNAP" --home "$HOME_DIR" --no-daemon --json check 2>&1)
if [ "$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["ok"])' 2>&1)" = True ]; then
  t_ok
else
  t_fail "$(printf '%s' "$out" | head -c 2000)"
fi
t_end
