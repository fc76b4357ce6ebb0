#!/usr/bin/env bash
# Sanitizer and fuzz runs, beside the main build (scripts/test.sh runs this after its
# own suites and adds the counts to its closing line):
#   build-asan/  clang-14, -Db_sanitize=address,undefined: the core and original-API
#                (compat) suites, the C++ two-process examples test, the GStreamer element
#                suites (in-process registry scan, GST_REGISTRY_FORK=no) and short
#                fixed-seed libFuzzer runs
#   build-tsan/  clang-14, -Db_sanitize=thread: the core and compat suites, the examples test
# Both are configured with -Dpython=disabled -Dbench=false, which this also proves
# configures, builds and tests. Any sanitizer report fails the test that produced it
# (UBSan and TSan halt on the first report; LeakSanitizer is on under ASan).
# Ends with "N passed, N failed, N skipped" over both configurations.
# Usage: scripts/test-sanitizers.sh [asan] [tsan]   (default: both)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
configs=("$@")
((${#configs[@]})) || configs=(asan tsan)
if ! command -v clang++-14 >/dev/null || ! command -v clang-14 >/dev/null; then
  echo "clang-14 is not installed (scripts/deps.sh installs it): sanitizer runs skipped"
  echo "0 passed, 0 failed, ${#configs[@]} skipped"
  exit 0
fi
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# fast_unwind_on_malloc=0: GLib has no frame pointers, so only a full unwind reaches
# _dl_init for the suppression in tests/sanitizers/lsan.supp.
export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1:fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
passed=0 failed=0 skipped=0 rc=0

add() {  # add "N passed, N failed, N skipped" to the totals
  [[ "$1" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)? ]] || { failed=$((failed + 1)); return; }
  passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
  skipped=$((skipped + ${BASH_REMATCH[4]:-0}))
}

run_config() {  # NAME SANITIZE SUITES NAMES MESON_OPTION...
  local name="$1" sanitize="$2" suites="$3" names="$4"; shift 4
  local dir="build-$name"
  echo "== $dir: -Db_sanitize=$sanitize"
  if [[ -f "$dir/build.ninja" ]]; then
    meson setup --reconfigure "$dir" >/dev/null || { echo "$dir: meson setup failed"; add "0 passed, 1 failed"; rc=1; return; }
  else
    CC=clang-14 CXX=clang++-14 meson setup "$dir" -Db_sanitize="$sanitize" -Db_lundef=false \
      -Dpython=disabled -Dbench=false "$@" >/dev/null ||
      { echo "$dir: meson setup failed"; add "0 passed, 1 failed"; rc=1; return; }
  fi
  ninja -C "$dir" >"$dir/meson-logs/ninja.txt" 2>&1 ||
    { tail -40 "$dir/meson-logs/ninja.txt"; add "0 passed, 1 failed"; rc=1; return; }
  local tests=()
  mapfile -t tests < <(meson test -C "$dir" --list 2>/dev/null |
    awk -F' / ' -v s="$suites" -v n="$names" '{ split($1, a, ":"); if (index(" " s " ", " " a[2] " ") || index(" " n " ", " " $2 " ")) print $2 }')
  if ((${#tests[@]} == 0)); then echo "$dir: no test selected"; add "0 passed, 1 failed"; rc=1; return; fi
  if [[ "$sanitize" == address* && -d "$dir/tests/gst" ]]; then
    # The first run of a registry scan loads every installed plugin in-process, and some
    # of them leak at load time: scan once with leak checks off, then the suites load
    # only the plugins they use.
    local t
    for t in "$dir"/tests/gst/test_gst_*; do
      [[ -x "$t" && -f "$t" ]] || continue
      local first
      first=$("$t" --gtest_list_tests 2>/dev/null | awk '/^[^ ]/ { s = $1 } /^  / { print s $1; exit }')
      GST_REGISTRY_FORK=no GST_PLUGIN_PATH="$root/$dir/gst-plugin" \
        GST_REGISTRY="$root/$dir/tests/gst/gst-registry.bin" ASAN_OPTIONS=detect_leaks=0 \
        "$t" --gtest_filter="$first" >/dev/null 2>&1 || true
    done
  fi
  rm -f "$dir/meson-logs/testlog.junit.xml"
  GST_REGISTRY_FORK=no meson test -C "$dir" --print-errorlogs --num-processes 2 "${tests[@]}" 2>&1 |
    tee "$dir/meson-logs/test-summary.txt" | grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Skipped|Timeout):|ERROR|Sanitizer|runtime error'
  local trc=${PIPESTATUS[0]}
  local line
  line=$(/usr/bin/python3 scripts/summarize_tests.py "$dir")
  if [[ $trc -ne 0 && "$line" == *", 0 failed"* ]]; then line="${line/, 0 failed/, 1 failed}"; fi
  ((trc == 0)) || rc=1
  echo "$dir: $line"
  add "$line"
}

for c in "${configs[@]}"; do
  case "$c" in
    asan) run_config asan address,undefined "core compat gst fuzz" "cpp_examples" ;;
    tsan) run_config tsan thread "core compat" "cpp_examples" -Dgst=disabled ;;
    *) echo "unknown configuration $c (asan, tsan)"; add "0 passed, 1 failed"; rc=1 ;;
  esac
done
echo "$passed passed, $failed failed, $skipped skipped"
exit $rc
