#!/usr/bin/env bash
# `meson install` into a DESTDIR, then build and run a program the way a user of
# the installed library would: only `pkg-config --cflags --libs shmring`.
# Checks the headers land in <includedir>/shmring/shm/ (never <includedir>/shm/).
# Usage: install_pkgconfig.sh MESON BUILD_DIR CXX
set -euo pipefail
meson="$1"; build="$2"; cxx="$3"
work="$(mktemp -d "${TMPDIR:-/tmp}/shmring-install.XXXXXX")"
name="inst-$$-$RANDOM"
trap 'rm -rf "$work"; rm -f "/dev/shm/$name"' EXIT
destdir="$work/root"

"$meson" install -C "$build" --destdir "$destdir" --no-rebuild --tags devel --quiet

pc="$(find "$destdir" -name shmring.pc | head -n 1)"
[[ -n "$pc" ]] || { echo "FAIL: no shmring.pc under $destdir"; exit 1; }
header="$(find "$destdir" -path '*/include/shmring/shm/shm_channel.hpp' | head -n 1)"
[[ -n "$header" ]] || { echo "FAIL: shm_channel.hpp is not under include/shmring/shm/"; exit 1; }
if find "$destdir" -path '*/include/shm' -type d | grep -q .; then
  echo "FAIL: headers claim <includedir>/shm"; exit 1
fi

export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_LIBDIR="$PKG_CONFIG_PATH"  # only the DESTDIR's .pc files
export PKG_CONFIG_SYSROOT_DIR="$destdir"
flags="$(pkg-config --cflags --libs shmring)"
echo "pkg-config --cflags --libs shmring: $flags"
[[ "$flags" == *"$destdir"*"/include/shmring"* ]] || { echo "FAIL: -I does not point at include/shmring"; exit 1; }

cat > "$work/user.cpp" <<'CPP'
#include <cstdio>
#include <cstring>
#include <string>

#include "shm/shm_channel.hpp"

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "inst";
  shm::ShmProducer producer(name.c_str(), 4096);
  shm::ShmConsumer consumer(name.c_str());
  if (!producer.IsValid() || !consumer.IsValid()) {
    std::fprintf(stderr, "%s%s\n", producer.error().c_str(), consumer.error().c_str());
    return 1;
  }
  if (!producer.Write("installed", 9)) return 1;
  char out[16] = {};
  const uint32_t n = consumer.Read(out, sizeof out);
  if (n != 9 || std::memcmp(out, "installed", 9) != 0) return 1;
  std::printf("read '%.*s' through the installed library\n", static_cast<int>(n), out);
  return 0;
}
CPP
# shellcheck disable=SC2086  # the flags are words
"$cxx" -std=c++17 -Wall -Werror "$work/user.cpp" -o "$work/user" $flags
"$work/user" "$name"
