#!/usr/bin/env bash
# Windows, proven under Wine: installs the MinGW-w64 cross compiler and Wine if
# missing (scripts/deps.sh --windows), cross-builds the core, its GoogleTest suites,
# the original-API programs and the two-process tests for 64-bit Windows with
# cross/mingw-w64.txt into build-windows/, runs every registered test under Wine
# (Meson's exe wrapper) and ends with "N passed, N failed, N skipped" like
# scripts/test.sh. Extra arguments go to `meson test` (e.g. a test name).
# The Wine prefix lives in the build directory; the wineserver it started is
# stopped at the end. Not part of scripts/test.sh (see README "Platforms").
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
fail() { echo "$1" >&2; echo "0 passed, 1 failed"; exit 1; }
scripts/deps.sh --windows || fail "scripts/deps.sh --windows failed"
builddir="${SHMRING_WINDOWS_BUILD_DIR:-build-windows}"
if [[ -f "$builddir/build.ninja" ]]; then
  meson setup --reconfigure "$builddir" >/dev/null || fail "meson setup --reconfigure failed"
else
  meson setup --cross-file cross/mingw-w64.txt "$builddir" || fail "meson setup failed"
fi
ninja -C "$builddir" || fail "cross build failed"

export WINEPREFIX="$root/$builddir/wineprefix"
export WINEDEBUG=-all                   # Wine's own fixme/err chatter
export WINEDLLOVERRIDES="mscoree,mshtml="  # no Mono/Gecko install prompts
unset DISPLAY                           # console programs only
trap 'wineserver -k 2>/dev/null || true' EXIT
if [[ ! -f "$WINEPREFIX/system.reg" ]]; then
  echo "shmring: creating the Wine prefix $WINEPREFIX (once per build directory)"
  wineboot -i >/dev/null 2>&1 || fail "wineboot -i failed"
  wineserver -w
fi

rm -f "$builddir/meson-logs/testlog.junit.xml"
meson test -C "$builddir" --print-errorlogs --num-processes 2 "$@" 2>&1 \
  | tee "$builddir/meson-logs/test-summary.txt"
rc=${PIPESTATUS[0]}
sed -n 's/^Message: \(not on Windows: .*\)/\1/p' "$builddir/meson-logs/meson-log.txt" | sort -u
summary=$(/usr/bin/python3 scripts/summarize_tests.py "$builddir")
if [[ $rc -ne 0 && "$summary" == *", 0 failed"* ]]; then summary="${summary/, 0 failed/, 1 failed}"; fi
if [[ "$summary" == "0 passed, 0 failed"* ]]; then echo "no test ran"; summary="0 passed, 1 failed"; rc=1; fi
echo "$summary"
exit $rc
