#!/usr/bin/env bash
# The C++ examples run as two concurrent processes: the consumer starts first and
# waits for the producer; every frame is verified; both exit 0 at end of stream.
set -euo pipefail
producer="$1"; consumer="$2"
name="exm-$$-$RANDOM"
trap 'rm -f "/dev/shm/$name"' EXIT
"$consumer" --name "$name" --timeout-ms 30000 > "${TMPDIR:-/tmp}/$name.out" &
cpid=$!
"$producer" --name "$name" --frames 120 --width 320 --height 240
wait "$cpid"
cat "${TMPDIR:-/tmp}/$name.out"
grep -q "120 frames verified" "${TMPDIR:-/tmp}/$name.out"
rm -f "${TMPDIR:-/tmp}/$name.out"
[[ ! -e "/dev/shm/$name" ]] || { echo "producer left its segment behind"; exit 1; }
