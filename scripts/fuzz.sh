#!/usr/bin/env bash
# Long libFuzzer runs of the two targets in tests/fuzz/ (the hostile-segment consumer
# and the profile-1 decoder), SECONDS each (default 300), with a random seed and a corpus
# kept across runs in build-asan/fuzz-corpus/<target>/. Builds build-asan/ first
# (scripts/test-sanitizers.sh's configuration). A crash leaves its input in
# build-asan/fuzz-artifacts/ and fails the run; reproduce it with
#   build-asan/tests/fuzz/fuzz_<target> build-asan/fuzz-artifacts/fuzz_<target>-crash-...
# Usage: scripts/fuzz.sh [SECONDS] [segment|framing ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-300}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(segment framing)
dir=build-asan
if [[ ! -f "$dir/build.ninja" ]]; then
  CC=clang-14 CXX=clang++-14 meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dpython=disabled -Dbench=false >/dev/null
fi
ninja -C "$dir" "${targets[@]/#/tests/fuzz/fuzz_}" >/dev/null
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
rc=0
for t in "${targets[@]}"; do
  echo "== fuzz_$t for $seconds s"
  start=$(date +%s)
  tests/fuzz/run_fuzz.sh "$dir/tests/fuzz/fuzz_$t" "$t" tests/vectors 0 "$seconds" \
    "$dir/fuzz-artifacts" "$dir/fuzz-corpus/$t" 2>"$dir/fuzz-$t.log" || rc=1
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+ +DONE|ERROR|Test unit written' \
    "$dir/fuzz-$t.log" || true
  echo "fuzz_$t: $(($(date +%s) - start)) s, corpus $(ls "$dir/fuzz-corpus/$t" | wc -l) inputs, $([[ $rc == 0 ]] && echo clean || echo 'FAILED (see '"$dir/fuzz-$t.log"')')"
done
exit $rc
