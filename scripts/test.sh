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
rm -rf "$builddir/meson-logs/pytest"  # pytest suites write their JUnit files here
meson test -C "$builddir" --print-errorlogs --num-processes 2 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(/usr/bin/python3 scripts/summarize_tests.py "$builddir")
if [[ $rc -ne 0 && "$summary" == *", 0 failed"* ]]; then summary="${summary/, 0 failed/, 1 failed}"; fi
echo "$summary"
exit $rc
