#!/usr/bin/env bash
# Soak: COUNT messages (default 10^8) C++ -> C++ and PY_COUNT (default 10^6) C++ -> Python
# through one ring each, every message verified by the consumer (sequence number in
# order, length, CRC-32 of the body; tests/tools/shmring_peer.cpp describes the format),
# then end of stream. Sizes are uniform in 0..MAX_SIZE (default 256) bytes; the ring
# has 1 MiB (C++) / 64 KiB (Python). Prints counts, bytes, wall time and rate, and ends
# with "soak: PASS" or "soak: FAIL". Bounded in time: a consumer waits at most 60 s for
# any one message. Not part of scripts/test.sh.
# Usage: scripts/soak.sh [COUNT] [PY_COUNT] [MAX_SIZE]   (SHMRING_BUILD_DIR, default build)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
count="${1:-100000000}"
py_count="${2:-1000000}"
max_size="${3:-256}"
build="${SHMRING_BUILD_DIR:-build}"
peer="$build/tests/tools/shmring_peer"
[[ -f "$build/build.ninja" ]] || meson setup "$build" >/dev/null || exit 1
ninja -C "$build" tests/tools/shmring_peer >/dev/null || exit 1
tmp=$(mktemp -d)
names=()
trap 'for n in "${names[@]}"; do rm -f "/dev/shm/$n"; done; rm -rf "$tmp"' EXIT
now_ms() { echo $(($(date +%s%N) / 1000000)); }
rc=0

report() {  # LABEL COUNT START_MS OUTPUT
  local ms=$(($(now_ms) - $3))
  echo "soak: $1: $2 messages verified, $(grep -o '[0-9]* bytes' <<<"$4" | head -1), $((ms / 1000)).$(printf %03d $((ms % 1000))) s, $(($2 * 1000 / (ms > 0 ? ms : 1))) messages/s"
}

if ((count > 0)); then
  name="soak-$$-$RANDOM-c"; names+=("$name")
  start=$(now_ms)
  "$peer" consume "$name" --count "$count" --timeout-ms 60000 >"$tmp/c.out" 2>"$tmp/c.err" &
  cpid=$!
  "$peer" produce "$name" --count "$count" --seed 11 --max-size "$max_size" --capacity 1048576 \
    --wait-consumer-ms 60000 >"$tmp/p.out" 2>"$tmp/p.err" || { rc=1; cat "$tmp/p.err"; }
  wait "$cpid" || { rc=1; cat "$tmp/c.err"; }
  if ((rc == 0)) && grep -q "consumed $count messages" "$tmp/c.out"; then
    report "C++ -> C++" "$count" "$start" "$(cat "$tmp/c.out")"
  else
    rc=1; echo "soak: C++ -> C++ failed: $(cat "$tmp/c.out" "$tmp/c.err" "$tmp/p.err")"
  fi
fi

if ((py_count > 0)); then
  name="soak-$$-$RANDOM-p"; names+=("$name")
  start=$(now_ms)
  "$peer" produce "$name" --count "$py_count" --seed 12 --max-size "$max_size" --capacity 65536 \
    --wait-consumer-ms 60000 >"$tmp/p.out" 2>"$tmp/p.err" &
  ppid_=$!
  PYTHONPATH="$root/python:$root/tests/python" PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 - \
    "$name" "$py_count" >"$tmp/py.out" 2>&1 <<'PY'
import sys
from peer_format import check
from shmring import ShmConsumer

name, count = sys.argv[1], int(sys.argv[2])
total = 0
with ShmConsumer(name, timeout=60) as c:
    for seq in range(count):
        with c.read_view(timeout=60) as view:
            if view is None:
                sys.exit(f"stream ended before message {seq}")
            problem = check(view, seq)
            if problem:
                sys.exit(problem)
            total += len(view)
    if c.read(timeout=60) is not None:
        sys.exit("a message after the last one")
print(f"consumed {count} messages, {total} bytes")
PY
  prc=$?
  wait "$ppid_" || { rc=1; cat "$tmp/p.err"; }
  if ((prc == 0)); then
    report "C++ -> Python" "$py_count" "$start" "$(cat "$tmp/py.out")"
  else
    rc=1; echo "soak: C++ -> Python failed: $(cat "$tmp/py.out")"
  fi
fi
((rc == 0)) && echo "soak: PASS" || echo "soak: FAIL"
exit $rc
