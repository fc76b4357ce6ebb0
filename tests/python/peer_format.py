"""The message format of tests/tools/shmring_peer.cpp, in Python (see that file's header).

Message ``seq`` of ``n`` bytes: u64 seq, u32 n, u32 CRC-32 (zlib) of bytes 16..n,
then filler from a fixed pool; messages shorter than 16 bytes are a prefix of the
16-byte header (with CRC 0). Only the CRC guards the filler, so any filler verifies.
"""
from __future__ import annotations

import random
import struct
import zlib
from typing import Optional

_PREFIX = struct.Struct("<QII")


def make_pool(max_size: int, seed: int = 1) -> memoryview:
    return memoryview(random.Random(seed).randbytes(max_size + 4096))


def fill(view, seq: int, pool: memoryview) -> None:
    """Writes message ``seq`` into writable ``view`` (its length is n)."""
    n = len(view)
    crc = 0
    if n > 16:
        start = (seq * 7919) % 4096
        view[16:] = pool[start:start + n - 16]
        crc = zlib.crc32(view[16:])
    view[:min(n, 16)] = _PREFIX.pack(seq, n, crc)[:n]


def make_message(seq: int, n: int, pool: memoryview) -> bytes:
    buf = bytearray(n)
    fill(memoryview(buf), seq, pool)
    return bytes(buf)


def check(view, seq: int) -> Optional[str]:
    """None when ``view`` is message ``seq``, else what is wrong."""
    n = len(view)
    crc = zlib.crc32(view[16:]) if n > 16 else 0
    expected = _PREFIX.pack(seq, n, crc)[:min(n, 16)]
    if bytes(view[:min(n, 16)]) != expected:
        return f"message {seq} ({n} bytes): prefix {bytes(view[:16]).hex()} != {expected.hex()}"
    return None
