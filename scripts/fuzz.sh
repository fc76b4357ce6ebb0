#!/usr/bin/env bash
# Long libFuzzer runs of the two targets in tests/fuzz/ (the hostile-segment consumer
# and the profile-1 decoder), SECONDS each (default 300), and of the Python package with
# hypothesis (tests/python/test_fuzz_segments.py, target "python": batches of 2000
# cases with fresh random seeds until SECONDS pass). libFuzzer runs use a random seed and a corpus
# kept across runs in build-asan/fuzz-corpus/<target>/. Builds build-asan/ first
# (scripts/test-sanitizers.sh's configuration). A crash leaves its input in
# build-asan/fuzz-artifacts/ and fails the run; reproduce it with
#   build-asan/tests/fuzz/fuzz_<target> build-asan/fuzz-artifacts/fuzz_<target>-crash-...
# Usage: scripts/fuzz.sh [SECONDS] [segment|framing|python ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-300}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(segment framing python)
dir=build-asan
rc=0
if [[ " ${targets[*]} " == *" python "* ]]; then
  targets=("${targets[@]/python/}")
  echo "== python (hypothesis) for $seconds s"
  start=$(date +%s) cases=0
  while (($(date +%s) - start < seconds)); do
    SHMRING_FUZZ_EXAMPLES=2000 PYTHONPATH="$root/python" PYTHONDONTWRITEBYTECODE=1 \
      /usr/bin/python3 -m pytest -q -p no:cacheprovider --hypothesis-seed="$RANDOM$RANDOM" \
      tests/python/test_fuzz_segments.py >"/tmp/shmring-fuzz-python.log" 2>&1 ||
      { rc=1; tail -40 /tmp/shmring-fuzz-python.log; break; }
    cases=$((cases + 3 * 2000))
  done
  echo "python: $(($(date +%s) - start)) s, $cases cases (3 tests x 2000 per batch), $([[ $rc == 0 ]] && echo clean || echo FAILED)"
fi
read -r -a targets <<<"${targets[*]}"
((${#targets[@]})) || exit $rc
if [[ ! -f "$dir/build.ninja" ]]; then
  CC=clang-14 CXX=clang++-14 meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dpython=disabled -Dbench=false >/dev/null
fi
ninja -C "$dir" "${targets[@]/#/tests/fuzz/fuzz_}" >/dev/null
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
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
