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
# Adds a sub-run's closing line ($1) to the summary; a sub-run without one counts as
# a failure.
add_counts() {
  local re='([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?'
  if [[ "$summary" =~ $re ]]; then
    local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
    if [[ "$1" =~ $re ]]; then
      p=$((p + BASH_REMATCH[1])) f=$((f + BASH_REMATCH[2])) s=$((s + ${BASH_REMATCH[4]:-0}))
    else
      f=$((f + 1))
    fi
    summary="$p passed, $f failed, $s skipped"
    ((f == 0)) || rc=1
  fi
}
# Sanitizer builds and fuzz runs (build-asan/, build-tsan/) after a full run, counted
# in the closing line; skipped when arguments select tests or SHMRING_SANITIZERS=0.
if [[ $# -eq 0 && "${SHMRING_SANITIZERS:-1}" != 0 ]]; then
  sanlog="$builddir/meson-logs/sanitizers.txt"
  scripts/test-sanitizers.sh 2>&1 | tee "$sanlog"
  add_counts "$(tail -n 1 "$sanlog")"
fi
# Windows under Wine (scripts/test-windows.sh, build-windows/), only with SHMRING_WINDOWS=1
# (about a minute more; the default run stays well inside its time budget without it),
# after a full run, counted in the closing line. Needs Wine (scripts/deps.sh --windows).
if [[ $# -eq 0 && "${SHMRING_WINDOWS:-0}" == 1 ]]; then
  if command -v wine >/dev/null && command -v x86_64-w64-mingw32-g++-posix >/dev/null; then
    winlog="$builddir/meson-logs/windows.txt"
    scripts/test-windows.sh 2>&1 | tee "$winlog"
    add_counts "$(tail -n 1 "$winlog")"
  else
    echo "Windows tests not run: Wine or MinGW-w64 missing (scripts/deps.sh --windows installs them)"
    add_counts ""  # asked for and not run: a failure
  fi
fi
echo "$summary"
exit $rc
