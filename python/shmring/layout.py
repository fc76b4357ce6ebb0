"""Shared-memory layout version 2: every offset, size and constant, defined once.

Mirrors ``core/include/shm/layout.hpp``; ``docs/PROTOCOL.md`` describes it and the
golden vectors in ``tests/vectors/`` pin it byte for byte. All integers are
little-endian.
"""
from __future__ import annotations

# The header is built from 128-byte blocks: each side's frequently written words and
# each side's flags sit in blocks of their own, so a store by one side never
# invalidates the line the other side polls (128, not 64: adjacent-line prefetchers
# fetch 64-byte lines in pairs). See docs/PROTOCOL.md section 2.
BLOCK_SIZE = 128

# Block 0 (offset 0): written by the creator before the magic, immutable after.
# Offsets 0..7 are zero (head and tail in version 1).
CAPACITY_OFFSET = 8         # u32, creator
MAGIC_OFFSET = 12           # u32, creator, stored last
VERSION_OFFSET = 16         # u16, creator
HEADER_SIZE_OFFSET = 18     # u16, creator
PROFILE_OFFSET = 20         # u32, creator
GENERATION_OFFSET = 24      # u64, creator
MAX_RECEIVERS_OFFSET = 32   # u32, creator: receiver slots in use, 1..16
# Block 1 (offset 128): the producer's index, alone on its lines.
HEAD_OFFSET = 128           # u32, producer
# Ring index of the newest published record (not a WRAP marker): where a live
# receiver that fell behind jumps to. Stored before the head that publishes it.
LAST_START_OFFSET = 132     # u32, producer
# Record sequence numbers: the n-th message the producer publishes (PAD records and
# WRAP markers are not messages) has sequence n - 1, wrapping at 2**32. Each mark is
# one u64 (ring index | sequence << 32) stored with release AFTER the head store that
# published what it names, so one load gives a consistent pair the head already
# covers. A receiver that knows the sequence of its position counts the records a
# skip passes over: sequence(new) - sequence(old).
# The head as published, with the number of messages published before it.
HEAD_MARK_OFFSET = 136      # u64, producer
# The newest published sync point (a record the producer marked as a place to start
# decoding: a key frame; profile 0 and unmarked writes: every message) and its
# sequence number: where a live receiver that fell behind resumes when still there.
SYNC_MARK_OFFSET = 144      # u64, producer
# The newest published record (last_start) and its sequence number (a PAD record has
# the sequence number of the message after it): where a lapped live receiver resumes
# when no sync point is left.
LAST_MARK_OFFSET = 152      # u64, producer
# Block 2 (offset 256): the producer's flags and rarely written words.
PRODUCER_FLAGS_OFFSET = 256  # u32, producer
PRODUCER_PID_OFFSET = 260    # u32, producer
DROPPED_OFFSET = 264         # u64, producer
# Reuse floor: the producer may overwrite the bytes of ring indices below it (it stores
# the floor, fences, then reads the slots again before it reuses them). A receiver that
# takes a position stores it, fences, reads the floor. See docs/DESIGN.md "Fan-out".
FLOOR_OFFSET = 272           # u32, producer
# The producer's sleeps for space so far (wrapping), bumped before each sleep's fence
# while PRODUCER_COUNTS_SLEEPS is set (docs/DESIGN.md "Wake once per sleep").
PRODUCER_SLEEPS_OFFSET = 276  # u32, producer
# The producer's owner word: a robust-futex word (Linux). A producer that arms it
# stores its arming thread's id | OWNER_WAITERS; when that process dies (any way)
# or execs, the kernel stores OWNER_WAITERS | OWNER_DIED and wakes one sleeper on
# it. 0 = not armed (older producers, Python ones included, other systems, a failed
# arming). A wake-up trigger only: the producer's lock byte stays the verdict
# (docs/PROTOCOL.md).
PRODUCER_OWNER_OFFSET = 280  # u32, producer (the kernel at its death)
OWNER_WAITERS = 0x80000000  # FUTEX_WAITERS
OWNER_DIED = 0x40000000  # FUTEX_OWNER_DIED
OWNER_TID_MASK = 0x3FFFFFFF  # FUTEX_TID_MASK
# Block 3 (offset 384): reserved, zero.
# Receiver slots from offset 512, 256 bytes each: a block with the slot's index and a
# block with its flags, pid, mode and counters (all written by the slot's receiver).
SLOTS_OFFSET = 512
SLOT_SIZE = 2 * BLOCK_SIZE
MAX_RECEIVERS_LIMIT = 16
SLOT_TAIL = 0       # u32, receiver: its tail
SLOT_FLAGS = 128    # u32, receiver: ATTACHED/WAITING/MEMBARRIER, attach count
SLOT_PID = 132      # u32, receiver: information only on Linux
SLOT_MODE = 136     # u32, receiver: MODE_LOSSLESS or MODE_LIVE
SLOT_SKIPPED = 144  # u64, receiver: records it skipped (live mode)
# u32, receiver: its sleeps so far (wrapping), bumped before each sleep's fence by a
# receiver that sets CONSUMER_COUNTS_SLEEPS (docs/DESIGN.md "Wake once per sleep").
SLOT_SLEEPS = 152
# A live receiver's tail word holds its pin: the start of the oldest record it holds.
# With nothing held it holds its read position | SLOT_IDLE; the producer does not
# wait for it.
SLOT_IDLE = 1


