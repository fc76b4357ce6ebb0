#!/usr/bin/env bash
# Fails when a tracked file still holds a merge conflict marker (a line that starts with
# seven '<', '=' or '>' and, for '<' and '>', a space and a name), naming file and line.
#   conflict_markers.sh SOURCE_ROOT
set -euo pipefail
cd "$1"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "not a git work tree: nothing to check"; exit 77  # meson: skipped
fi
hits=$(git grep -n -I -E '^(<{7} |>{7} |={7}$)' -- . ':!tests/integration/conflict_markers.sh' || true)
if [[ -n "$hits" ]]; then
  echo "merge conflict markers left in:"; echo "$hits"; exit 1
fi
echo "no conflict markers in $(git ls-files | wc -l) tracked files"
