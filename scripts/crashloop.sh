#!/usr/bin/env bash
# Crash loop: N times (default 100) a C++ producer (tests/tools/shmring_peer produce)
# is killed with SIGKILL at a random point, 20..300 ms after its ring is up, while one
# C++ consumer (shmring_peer consume-loop) reads and verifies every message: sequence
# numbers from 0 in order with no gap or repeat, length and CRC-32 of each body (no
# partial message). Every loop the consumer must report the dead producer before the
# next producer is started under the same name; that producer replaces the dead one's
# segment. Prints the figures and ends with "crashloop: PASS" or "crashloop: FAIL".
# Bounded in time: each wait gives up after 20 s. Not part of scripts/test.sh.
# Usage: scripts/crashloop.sh [N]   (SHMRING_BUILD_DIR: build directory, default build)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
loops="${1:-100}"
build="${SHMRING_BUILD_DIR:-build}"
peer="$build/tests/tools/shmring_peer"
[[ -f "$build/build.ninja" ]] || meson setup "$build" >/dev/null || exit 1
ninja -C "$build" tests/tools/shmring_peer >/dev/null || exit 1
name="crash-$$-$RANDOM"
tmp=$(mktemp -d)
ppid_=""
cleanup() {
  [[ -n "$ppid_" ]] && kill -9 "$ppid_" 2>/dev/null
  [[ -n "${cpid:-}" ]] && kill "$cpid" 2>/dev/null
  rm -f "/dev/shm/$name"
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "crashloop: $*"; tail -5 "$tmp/consumer.err" "$tmp/producer.err" 2>/dev/null; echo "crashloop: FAIL"; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
u32_at() { od -An -tu4 -j "$1" -N4 "/dev/shm/$name" 2>/dev/null | tr -d ' '; }

"$peer" consume-loop "$name" --loops "$loops" --timeout-ms 20000 >"$tmp/consumer.out" 2>"$tmp/consumer.err" &
cpid=$!
start=$(now_ms)
detect_total=0 detect_max=0
for ((i = 0; i < loops; i++)); do
  "$peer" produce "$name" --count 1000000000000 --seed "$i" --max-size 4096 --capacity 65536 \
    >/dev/null 2>"$tmp/producer.err" &
  ppid_=$!
  # Up: this producer's pid in the header and the magic stored (0x474E5253).
  t0=$(now_ms)
  until [[ "$(u32_at 36)" == "$ppid_" && "$(u32_at 12)" == 1196315219 ]]; do
    kill -0 "$ppid_" 2>/dev/null || fail "loop $i: producer exited: $(cat "$tmp/producer.err")"
    (($(now_ms) - t0 < 20000)) || fail "loop $i: producer's ring not up after 20 s"
    sleep 0.005
  done
  sleep "$(printf '0.%03d' $((20 + RANDOM % 281)))"
  kill -9 "$ppid_"
  wait "$ppid_" 2>/dev/null
  ppid_=""
  killed=$(now_ms)
  until grep -q "^loop $i: " "$tmp/consumer.out"; do
    kill -0 "$cpid" 2>/dev/null || { wait "$cpid"; fail "loop $i: consumer exited with status $?"; }
    (($(now_ms) - killed < 20000)) || fail "loop $i: consumer did not report the dead producer within 20 s"
    sleep 0.002
  done
  d=$(($(now_ms) - killed))
  detect_total=$((detect_total + d))
  ((d > detect_max)) && detect_max=$d
done
wait "$cpid"
crc=$?
cpid=""
((crc == 0)) || fail "consumer exited with status $crc"
wall=$(($(now_ms) - start))
msgs=$(awk '{ s += $5 } END { print s + 0 }' "$tmp/consumer.out")
lines=$(grep -c "producer dead" "$tmp/consumer.out")
((lines == loops)) || fail "consumer reported $lines deaths for $loops loops"
echo "crashloop: $loops loops, $msgs messages verified (in order, none partial, duplicated or reordered)"
echo "crashloop: death reported after kill: mean $((detect_total / loops)) ms, max $detect_max ms (includes this script's 2 ms polling)"
echo "crashloop: wall time $((wall / 1000)).$(printf %03d $((wall % 1000))) s"
echo "crashloop: PASS"