def slot_offset(k: int) -> int:
    """Offset of receiver slot ``k`` (0 <= k < MAX_RECEIVERS_LIMIT)."""
    return SLOTS_OFFSET + k * SLOT_SIZE


# The single consumer of a ring with max_receivers 1 uses slot 0: these are its words.
TAIL_OFFSET = SLOTS_OFFSET + SLOT_TAIL                  # 512
CONSUMER_FLAGS_OFFSET = SLOTS_OFFSET + SLOT_FLAGS       # 640
CONSUMER_PID_OFFSET = SLOTS_OFFSET + SLOT_PID           # 644
CONSUMER_MODE_OFFSET = SLOTS_OFFSET + SLOT_MODE         # 648
CONSUMER_SKIPPED_OFFSET = SLOTS_OFFSET + SLOT_SKIPPED   # 656
RESERVED_OFFSET = SLOTS_OFFSET + MAX_RECEIVERS_LIMIT * SLOT_SIZE  # zero up to HEADER_SIZE
# Stream-info side area (producer): the latest stream description (profile 1: the last
# CAPS record's payload) for receivers that attach after that record is gone.
# [u32 seq (odd while written)][u32 ring index of its record][u32 len][u32 0][bytes].
INFO_OFFSET = RESERVED_OFFSET  # 4608
INFO_SEQ = 0
INFO_INDEX = 4
INFO_LEN = 8
INFO_DATA = 16

HEADER_SIZE = 8192  # offset of the data area: two pages, so it starts page-aligned
VERSION = 2
MAGIC = 0x474E5253  # the bytes b"SRNG" read as a little-endian u32
# An opener needs this many bytes to read the magic and the version (both stay at these
# offsets in every version, so each version names the other in its error).
IDENT_SIZE = 20
INFO_MAX = HEADER_SIZE - INFO_OFFSET - INFO_DATA  # 3568 bytes

# Receiver modes (slot mode word).
MODE_LOSSLESS = 0
MODE_LIVE = 1

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
# Set with WAITING by a producer that bumps its sleeps word before every sleep.
PRODUCER_COUNTS_SLEEPS = 1 << 4
# Slot flags bits (consumer_flags for slot 0; written by the slot's receiver only).
CONSUMER_ATTACHED = 1 << 0
CONSUMER_WAITING = 1 << 1     # asleep on the head word
CONSUMER_MEMBARRIER = 1 << 2  # its fast path uses a compiler barrier only
# Set with WAITING by a receiver that bumps its SLOT_SLEEPS word before every sleep.
CONSUMER_COUNTS_SLEEPS = 1 << 3
# consumer_flags bits 16..31: attach count, +1 by every attaching consumer (wrapping),
# so the producer can tell a new consumer from the previous one with the same pid.
CONSUMER_ATTACH_COUNT_SHIFT = 16
CONSUMER_ATTACH_COUNT_ONE = 1 << CONSUMER_ATTACH_COUNT_SHIFT

