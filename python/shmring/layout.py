"""Shared-memory layout version 1: every offset, size and constant, defined once.

Mirrors ``core/include/shm/layout.hpp``; ``docs/PROTOCOL.md`` describes it and the
golden vectors in ``tests/vectors/`` pin it byte for byte. All integers are
little-endian.
"""
from __future__ import annotations

# Header field offsets (bytes from the start of the segment).
HEAD_OFFSET = 0             # u32, producer
TAIL_OFFSET = 4             # u32, consumer
CAPACITY_OFFSET = 8         # u32, creator
MAGIC_OFFSET = 12           # u32, creator, stored last
VERSION_OFFSET = 16         # u16, creator
HEADER_SIZE_OFFSET = 18     # u16, creator
PROFILE_OFFSET = 20         # u32, creator
GENERATION_OFFSET = 24      # u64, creator
PRODUCER_FLAGS_OFFSET = 32  # u32, producer
PRODUCER_PID_OFFSET = 36    # u32, producer
CONSUMER_FLAGS_OFFSET = 40  # u32, consumer
CONSUMER_PID_OFFSET = 44    # u32, consumer
DROPPED_OFFSET = 48         # u64, producer
RESERVED_OFFSET = 56        # zero up to HEADER_SIZE

HEADER_SIZE = 128  # offset of the data area
VERSION = 1
MAGIC = 0x474E5253  # the bytes b"SRNG" read as a little-endian u32

MIN_CAPACITY = 64
MAX_CAPACITY = 0x80000000  # 2**31

# Profiles: what the payloads mean.
PROFILE_OPAQUE = 0
PROFILE_GST_FRAMING = 1

# producer_flags bits (written by the producer only).
PRODUCER_CLOSED = 1 << 0      # end of stream
PRODUCER_WAITING = 1 << 1     # asleep on the tail word
PRODUCER_MEMBARRIER = 1 << 2  # its fast path uses a compiler barrier only
# The stream is live: a consumer that attaches starts at what is published after
# its attach, never at the backlog already in the ring.
PRODUCER_LIVE = 1 << 3
# consumer_flags bits (written by the consumer only).
CONSUMER_ATTACHED = 1 << 0
CONSUMER_WAITING = 1 << 1     # asleep on the head word
CONSUMER_MEMBARRIER = 1 << 2  # its fast path uses a compiler barrier only
# consumer_flags bits 16..31: attach count, +1 by every attaching consumer (wrapping),
# so the producer can tell a new consumer from the previous one with the same pid.
CONSUMER_ATTACH_COUNT_SHIFT = 16
CONSUMER_ATTACH_COUNT_ONE = 1 << CONSUMER_ATTACH_COUNT_SHIFT

# Records: [u32 len][payload], padded to RECORD_ALIGN, never split at the end.
LEN_SIZE = 4
RECORD_ALIGN = 8
WRAP_MARKER = 0xFFFFFFFF
MAX_VALID_LEN = 0x7FFFFFFF  # 0x80000000..0xFFFFFFFE are invalid

INDEX_MASK = 0xFFFFFFFF  # ring indices are u32 and wrap at 2**32

# Word indices (offset // 4) for memoryview(...).cast('I') access.
HEAD_WORD = HEAD_OFFSET // 4
TAIL_WORD = TAIL_OFFSET // 4
CAPACITY_WORD = CAPACITY_OFFSET // 4
MAGIC_WORD = MAGIC_OFFSET // 4
VERSION_WORD = VERSION_OFFSET // 4  # version | header_size << 16
PROFILE_WORD = PROFILE_OFFSET // 4
GENERATION_WORD = GENERATION_OFFSET // 4
PRODUCER_FLAGS_WORD = PRODUCER_FLAGS_OFFSET // 4
PRODUCER_PID_WORD = PRODUCER_PID_OFFSET // 4
CONSUMER_FLAGS_WORD = CONSUMER_FLAGS_OFFSET // 4
CONSUMER_PID_WORD = CONSUMER_PID_OFFSET // 4
DROPPED_WORD = DROPPED_OFFSET // 4
DATA_WORD = HEADER_SIZE // 4


def record_size(length: int) -> int:
    """Bytes taken by the record of a ``length``-byte payload (len word and padding)."""
    return (LEN_SIZE + length + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)


def max_payload(capacity: int) -> int:
    """Largest payload a ring of ``capacity`` bytes can ever hold."""
    return capacity - LEN_SIZE


def is_power_of_two(value: int) -> bool:
    return value > 0 and (value & (value - 1)) == 0


def is_valid_capacity(capacity: int) -> bool:
    """Whether ``capacity`` is a power of two in [MIN_CAPACITY, MAX_CAPACITY]."""
    return MIN_CAPACITY <= capacity <= MAX_CAPACITY and is_power_of_two(capacity)


def may_be_ring_in_creation(size: int) -> bool:
    """Whether a segment of ``size`` bytes without a magic can be a ring whose creator
    is between shm_open and its magic store: creators size it in one ftruncate, so it
    is empty or exactly header + a valid capacity. Anything else (a POSIX semaphore,
    another program's data) is foreign and never ours to remove."""
    return size == 0 or (size >= HEADER_SIZE and is_valid_capacity(size - HEADER_SIZE))


def round_up_capacity(requested: int) -> int:
    """Smallest valid capacity >= ``requested`` (never rounds down); 0 if none exists."""
    if requested > MAX_CAPACITY:
        return 0
    capacity = MIN_CAPACITY
    while capacity < requested:
        capacity <<= 1
    return capacity


assert RESERVED_OFFSET == DROPPED_OFFSET + 8
assert HEADER_SIZE % RECORD_ALIGN == 0
assert record_size(0) == 8 and record_size(4) == 8 and record_size(5) == 16
assert record_size(max_payload(MIN_CAPACITY)) == MIN_CAPACITY
