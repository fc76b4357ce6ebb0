#!/usr/bin/env python3
"""Smoke check of ring_bench's --variants (suite 'bench'): the small row runs every
variant named, and only those, once per round: each prints one JSON line with a
positive rate; an unknown name is refused. Checks that the variants run, never their
timings.

    check_ring_variants.py RING_BENCH
"""
import json
import subprocess
import sys
from typing import List, Set


def main(argv: List[str]) -> int:
    exe = argv[1]
    want = ["shmring", "minimal", "minimal_split", "minimal_protocol", "shmring_inline",
            "shmring_inline_write", "shmring_inline_read", "minimal_lines", "minimal_batch",
            "minimal_pause", "minimal_protocol_split", "minimal_protocol_lines",
            "mixed_shmring_write", "mixed_shmring_read", "minimal_protocol_own"]
    out = subprocess.run([exe, "--only", "small", "--rounds", "2", "--small-count", "1000",
                          "--variants", ",".join(want)],
                         check=True, stdout=subprocess.PIPE, text=True, timeout=100).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    seen: List[str] = [r["variant"] for r in rows]
    bad = [r for r in rows if r["row"] != "small" or not r["value"] > 0]
    if sorted(seen) != sorted(want * 2) or bad:
        print(f"ring_bench --variants {','.join(want)}: variants {seen}, bad rows {bad}")
        return 1
    # Names are matched whole: "minimal" alone names the plain minimal ring only (not
    # minimal_split or minimal_protocol), "shmring" not shmring_inline, and the reverse;
    # "minimal_protocol" not minimal_protocol_split. The mixed pairs (one side shmring's,
    # the other a minimal loop on the same segment) run alone too: each checks the order
    # of every message it reads, so a run that exits 0 passed that check.
    for alone in ("minimal", "shmring", "shmring_inline", "minimal_protocol",
                  "shmring_inline_write", "minimal_lines", "minimal_protocol_split",
                  "mixed_shmring_write", "mixed_shmring_read"):
        out = subprocess.run([exe, "--only", "small", "--rounds", "1", "--small-count", "1000",
                              "--variants", alone],
                             check=True, stdout=subprocess.PIPE, text=True, timeout=100).stdout
        only: Set[str] = {json.loads(line)["variant"] for line in out.splitlines()
                          if line.startswith("{")}
        if only != {alone}:
            print(f"ring_bench --variants {alone} ran {sorted(only)}")
            return 1
    # A name that selects nothing (a typo) is refused, naming it, not a silent shorter run.
    for typo in ("shmring_inlin", "minimal,", "bogus"):
        res = subprocess.run([exe, "--only", "small", "--rounds", "1", "--small-count", "1000",
                              "--variants", typo],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=100)
        name = typo.split(",")[-1]
        if res.returncode == 0 or res.stdout.strip() or f"'{name}'" not in res.stderr:
            print(f"ring_bench --variants {typo!r}: exit {res.returncode}, stdout "
                  f"{res.stdout.strip()!r}, stderr {res.stderr.strip()!r}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