# Records: [u32 len][payload], padded to RECORD_ALIGN, never split at the end.
LEN_SIZE = 4
RECORD_ALIGN = 8
WRAP_MARKER = 0xFFFFFFFF
MAX_VALID_LEN = 0x7FFFFFFF  # largest payload length a record may say
# PAD record: len = PAD_FLAG | n (n = payload bytes, < 2**31) is a record of
# record_size(n) bytes that every reader skips silently (a reservation the producer
# gave up, or the unused end of one published shorter). 0xFFFFFFFF stays WRAP.
PAD_FLAG = 0x80000000


def is_pad(length: int) -> bool:
    """Whether a len word marks a PAD record (C++ ``layout::IsPad``)."""
    return bool(length & PAD_FLAG) and length != WRAP_MARKER

INDEX_MASK = 0xFFFFFFFF  # ring indices are u32 and wrap at 2**32

# Word indices (offset // 4) for memoryview(...).cast('I') access.
HEAD_WORD = HEAD_OFFSET // 4
PRODUCER_OWNER_WORD = PRODUCER_OWNER_OFFSET // 4
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
MAX_RECEIVERS_WORD = MAX_RECEIVERS_OFFSET // 4
CONSUMER_MODE_WORD = CONSUMER_MODE_OFFSET // 4
CONSUMER_SKIPPED_WORD = CONSUMER_SKIPPED_OFFSET // 4
DATA_WORD = HEADER_SIZE // 4
LAST_START_WORD = LAST_START_OFFSET // 4
HEAD_MARK_WORD = HEAD_MARK_OFFSET // 4  # u64: load_u64/store_u64
SYNC_MARK_WORD = SYNC_MARK_OFFSET // 4  # u64: load_u64/store_u64
LAST_MARK_WORD = LAST_MARK_OFFSET // 4  # u64: load_u64/store_u64
FLOOR_WORD = FLOOR_OFFSET // 4


def slot_word(k: int, field: int) -> int:
    """Word index of ``field`` (SLOT_TAIL, SLOT_FLAGS, ...) of receiver slot ``k``."""
    return (SLOTS_OFFSET + k * SLOT_SIZE + field) // 4


def mark(index: int, seq: int) -> int:
    """A mark word: ring ``index`` | sequence number ``seq`` << 32 (C++ ``layout::Mark``)."""
    return (index & INDEX_MASK) | ((seq & INDEX_MASK) << 32)


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


assert RESERVED_OFFSET == 512 + 16 * 256 and RESERVED_OFFSET <= HEADER_SIZE
assert HEADER_SIZE % 4096 == 0
assert HEAD_OFFSET // BLOCK_SIZE != PRODUCER_FLAGS_OFFSET // BLOCK_SIZE
assert TAIL_OFFSET // BLOCK_SIZE != CONSUMER_FLAGS_OFFSET // BLOCK_SIZE
assert HEAD_MARK_OFFSET // BLOCK_SIZE == SYNC_MARK_OFFSET // BLOCK_SIZE == HEAD_OFFSET // BLOCK_SIZE
assert LAST_MARK_OFFSET // BLOCK_SIZE == HEAD_OFFSET // BLOCK_SIZE
assert HEAD_MARK_OFFSET % 8 == 0 and SYNC_MARK_OFFSET % 8 == 0 and LAST_MARK_OFFSET % 8 == 0
assert record_size(0) == 8 and record_size(4) == 8 and record_size(5) == 16
assert record_size(max_payload(MIN_CAPACITY)) == MIN_CAPACITY
