"""Single aligned loads and stores of the shared header words.

Why not ``struct.pack_into('<I', ...)``: CPython packs and unpacks the standard-size
('<', '>', '=') formats one byte at a time, so a concurrent reader can see a torn
index. A *native*-format ``memoryview.cast('I')`` item access goes through
``memoryobject.c``'s ``PACK_SINGLE``/``UNPACK_SINGLE``: a ``memcpy`` of
``sizeof(unsigned int)`` bytes, which the C compiler turns into one 4-byte load or
store. On an aligned address that is single-copy atomic on every CPU CPython runs on.
The layout is little-endian, so native format equals layout format only on a
little-endian host: importing this package refuses anything else.

64-bit fields (generation, dropped):

* ``generation`` is written by the creator before it stores ``magic`` and never
  changes afterwards; any read after a non-zero magic sees the final value, so
  reading it as two 4-byte words is safe.
* ``dropped`` has a single writer (the producer). On 64-bit hosts it is read and
  written through ``memoryview.cast('Q')``: one aligned 8-byte access (the C++ side
  uses 8-byte atomics), never torn. On 32-bit hosts it is read as high, low, high
  words until the high word is stable; it is a statistic, so a value that is off by
  one carry during a concurrent update would be harmless, and the retry avoids even that
  in practice.
"""
from __future__ import annotations

import ctypes
import struct
import sys
from typing import Any, Callable, Optional, Tuple

if sys.byteorder != "little":  # pragma: no cover - no big-endian CI host
    raise ImportError(
        "shmring: layout v1 is little-endian and this host is big-endian; the native "
        "4-byte accesses this package relies on would not match the layout")

HOST_IS_64_BIT = struct.calcsize("P") == 8


def buffer_address(buf: Any) -> Tuple[int, Any]:
    """Address of the first byte of writable ``buf`` plus an object that keeps it valid.

    The keep-alive object holds a buffer export on ``buf``: drop it before closing
    an ``mmap`` (``mmap.close()`` refuses while exports exist).
    """
    anchor = ctypes.c_char.from_buffer(buf)
    return ctypes.addressof(anchor), anchor


def word_view(buf: Any) -> memoryview:
    """A native unsigned-32-bit view of ``buf`` (length a multiple of 8, 8-aligned).

    ``view[i]`` is one aligned 4-byte load, ``view[i] = v`` one aligned 4-byte store.
    """
    raw = memoryview(buf)
    if not raw.contiguous:
        raise ValueError("ring buffer must be contiguous")
    raw = raw.cast("B")
    if raw.readonly:
        raise ValueError("ring buffer must be writable (the consumer stores tail)")
    if raw.nbytes % 8:
        raise ValueError(f"ring buffer size {raw.nbytes} is not a multiple of 8")
    return raw.cast("I")


def qword_view(buf: Any) -> Optional[memoryview]:
    """A native u64 view of ``buf`` on 64-bit hosts (one 8-byte access per item), else None."""
    if not HOST_IS_64_BIT:
        return None
    return memoryview(buf).cast("B").cast("Q")


def load_u64(words: memoryview, qwords: Optional[memoryview], word_index: int) -> int:
    """Reads the u64 at 4-byte word ``word_index`` (even) without tearing; see module doc."""
    if qwords is not None:
        return int(qwords[word_index >> 1])
    while True:
        high = words[word_index + 1]
        low = words[word_index]
        if words[word_index + 1] == high:
            return (high << 32) | low


def store_u64(words: memoryview, qwords: Optional[memoryview], word_index: int,
              value: int) -> None:
    """Stores a u64 at 4-byte word ``word_index`` (even). Single writer only."""
    value &= 0xFFFFFFFFFFFFFFFF
    if qwords is not None:
        qwords[word_index >> 1] = value
        return
    words[word_index] = value & 0xFFFFFFFF
    words[word_index + 1] = value >> 32


# ---- read-modify-write of a shared flags word -------------------------------------
#
# A flags word (a receiver slot's flags, producer_flags) has several writers: the side's
# own threads and, through the native wait, C code. ``w[i] = w[i] | bit`` is a load and a
# separate store: a change another writer makes in between is overwritten. With the
# native helper built (``shmring._native.compare_exchange``, a seq_cst 32-bit CAS) these
# are atomic read-modify-writes; without it they fall back to the plain load and store,
# which CPython's GIL keeps atomic against this process's other Python threads only (no
# thread switch happens between the load and the store of one such statement), not
# against other processes or a free-threaded interpreter.
_cas: Optional[Callable[[int, int, int], int]]
try:
    from ._native import compare_exchange as _cas
except ImportError:  # pragma: no cover - depends on the build
    _cas = None

#: Whether fetch_or/fetch_and/fetch_add are atomic read-modify-writes here.
HAVE_ATOMIC_RMW = _cas is not None

_M32 = 0xFFFFFFFF


def _update(words: memoryview, index: int, address: int, op: Any) -> int:
    old = int(words[index])
    if _cas is None:
        words[index] = op(old) & _M32
        return old
    while True:
        seen = _cas(address, old, op(old) & _M32)
        if seen == old:
            return old
        old = seen  # another writer came between: again on its value


def fetch_or(words: memoryview, index: int, address: int, bits: int) -> int:
    """Sets ``bits`` in word ``index`` of ``words`` (``address``: that word's address) as
    one atomic read-modify-write where the platform allows (see above); returns the old
    value. Any thread; never blocks."""
    return _update(words, index, address, lambda v: v | bits)


def fetch_and(words: memoryview, index: int, address: int, mask: int) -> int:
    """Keeps only ``mask``'s bits of word ``index`` (clears the others), atomically where
    the platform allows; returns the old value. Any thread; never blocks."""
    return _update(words, index, address, lambda v: v & mask)


def fetch_add(words: memoryview, index: int, address: int, value: int) -> int:
    """Adds ``value`` to word ``index`` (wrapping at 32 bits), atomically where the
    platform allows; returns the old value. Any thread; never blocks."""
    return _update(words, index, address, lambda v: v + value)
