#!/usr/bin/env bash
# The one test command: installs what is missing, builds into build/, runs every
# test suite registered with meson, and ends with "N passed, N failed".
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }
builddir="${SHMRING_BUILD_DIR:-build}"
if [[ -f "$builddir/build.ninja" ]]; then
  meson setup --reconfigure "$builddir" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
else
  meson setup "$builddir" || { echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$builddir" || { echo "0 passed, 1 failed"; exit 1; }
log="$builddir/meson-logs/test-summary.txt"
meson test -C "$builddir" --print-errorlogs --num-processes 2 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
timeout=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
skipped=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
ok=${ok:-0}; fail=$(( ${fail:-0} + ${timeout:-0} ))
if [[ $rc -ne 0 && $fail -eq 0 ]]; then fail=1; fi
echo "${ok} passed, ${fail} failed, ${skipped:-0} skipped"
exit $rc
