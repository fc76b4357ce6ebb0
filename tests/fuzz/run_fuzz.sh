#!/usr/bin/env bash
# Runs one libFuzzer target from a seed corpus made of tests/vectors.
#   run_fuzz.sh FUZZER KIND VECTORS_DIR RUNS [SECONDS] [ARTIFACT_DIR] [CORPUS_DIR]
# KIND: segment (script inputs, see fuzz_segment.cpp) or framing (profile-1 payloads).
# RUNS > 0: that many inputs with the fixed seed 1 (reproducible; the meson test).
# RUNS = 0: for SECONDS with a random seed (scripts/fuzz.sh). New interesting inputs go to
# CORPUS_DIR (a temporary directory when not given); a crashing input is written to
# ARTIFACT_DIR (default: the current directory) and the run fails.
set -euo pipefail
fuzzer="$1"; kind="$2"; vectors="$3"; runs="$4"; seconds="${5:-60}"
artifacts="${6:-$PWD}"; corpus="${7:-}"
seeds=$(mktemp -d)
cleanup=("$seeds")
if [[ -z "$corpus" ]]; then corpus=$(mktemp -d); cleanup+=("$corpus"); fi
trap 'rm -rf "${cleanup[@]}"' EXIT
mkdir -p "$artifacts" "$corpus"

# The bytes of a hex vector file, one hex pair per line: comments and blank lines skipped,
# an "@OFFSET" line (hex) zero-fills up to that offset (docs/PROTOCOL.md, "Vectors").
hex_words() {
  grep -v '^#' "$1" | tr -s ' \t\n' '\n' | grep -v '^$' |
    awk 'function hex(s,  i, v) { v = 0; for (i = 1; i <= length(s); i++)
                                    v = v * 16 + index("0123456789abcdef", tolower(substr(s, i, 1))) - 1
                                  return v }
         /^@/ { at = hex(substr($0, 2)); while (n < at) { print "00"; n++ } next }
         { print; n++ }'
}
escaped() { local out="" b; for b in "$@"; do out+="\\x$b"; done; printf '%s' "$out"; }
ops='\x04\x05\x06\x06\x07\x00\x09\x0a\x0b\x00\x10\x04\x02\x00\xff\xff\xff\xff\x04\x0b\x00\x01'

case "$kind" in
  segment)
    for f in "$vectors"/v2_*.hex "$vectors"/p1_ring_*.hex; do
      mapfile -t w < <(hex_words "$f")
      cap=$((16#${w[11]}${w[10]}${w[9]}${w[8]}))
      sel=0
      while ((64 << sel < cap)); do sel=$((sel + 1)); done
      ((sel < 7 && ${#w[@]} <= 0xffff)) || continue
      n=${#w[@]}
      for flags in 0 1; do
        printf "\\x$(printf %02x "$sel")\\x0$flags\\x$(printf %02x $((n & 255)))\\x$(printf %02x $((n >> 8)))$(escaped "${w[@]}")$ops" \
          > "$seeds/$(basename "$f" .hex)-$flags"
      done
    done
    # Empty rings stamped valid, then the peer publishes records and the consumer reads.
    printf '\x00\x06\x00\x00\x03\x10\x00\x03\x20\x00\x04\x05\x06\x06\x07\x01\x0b\x40\x00' > "$seeds/publish-64"
    printf '\x03\x07\x00\x00\x03\xf0\x01\x03\x00\x02\x03\x10\x00\x06\x06\x02\x00\x00\x00\x00\x00\x06\x07\x00' \
      > "$seeds/publish-512"
    ;;
  framing)
    for f in "$vectors"/p1_*.hex; do
      [[ "$f" == *p1_ring_* ]] && continue
      mapfile -t w < <(hex_words "$f")
      printf "$(escaped "${w[@]}")" > "$seeds/$(basename "$f" .hex)"
    done
    ;;
  *) echo "run_fuzz.sh: unknown kind $kind" >&2; exit 2 ;;
esac
echo "seed corpus: $(ls "$seeds" | wc -l) inputs from $vectors"

# A segment seed holds the 8192-byte header, the data area and the operations.
max_len=4096
[[ "$kind" == segment ]] && max_len=16384
args=(-max_len="$max_len" -timeout=30 -rss_limit_mb=1024 -print_final_stats=1
      -artifact_prefix="$artifacts/fuzz_$kind-")
if ((runs > 0)); then
  args+=(-runs="$runs" -seed=1)
else
  args+=(-max_total_time="$seconds")
fi
exec "$fuzzer" "${args[@]}" "$corpus" "$seeds"
