#!/usr/bin/python3
"""docs/PROTOCOL.md shows every golden vector in hex; check each block equals its file.

Usage: check_protocol_doc.py PROTOCOL.md VECTORS_DIR. Exits 1 naming the first mismatch.
"""
import os
import re
import sys


def hex_bytes(lines):
    out = []
    for line in lines:
        line = line.strip()
        if line.startswith('#'):
            continue
        if line.startswith('@'):  # "@OFFSET" (hex): zero bytes up to OFFSET
            offset = int(line[1:], 16)
            if offset < len(out):
                raise ValueError('%s goes backwards' % line)
            out.extend(bytes(offset - len(out)))
            continue
        out.extend(int(w, 16) for w in line.split())
    return bytes(out)


def main(doc_path, vectors_dir):
    doc = open(doc_path, encoding='utf-8').read()
    blocks = dict(re.findall(r'```text vector=(\S+)\n(.*?)```', doc, re.S))
    files = sorted(f for f in os.listdir(vectors_dir) if f.endswith('.hex'))
    failures = []
    for name in files:
        with open(os.path.join(vectors_dir, name), encoding='ascii') as f:
            want = hex_bytes(f.read().splitlines())
        if name not in blocks:
            failures.append('%s: no hex block in %s' % (name, doc_path))
        elif hex_bytes(blocks[name].splitlines()) != want:
            failures.append('%s: the hex block differs from the file' % name)
    for name in blocks:
        if name not in files:
            failures.append('%s: shown in the doc but not in %s' % (name, vectors_dir))
    for f in failures:
        print('FAIL', f)
    print('%d vectors checked, %d mismatches' % (len(files), len(failures)))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2]))
