#!/usr/bin/env bash
# The one benchmark command: installs the --bench packages, builds a RELEASE build in
# build-bench/ (its own directory: the default build is debugoptimized), runs every benchmark
# (bench/bench.py) and rewrites docs/BENCHMARKS.md and docs/bench/*.png.
# Usage: scripts/bench.sh [--smoke] [extra bench/bench.py options]
#   --smoke   every program once with tiny counts, report written to build-bench/smoke-docs/
# Run it on an otherwise idle machine: bench.py waits (at most 3 min) for the CPUs to be quiet
# after the build, and the report records how busy they were and the load average.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh --bench
builddir="${SHMRING_BENCH_BUILD_DIR:-build-bench}"
if [[ -f "$builddir/build.ninja" ]]; then
  meson setup --reconfigure "$builddir" -Dbuildtype=release >/dev/null
else
  meson setup "$builddir" -Dbuildtype=release
fi
# Only what the benchmarks run (the tests are not built: build-bench is not a test build).
ninja -C "$builddir" bench/ring_bench bench/idle_receiver bench/gst_fanout_sender \
  gst-plugin/libgstshmring.so tests/tools/shmring_peer \
  $(ninja -C "$builddir" -t targets all 2>/dev/null | grep -o '^bench/iox_bench:' | tr -d :)
out="docs"
if [[ "${1:-}" == "--smoke" ]]; then out="$builddir/smoke-docs"; fi
/usr/bin/python3 bench/bench.py --build "$builddir" --out "$out" "$@"
echo "shmring: wrote $out/BENCHMARKS.md and $out/bench/"
