#!/usr/bin/env bash
# The main-job command: installs what is missing, builds, then streams a moving test
# pattern between two processes through a shmring ring:
#
#   gst-launch-1.0 videotestsrc ! video/x-raw,format=BGR,... ! shmringsink   (process 1)
#   python3 python/examples/consumer_demo.py  (pure-Python FrameReader)     (process 2)
#
# The consumer prints frames/s, MB/s and end-to-end latency while it runs, then a summary,
# and saves one received frame as a PNG. Exits 0 when every frame arrived and the snapshot
# was written; removes its ring in every case.
#
# Usage: scripts/demo.sh [--frames N] [--snapshot PATH] [--width W] [--height H]
#                        [--name RING] [--pattern P] [--no-deps] [--no-build]
#   --frames N       frames to send at 30 frames/s (default 300, about 10 s)
#   --snapshot PATH  PNG of a received frame (default snapshot.png)
#   --width/--height frame size (default 1920x1080)
#   --name RING      ring name (default a unique demo-<pid>-<n>)
#   --pattern P      videotestsrc pattern (default smpte, scrolling 8 pixels a frame)
#   --no-deps        do not run scripts/deps.sh
#   --no-build       use the build directory as it is (implies --no-deps)
# Environment: SHMRING_BUILD_DIR (default build), PYTHON (default /usr/bin/python3).
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
frames=300 width=1920 height=1080 pattern=smpte deps=1 build=1
snapshot="snapshot.png"
name="demo-$$-${RANDOM}"
die() { echo "demo: $*" >&2; exit 1; }
need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "option $1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --frames) need_arg "$@"; frames="$2"; shift 2 ;;
    --snapshot) need_arg "$@"; snapshot="$2"; shift 2 ;;
    --width) need_arg "$@"; width="$2"; shift 2 ;;
    --height) need_arg "$@"; height="$2"; shift 2 ;;
    --name) need_arg "$@"; name="$2"; shift 2 ;;
    --pattern) need_arg "$@"; pattern="$2"; shift 2 ;;
    --no-deps) deps=0; shift ;;
    --no-build) deps=0; build=0; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "$frames" =~ ^[1-9][0-9]*$ ]] || die "--frames must be a positive integer, not '$frames'"
[[ "$width" =~ ^[1-9][0-9]*$ && "$height" =~ ^[1-9][0-9]*$ ]] \
  || die "--width/--height must be positive integers"
[[ "$name" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,29}$ ]] \
  || die "--name: 1..30 characters of [A-Za-z0-9._-], not starting with '.' or '-'"
