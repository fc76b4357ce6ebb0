#!/usr/bin/env bash
# The one test command: installs what is missing, builds into build/, runs every
# test suite registered with meson, then the sanitizer and fuzz runs
# (scripts/test-sanitizers.sh), and ends with "N passed, N failed" over all of them.
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
# Fresh logs: the summary must never count an earlier run's results.
rm -rf "$builddir/meson-logs/pytest"  # pytest suites write their JUnit files here
rm -f "$builddir/meson-logs/testlog.junit.xml"
meson test -C "$builddir" --print-errorlogs --num-processes 2 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(/usr/bin/python3 scripts/summarize_tests.py "$builddir")
if [[ $rc -ne 0 && "$summary" == *", 0 failed"* ]]; then summary="${summary/, 0 failed/, 1 failed}"; fi
if [[ "$summary" == "0 passed, 0 failed"* ]]; then  # e.g. a --suite that matched nothing
  echo "no test ran"
  summary="0 passed, 1 failed"
  rc=1
fi
# Sanitizer builds and fuzz runs (build-asan/, build-tsan/) after a full run, counted
# in the closing line; skipped when arguments select tests or SHMRING_SANITIZERS=0.
if [[ $# -eq 0 && "${SHMRING_SANITIZERS:-1}" != 0 ]]; then
  sanlog="$builddir/meson-logs/sanitizers.txt"
  scripts/test-sanitizers.sh 2>&1 | tee "$sanlog"
  san=$(tail -n 1 "$sanlog")
  re='([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?'
  if [[ "$summary" =~ $re ]]; then
    p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
    if [[ "$san" =~ $re ]]; then
      p=$((p + BASH_REMATCH[1])) f=$((f + BASH_REMATCH[2])) s=$((s + ${BASH_REMATCH[4]:-0}))
    else
      f=$((f + 1)) rc=1
    fi
    summary="$p passed, $f failed, $s skipped"
    ((f == 0)) || rc=1
  fi
fi
echo "$summary"
exit $rc
