#!/usr/bin/env bash
# The Win32 code path of the core (CreateFileMapping, named-event waits, GCC atomics)
# compiles and links for Windows with MinGW-w64, warning-free. Skipped (77) where the
# cross compiler is not installed. Usage: mingw_compile.sh SOURCE_ROOT
set -euo pipefail
src="$1"
cxx=$(command -v x86_64-w64-mingw32-g++-posix || command -v x86_64-w64-mingw32-g++ || true)
[[ -n "$cxx" ]] || { echo "x86_64-w64-mingw32-g++ not installed: skipped"; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for f in "$src"/core/src/*.cpp; do
  "$cxx" -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$src/core/include" -c "$f" \
    -o "$out/$(basename "$f").o"
done
for ex in cpp_producer cpp_consumer; do
  "$cxx" -std=c++17 -Wall -Wextra -Werror -I"$src/core/include" "$src/examples/$ex.cpp" \
    "$out"/*.cpp.o -static -lsynchronization -o "$out/$ex.exe"
done
echo "core and examples built for Windows with $cxx"