case "$snapshot" in /*) ;; *) snapshot="$PWD/$snapshot" ;; esac

cd "$root" || die "cannot cd to $root"
builddir="${SHMRING_BUILD_DIR:-build}"
python="${PYTHON:-/usr/bin/python3}"

# 1. dependencies and build ------------------------------------------------------------
if [[ $deps -eq 1 ]]; then
  scripts/deps.sh || die "installing dependencies failed (scripts/deps.sh)"
fi
if [[ $build -eq 1 && ! -f "$builddir/build.ninja" ]]; then
  echo "demo: configuring $builddir"
  meson setup "$builddir" >"$root/.demo-setup.log" 2>&1 \
    || { cat "$root/.demo-setup.log" >&2; rm -f "$root/.demo-setup.log"; die "meson setup $builddir failed"; }
  rm -f "$root/.demo-setup.log"
fi
if [[ $build -eq 1 ]]; then
  echo "demo: building ($builddir)"
  ninja -C "$builddir" >/dev/null || { ninja -C "$builddir"; die "build failed"; }
fi
case "$builddir" in /*) plugin_dir="$builddir/gst-plugin" ;; *) plugin_dir="$root/$builddir/gst-plugin" ;; esac
[[ $build -eq 1 || -d "$(dirname "$plugin_dir")" ]] \
  || die "build directory $builddir does not exist: run without --no-build (or set SHMRING_BUILD_DIR)"
[[ -f "$plugin_dir/libgstshmring.so" ]] \
  || die "$plugin_dir/libgstshmring.so was not built (GStreamer development files missing?)"
export GST_PLUGIN_PATH="$plugin_dir${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}"
gst-inspect-1.0 shmringsink >/dev/null 2>&1 \
  || die "GStreamer cannot load shmringsink from $plugin_dir (try: GST_DEBUG=2 gst-inspect-1.0 shmringsink)"

# 2. the two processes -----------------------------------------------------------------
log="$(mktemp -t shmring-demo-gst.XXXXXX)"
cpid="" gpid=""
cleanup() {
  local pid
  for pid in $cpid $gpid; do kill "$pid" 2>/dev/null; done
  for pid in $cpid $gpid; do wait "$pid" 2>/dev/null; done
  # The producer unlinks its ring when it stops; this catches a killed one.
  rm -f "/dev/shm/$name" "$log" "$log.ready"
}
trap cleanup EXIT
# Ctrl-C reaches the whole process group: gst-launch -e turns it into EOS and the
# consumer then prints its summary; give them a moment, then stop whatever is left.
interrupted=0 interrupted_at=0
trap 'interrupted=1; interrupted_at=$SECONDS' INT
trap 'exit 143' TERM

caps="video/x-raw,format=BGR,width=$width,height=$height,framerate=30/1"
echo "demo: ring '$name': $frames frames ${width}x${height} BGR at 30 frames/s"
echo "  producer: gst-launch-1.0 -e videotestsrc pattern=$pattern horizontal-speed=8 is-live=true num-buffers=$frames ! $caps ! shmringsink shm-name=$name"
echo "  consumer: $python python/examples/consumer_demo.py --name $name --frames $frames --snapshot $snapshot"
# Either order works; the consumer starts first so that its start-up (Python, numpy)
# does not show up as latency of the first frames waiting in the ring.
ready="$log.ready"
# Each child is a subshell that drops this script's traps before exec: a signal that
# arrives between fork and exec must not run cleanup() in the child.
(trap - EXIT INT TERM
 exec "$python" python/examples/consumer_demo.py --name "$name" --frames "$frames" \
   --snapshot "$snapshot" --timeout 20 --ready-file "$ready") &
cpid=$!
for _ in $(seq 100); do [[ -e "$ready" ]] || ! kill -0 "$cpid" 2>/dev/null && break; sleep 0.1; done
(trap - EXIT INT TERM
 exec gst-launch-1.0 -e videotestsrc pattern="$pattern" horizontal-speed=8 is-live=true num-buffers="$frames" \
   ! "$caps" ! shmringsink shm-name="$name" >"$log" 2>&1) &
gpid=$!

# Wait for both; if either fails, stop the other instead of letting it wait.
crc="" grc="" stopped=""
while [[ -z "$crc" || -z "$grc" ]]; do
  if [[ -z "$crc" ]] && ! kill -0 "$cpid" 2>/dev/null; then
    wait "$cpid"; crc=$?; cpid=""
    if [[ $crc -ne 0 && -z "$grc" ]]; then stopped="producer"; kill "$gpid" 2>/dev/null; fi
  fi
  if [[ -z "$grc" ]] && ! kill -0 "$gpid" 2>/dev/null; then
    wait "$gpid"; grc=$?; gpid=""
    if [[ $grc -ne 0 && -z "$crc" ]]; then stopped="consumer"; kill "$cpid" 2>/dev/null; fi
  fi
  if [[ $interrupted -eq 1 && $((SECONDS - interrupted_at)) -ge 5 ]]; then
    for pid in $cpid $gpid; do kill "$pid" 2>/dev/null; done
  fi
  sleep 0.1
done
if [[ $interrupted -eq 1 ]]; then
  echo "demo: interrupted" >&2
  exit 130
fi

if [[ $grc -ne 0 && "$stopped" != "producer" ]]; then
  echo "demo: the producer (gst-launch-1.0) failed with status $grc:" >&2
  sed 's/^/  | /' "$log" >&2
fi
if [[ $crc -ne 0 && "$stopped" != "consumer" ]]; then
  die "FAILED: the consumer (consumer_demo.py) failed with status $crc${stopped:+; the $stopped was stopped}"
elif [[ $grc -ne 0 ]]; then
  die "FAILED: the producer failed with status $grc${stopped:+; the $stopped was stopped}"
fi
[[ -s "$snapshot" ]] || die "no snapshot was written to $snapshot"
echo "demo: OK: $frames frames through ring '$name'; snapshot: $snapshot"
