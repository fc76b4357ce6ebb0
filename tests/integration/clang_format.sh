#!/usr/bin/env bash
# Every C++ source and header in core/, gst-plugin/, tests/, examples/ and bench/, and
# every C source of the Python package's native helper (python/native/), is formatted as the repo's .clang-format says (clang-format-14 --dry-run -Werror).
# Lists the files that are not and how to fix them. Skipped (77) where clang-format-14
# is not installed (scripts/deps.sh installs it). Usage: clang_format.sh SOURCE_ROOT
set -euo pipefail
src="$1"
fmt=$(command -v clang-format-14 || true)
[[ -n "$fmt" ]] || { echo "clang-format-14 not installed: skipped"; exit 77; }
cd "$src"
mapfile -t files < <(find core gst-plugin tests examples bench python/native -type f \
  \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cc' -o -name '*.c' \) | sort)
((${#files[@]})) || { echo "no C/C++ file found under $src"; exit 1; }
bad=()
for f in "${files[@]}"; do
  "$fmt" --style=file --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "not formatted (${#bad[@]} of ${#files[@]} files):"
  printf '  %s\n' "${bad[@]}"
  echo "fix with: clang-format-14 -i ${bad[*]}"
  "$fmt" --style=file --dry-run "${bad[0]}" 2>&1 | head -40
  exit 1
fi
echo "${#files[@]} C/C++ files formatted as .clang-format says"
