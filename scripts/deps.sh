#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages shmring needs, only those missing.
# Usage: scripts/deps.sh [--bench] [--windows]   (as root, or with sudo available)
# --windows: Wine too, for scripts/test-windows.sh (the default run does not need it).
set -euo pipefail
pkgs=(meson ninja-build pkg-config g++ libgtest-dev
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
      gstreamer1.0-tools python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0
      gstreamer1.0-plugins-ugly gstreamer1.0-libav  # x264enc, avdec_h264 (gst_sender_streams)
      python3-numpy python3-pytest python3-hypothesis python3-mypy python3-pyflakes
      python3-dev                  # shmring._native, the Python package's optional C wait helper
      python3-pip python3-venv python3-setuptools python3-wheel  # offline pip/venv/wheel installs
      g++-mingw-w64-x86-64-posix   # the Windows compile check (tests/integration/mingw_compile.sh)
      clang-format-14              # the formatting check (tests/integration/clang_format.sh)
      clang-14 libclang-rt-14-dev) # sanitizer and fuzz builds (scripts/test-sanitizers.sh)
for arg in "$@"; do
  case "$arg" in
    --bench)  # scripts/bench.sh: plots, the iceoryx peer and its RouDi
      pkgs+=(python3-matplotlib libboost-dev cmake iceoryx libiceoryx-posh-dev libiceoryx-hoofs-dev) ;;
    --windows) pkgs+=(wine wine64 googletest) ;;  # googletest: the sources the cross build compiles
    *) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "shmring: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null; then
      echo "shmring: run as root or install sudo; packages needed: ${missing[*]}" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
