"""ByteRingBuffer: the SPSC byte ring over layout v1, in pure Python.

One producer and one consumer, each in its own thread or process; every header
word has a single writer. Indices are u32 and wrap at 2**32: every index sum and
difference is masked with ``& 0xFFFFFFFF``. Shared words are accessed only through
a native ``memoryview.cast('I')`` (one aligned 4-byte load or store each; see
``_atomics``); the ordering argument is in ``_fence``.

Non-blocking operations plus the blocking waits of the wait protocol (futex on
Linux). Mirrors ``core/include/shm/byte_ring_buffer.hpp``.
"""
from __future__ import annotations

import mmap
import os
import threading
import time
from typing import Any, Dict, Optional, Set, Tuple

from . import _futex
from ._tuning import (ARMED_LIVENESS_SLICE_S, INTERRUPT_REWAKE_S, LIVENESS_SLICE_S, SPIN_POLLS,
                      UNFENCED_NAP_S)
from ._atomics import buffer_address, load_u64, qword_view, store_u64, word_view
from ._fence import acquire_fence, full_fence, heavy_barrier, release_fence
from ._atomics import fetch_add, fetch_and, fetch_or  # flags words: atomic RMW where possible
from ._views import Held, TokenPool
from .errors import (CorruptRecordError, IncompatibleSegmentError, MessageTooLargeError,
                     RingInterruptedError, ShmRingError, ViewInUseError)
from .layout import (CAPACITY_WORD, CONSUMER_ATTACH_COUNT_ONE, CONSUMER_ATTACHED,
                     CONSUMER_COUNTS_SLEEPS, CONSUMER_FLAGS_WORD, CONSUMER_MEMBARRIER,
                     CONSUMER_WAITING, DATA_WORD, DROPPED_WORD, GENERATION_WORD, HEAD_WORD,
                     HEADER_SIZE, IDENT_SIZE, LEN_SIZE, MAGIC, MAGIC_OFFSET,
                     MAX_RECEIVERS_LIMIT, MAX_RECEIVERS_WORD, MAGIC_WORD, MAX_CAPACITY,
                     MAX_VALID_LEN, MIN_CAPACITY, PAD_FLAG, PRODUCER_CLOSED, PRODUCER_FLAGS_WORD,
                     PRODUCER_LIVE, PRODUCER_MEMBARRIER, PRODUCER_PID_WORD, PRODUCER_WAITING,
                     PRODUCER_OWNER_WORD, OWNER_DIED,
                     PROFILE_OPAQUE, PROFILE_WORD, RECORD_ALIGN, TAIL_WORD, VERSION, VERSION_WORD,
                     WRAP_MARKER, is_valid_capacity, CONSUMER_ATTACH_COUNT_SHIFT, FLOOR_WORD,
                     INFO_DATA, INFO_INDEX, INFO_LEN, INFO_MAX, INFO_OFFSET, INFO_SEQ,
                     HEAD_MARK_WORD, LAST_MARK_WORD, LAST_START_WORD, SYNC_MARK_WORD, mark, MODE_LIVE, MODE_LOSSLESS, SLOT_FLAGS, SLOT_IDLE,
                     SLOT_MODE, SLOT_PID, SLOT_SKIPPED, SLOT_TAIL, slot_word)

_M = 0xFFFFFFFF
_INF = float("inf")
_ZEROS = bytes(RECORD_ALIGN)

#: :meth:`ByteRingBuffer.acquire_wait` / ``read_wait``: nothing to read before the
#: deadline, or the stream ended (``at_end``).
WAIT_ENDED = 0
#: ... the liveness look is due (``check_at`` reached): look at the producer, call again.
WAIT_CHECK = 1


def _new_generation() -> int:
    """A random non-zero 64-bit generation."""
    return int.from_bytes(os.urandom(8), "little") or 1


def _largest_capacity(room: int) -> int:
    """Largest valid capacity <= ``room`` bytes; 0 when even the smallest does not fit."""
    if room < MIN_CAPACITY:
        return 0
    capacity = MIN_CAPACITY
    while capacity * 2 <= min(room, MAX_CAPACITY):
        capacity *= 2
    return capacity


# A sleep shorter than this says messages come close together: the next wait
# spins before it sleeps. After a longer one it sleeps at once (a 30 fps reader
# saves SPIN_POLLS interpreted polls per frame).
_SPIN_AFTER_SLEEP_S = 0.001


def _cap(remaining: Optional[float], cap: float) -> float:
    return cap if remaining is None or remaining > cap else remaining


def validate_header(buf: Any) -> Optional[Tuple[str, str]]:
    """(field, sentence) when ``buf`` does not hold a usable header, else None.

    Checks magic, version, header_size, capacity (power of two in 64..2**31) and
    that the data area fits the buffer ("size"). Either side; never blocks.
    """
    return _check_header(buf)[0]


def _check_header(buf: Any) -> Tuple[Optional[Tuple[str, str]], int]:
    """(validate_header's answer, the capacity it checked). Each header word is
    loaded once: a user of the result must keep this capacity, never re-read the
    word (a hostile peer could change it after the check)."""
    raw = memoryview(buf).cast("B")
    total = raw.nbytes
    if total < IDENT_SIZE:
        return ("size", (f"segment size {total} is smaller than the {HEADER_SIZE}-byte "
                         "header")), 0
    bad, capacity = check_header_words(raw[:min(total, HEADER_SIZE) & ~3].cast("I"), total)
    return bad, capacity


def check_header_words(words: memoryview, total: int
                       ) -> Tuple[Optional[Tuple[str, str]], int]:
    """PROTOCOL.md section 2's opener checks over the header words ``words`` (the
    whole header, or what a smaller segment has) of a segment of ``total`` bytes, in
    order: magic, version, size, header_size, max_receivers, capacity, fit. Returns ((field, sentence) or None, the capacity checked). Each word is
    loaded once (magic first, then acquire). Either side; never blocks."""
    if len(words) * 4 < IDENT_SIZE:
        return ("size", (f"segment size {total} is smaller than the {HEADER_SIZE}-byte "
                         "header")), 0
    magic = words[MAGIC_WORD]
    acquire_fence()
    if (total < HEADER_SIZE or len(words) < HEADER_SIZE // 4) and magic == 0:
        return ("size", (f"segment size {total} is smaller than the {HEADER_SIZE}-byte "
                         "header")), 0
    if magic == 0:
        return ("magic", "magic is 0: the segment is not initialized yet"), 0
    if magic != MAGIC:
        return ("magic", f"magic is 0x{magic:08X}, not 'SRNG': not a shmring segment"), 0
    version_word = words[VERSION_WORD]
    version = version_word & 0xFFFF
    header_size = version_word >> 16
    if version != VERSION:
        return ("version", f"version is {version}; this build reads version {VERSION}"), 0
    if total < HEADER_SIZE or len(words) < HEADER_SIZE // 4:
        return ("size", (f"segment size {total} is smaller than the {HEADER_SIZE}-byte "
                         "header")), 0
    if header_size != HEADER_SIZE:
        return ("header_size", f"header_size is {header_size}, expected {HEADER_SIZE}"), 0
    max_receivers = int(words[MAX_RECEIVERS_WORD])
    if not 1 <= max_receivers <= MAX_RECEIVERS_LIMIT:
        return ("max_receivers", (f"max_receivers is {max_receivers}, not between 1 and "
                                  f"{MAX_RECEIVERS_LIMIT}")), 0
    capacity = int(words[CAPACITY_WORD])
    if not is_valid_capacity(capacity):
        return ("capacity",
                f"capacity {capacity} is not a power of two between 64 and 2^31"), 0
    if HEADER_SIZE + capacity > total:
        return ("size", f"capacity {capacity} does not fit the segment size {total}"), 0
    return None, capacity


class ByteRingBuffer:
    """The SPSC byte ring over a writable buffer: the original API's ``ByteRingBuffer``.

    ``ByteRingBuffer(buf, is_producer=False)`` attaches to the ring in ``buf`` (a
    ``bytearray``, ``mmap``, writable ``memoryview`` or other writable, 8-aligned
    buffer) as its producer or its consumer:

    * a buffer holding a v1 ring is attached as it is (never re-initialized); its
      header is validated first and :class:`IncompatibleSegmentError` names the
      refused field;
    * a producer view over a buffer whose ``magic`` word is 0 (e.g. fresh zeroed
      memory) initializes it first: capacity = the largest power of two <=
      ``len(buf) - HEADER_SIZE`` (at least 64, at most 2**31), profile 0;
      a buffer too small for that raises :class:`IncompatibleSegmentError`
      (field ``"size"``);
    * a consumer view over a buffer whose ``magic`` is 0 raises
      :class:`IncompatibleSegmentError` (field ``"magic"``): create the producer
      view first;
    * any other ``magic`` (someone else's data) is refused, never overwritten.

    Python sides use full fences and never set their MEMBARRIER flag bit (the C++
    core's sides do, when the system allows). Construct it from one thread; never
    blocks.

    Properties vs methods (the rule for the whole package): cheap reads of this
    object's state or of one header word that never block are properties
    (``capacity``, ``dropped``, ``at_end``, ``producer_flags``...); anything that
    acts, may block, or makes a system call is a method. The original API's
    ``has_data()``, ``readable_bytes()`` and ``writeable_bytes()`` stay methods.
    """

    #: Offset of the data area (the original design's 16-byte header grew to 8192).
    HEADER_SIZE = HEADER_SIZE

    def __init__(self, buf: Any, is_producer: bool = False, *, slot: int = 0,
                 mode: int = MODE_LOSSLESS) -> None:
        raw = memoryview(buf)
        if not raw.contiguous:
            raise ValueError("ring buffer must be contiguous")
        raw = raw.cast("B")
        total = raw.nbytes
        if total >= HEADER_SIZE and raw[MAGIC_OFFSET:MAGIC_OFFSET + 4].cast("I")[0] == 0:
            if not is_producer:
                raise IncompatibleSegmentError(
                    "magic is 0: the buffer holds no ring yet; attach a producer view "
                    "(is_producer=True) first, which initializes it", "magic")
            capacity = _largest_capacity(total - HEADER_SIZE)
            if capacity == 0:
                raise IncompatibleSegmentError(
                    f"buffer of {total} bytes is too small for a ring: it needs "
                    f"{HEADER_SIZE} header bytes plus at least {MIN_CAPACITY}", "size")
            ByteRingBuffer.initialize(raw[:HEADER_SIZE + capacity], capacity, PROFILE_OPAQUE,
                                      _new_generation(), 0, os.getpid())
        bad, capacity = _check_header(buf)
        if bad is not None:
            raise IncompatibleSegmentError(bad[1], bad[0])
        self._buf = buf
        # Word views span header + data area only: the buffer may be longer.
        self._w = word_view(raw[:HEADER_SIZE + capacity])
        self._q = qword_view(raw[:HEADER_SIZE + capacity])
        raw.release()
        self._bytes = memoryview(buf).cast("B")
        self._total = self._bytes.nbytes
        self._is_mmap = isinstance(buf, mmap.mmap)
        self._address, self._anchor = buffer_address(buf)
        if self._address % 8:
            raise ValueError(f"ring buffer address 0x{self._address:x} is not 8-byte aligned")
        self._head_address = self._address + HEAD_WORD * 4
        w = self._w
        # Receiver slots (fan-out): a consumer view uses slot ``slot``'s words.
        self._max_receivers = int(w[MAX_RECEIVERS_WORD])  # validated, immutable
        if not is_producer and (not 0 <= slot < self._max_receivers
                                or mode not in (MODE_LOSSLESS, MODE_LIVE)):
            raise ValueError(f"receiver slot {slot} (mode {mode}) is not one of the ring's "
                             f"{self._max_receivers} slots")
        self._slot = 0 if is_producer else slot
        self._mode = MODE_LOSSLESS if is_producer else mode
        self._live = self._mode == MODE_LIVE
        self._tail_word = slot_word(self._slot, SLOT_TAIL)
        self._flags_word = slot_word(self._slot, SLOT_FLAGS)
        self._tail_address = self._address + self._tail_word * 4
        self._pinned = False      # live: the tail word holds a pin (not idle)
        # Lossless: the attach gave up before its start passed the floor check; the
        # first read checks again (_pin) before it reads any byte.
        self._check_floor = False
        # Producer: its published reuse floor, the slot that limits it, dead slots
        # (slot -> attach count when found dead).
        self._floor = 0
        self._limit_slot = 0
        self._dead: Dict[int, int] = {}
        # The consumer sleeps on head + producer_flags (CLOSED changes only the
        # flags), the producer on the limiting slot's tail + flags (a detach changes
        # only the flags): see _futex.PairSleeper.
        # The consumer's sleeps also end at the kernel's wake on the producer's owner
        # word (its death: docs/DESIGN.md "Producer death wakes the receivers").
        self._owner_address = self._address + PRODUCER_OWNER_WORD * 4
        self._owner_seen = 0  # the owner word as the consumer last judged it
        self._owner_died = False  # newly marked OWNER_DIED, not yet taken by the caller
        self._head_sleeper = _futex.PairSleeper(
            self._w, HEAD_WORD, self._head_address, PRODUCER_FLAGS_WORD,
            self._address + PRODUCER_FLAGS_WORD * 4, PRODUCER_OWNER_WORD,
            self._owner_address)
        self._tail_sleepers: Dict[int, _futex.PairSleeper] = {}
        # The consumer's sleep in one native call when shmring._native is built (the
        # same protocol steps as _wait_readable's pure-Python ones; DESIGN.md 4).
        self._waiter: Any = None if is_producer else _futex.native_waiter(
            self._head_address, self._address + PRODUCER_FLAGS_WORD * 4,
            self._address + self._flags_word * 4, CONSUMER_WAITING, PRODUCER_CLOSED,
            PRODUCER_MEMBARRIER, UNFENCED_NAP_S, SPIN_POLLS, _SPIN_AFTER_SLEEP_S,
            self._owner_address)
        if self._waiter is not None:  # its blocking lookup (acquire_wait) reads records
            self._waiter.set_records(self._address + HEADER_SIZE, HEADER_SIZE, capacity,
                                     WRAP_MARKER, PAD_FLAG, MAX_VALID_LEN, LEN_SIZE,
                                     RECORD_ALIGN, self._tail_address, PRODUCER_WAITING)
        # The sleeping thread's own state: this side's WAITING bit is set (since the
        # last end_sleep) and fenced (membarrier issued when the peer needs it).
        self._sleeping = False
        self._fenced = False
        self._spin = True  # the last sleep was short: spin before the next one
        self._capacity = capacity  # the validated value: never re-read from the segment
        self._mask = self._capacity - 1
        self._max = self._capacity - LEN_SIZE
        self._is_producer = bool(is_producer)
        # Python sides never rely on a peer's membarrier: a full fence (a lock round
        # trip on x86, ~0.2 us) is noise next to an interpreted write or read (several
        # us), while a light side makes its peer issue a membarrier (an IPI to every
        # CPU) on every running -> sleeping transition, i.e. once per frame for a
        # blocking reader. See docs/DESIGN.md "wait protocol". Our own heavy barrier
        # is still issued when a C++ peer is light.
        self._light = False
        self._tokens = TokenPool(buf, self._total)  # tracked views of records
        self._interrupted = False
        # Threads inside a futex/poll wait on this ring right now (interrupt() wakes
        # them and waits until they are awake, never for its own thread).
        self._sleepers: Set[int] = set()
        # Producer state.
        self._head = 0            # own copy of the head word
        self._tail_cache = 0      # producer's cached copy of tail
        self._reserved = -1       # payload length of the open reservation, -1 = none
        self._reserved_held: Optional[Held] = None
        self._pub_seq = 0         # messages published so far (the next one's sequence)
        # Consumer state; the names mean what they mean in the C++ core:
        # released <= freed <= read_pos (mod 2**32).
        self._read_pos = 0        # next record to hand out
        self._released = 0        # the tail word as last stored (own copy)
        self._freed = 0           # given back by read()/release(), stored in batches
        # read()/release() store tail only once this many bytes are freed, or when
        # the reader caught up with head (nothing more to read): one wake-up of a
        # producer waiting for space per batch, not per message. Small rings store
        # at once.
        self._tail_batch = 0
        self._head_cache = 0      # consumer's cached copy of head
        self._eos = False         # CLOSED seen with nothing left at read_pos
        self._peeked: Optional[Held] = None
        self._release_pending = False
        # Sequence number of the message at read_pos (messages published before it),
        # and whether it is known: a live receiver counts the records it skips by it.
        self._read_seq = 0
        self._read_seq_known = False
        full_fence()
        if self._is_producer:
            self._head = w[HEAD_WORD]
            if self._head % RECORD_ALIGN:  # would make us write across the end
                raise CorruptRecordError(f"head {self._head} is not a multiple of 8")
            self._floor = int(w[FLOOR_WORD])  # own word
            self._pub_seq = load_u64(w, self._q, HEAD_MARK_WORD) >> 32  # own word
            self._tail_cache = self._load_tail()
            if self._light:
                self._pflags_or(PRODUCER_MEMBARRIER)
        else:
            self._released = w[self._tail_word] & ~SLOT_IDLE
            self._freed = self._released
            self._read_pos = self._released
            # A live receiver's pin must follow what it holds exactly: no batching.
            if self._capacity >= 1 << 16 and not self._live:
                self._tail_batch = min(self._capacity // 8, 1 << 18)
            self._head_cache = w[HEAD_WORD]
            if self._light:
                self._flags_or(CONSUMER_MEMBARRIER)
        full_fence()  # the mode bit is visible before our first publish

    # ---- creation -----------------------------------------------------------

    @staticmethod
    def initialize(buf: Any, capacity: int, profile: int = 0, generation: int = 0,
                   start_index: int = 0, producer_pid: int = 0,
                   max_receivers: int = 1) -> None:
        """Writes a v1 header into ``buf`` (creator side, before anyone attaches).

        head = tail = ``start_index`` (a multiple of 8; non-zero only as a test hook
        for the 2**32 index wrap). ``producer_pid`` is stored before the magic, so a
        segment with a magic always names its producer (a second creator never
        mistakes a half-made ring for a stale one). Magic is stored last, after a
        release barrier, so an opener that sees it sees the whole header. Raises
        ValueError when the capacity is invalid or does not fit. Never blocks.
        """
        raw = memoryview(buf).cast("B")
        if not is_valid_capacity(capacity):
            raise ValueError(f"capacity {capacity} is not a power of two between 64 and 2^31")
        if HEADER_SIZE + capacity > raw.nbytes:
            raise ValueError(f"capacity {capacity} does not fit the segment size {raw.nbytes}")
        if start_index % RECORD_ALIGN or not 0 <= start_index <= _M:
            raise ValueError(f"start_index {start_index} must be a u32 multiple of 8")
        if not 1 <= max_receivers <= MAX_RECEIVERS_LIMIT:
            raise ValueError(f"max_receivers {max_receivers} is not between 1 and "
                             f"{MAX_RECEIVERS_LIMIT}")
        w = word_view(raw[:HEADER_SIZE + capacity])
        w[MAGIC_WORD] = 0
        release_fence()
        raw[0:MAGIC_OFFSET] = bytes(MAGIC_OFFSET)
        raw[VERSION_WORD * 4:HEADER_SIZE] = bytes(HEADER_SIZE - VERSION_WORD * 4)
        w[MAX_RECEIVERS_WORD] = max_receivers
        w[HEAD_WORD] = start_index
        w[LAST_START_WORD] = start_index
        # No message yet: both marks name the start with sequence number 0.
        store_u64(w, None, HEAD_MARK_WORD, mark(start_index, 0))
        store_u64(w, None, SYNC_MARK_WORD, mark(start_index, 0))
        store_u64(w, None, LAST_MARK_WORD, mark(start_index, 0))
        w[FLOOR_WORD] = start_index
        w[TAIL_WORD] = start_index
        w[CAPACITY_WORD] = capacity
        w[VERSION_WORD] = VERSION | (HEADER_SIZE << 16)
        w[PROFILE_WORD] = profile & _M
        store_u64(w, None, GENERATION_WORD, generation)
        w[PRODUCER_PID_WORD] = producer_pid & _M
        release_fence()
        w[MAGIC_WORD] = MAGIC

    # ---- either side ----------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Bytes of data area (a power of two)."""
        return self._capacity

    @property
    def max_message_size(self) -> int:
        """Largest payload that can ever fit: capacity - 4."""
        return self._max

    @property
    def profile(self) -> int:
        """0 = opaque messages, 1 = GStreamer framing (immutable after creation)."""
        return int(self._w[PROFILE_WORD])

    @property
    def generation(self) -> int:
        """This incarnation's 64-bit id (immutable after creation)."""
        return load_u64(self._w, None, GENERATION_WORD)

    @property
    def is_producer(self) -> bool:
        return self._is_producer

    @property
    def uses_membarrier(self) -> bool:
        """Whether this side's fast path relies on the peer's membarrier (its flag bit)."""
        return self._light

    @property
    def producer_flags(self) -> int:
        """The producer_flags word (CLOSED, WAITING, MEMBARRIER bits)."""
        return int(self._w[PRODUCER_FLAGS_WORD])

    @property
    def producer_closed(self) -> bool:
        """Whether the producer set CLOSED (records may remain to be read)."""
        return bool(self._w[PRODUCER_FLAGS_WORD] & PRODUCER_CLOSED)

    @property
    def producer_live(self) -> bool:
        """Whether the producer marked the stream live (producer_flags bit LIVE)."""
        return bool(self._w[PRODUCER_FLAGS_WORD] & PRODUCER_LIVE)

    @property
    def producer_pid(self) -> int:
        """The producer's pid as it recorded it (information only, never liveness)."""
        return int(self._w[PRODUCER_PID_WORD])

    @property
    def consumer_flags(self) -> int:
        """This view's slot's flags word (the producer's view: slot 0's; ATTACHED,
        WAITING, MEMBARRIER, attach count)."""
        return int(self._w[self._flags_word])

    @property
    def consumer_pid(self) -> int:
        """The attached consumer's pid as it recorded it (information only; this
        view's slot, slot 0 for the producer's view)."""
        return int(self._w[slot_word(self._slot, SLOT_PID)])

    @property
    def dropped(self) -> int:
        """Messages the producer dropped on purpose (header's ``dropped``)."""
        return load_u64(self._w, self._q, DROPPED_WORD)

    @property
    def head(self) -> int:
        """The head word as stored now (one aligned load)."""
        return int(self._w[HEAD_WORD])

    @property
    def tail(self) -> int:
        """The tail word as stored now (one aligned load; the consumer stores it in
        batches, see :meth:`flush`; this view's slot, without the live idle bit)."""
        return int(self._w[self._tail_word]) & ~SLOT_IDLE

    def interrupt(self) -> None:
        """Makes a blocking wait on this ring raise RingInterruptedError; sticky until
        :meth:`clear_interrupt`.

        Any thread, and signal handlers. Wakes a sleeping wait at once and returns
        as soon as every *other* thread that was asleep on this ring is awake (a
        call from the sleeping thread itself, e.g. a signal handler, only wakes).
        Blocks at most for that wake-up.
        """
        self._interrupted = True
        waiter = self._waiter
        if waiter is not None:
            waiter.interrupted = True  # seen by acquire_wait's native loop
        address = self._tail_address if self._is_producer else self._head_address
        me = threading.get_ident()
        while True:
            _futex.wake_word(address)
            # set operations are single C calls under the GIL: no lock needed (a
            # lock could deadlock a signal handler running in the sleeping thread)
            if not self._asleep() - {me}:
                return
            time.sleep(INTERRUPT_REWAKE_S)  # let the woken thread run and leave its wait

    def _asleep(self) -> Set[int]:
        """The threads inside a wait on this ring now: the pure-Python sleeps' and the
        one inside the native blocking lookup (``_native.Waiter.next``)."""
        waiter = self._waiter
        sleeper = 0 if waiter is None else waiter.sleeper
        return self._sleepers | {sleeper} if sleeper else set(self._sleepers)

    def clear_interrupt(self) -> None:
        """Re-arms blocking waits after :meth:`interrupt`. Any thread; never blocks."""
        self._interrupted = False
        waiter = self._waiter
        if waiter is not None:
            waiter.interrupted = False

    def detach(self) -> None:
        """Drops this object's exports on the buffer (so an mmap can be closed).

        Views handed out and still alive keep the memory mapped. Never blocks.
        """
        self.flush()
        if self._waiter is not None:
            self._waiter.close()  # clears WAITING; forgets the addresses
        for held in (self._peeked, self._reserved_held):
            if held is not None:
                held.try_release()
        self._peeked = None
        self._reserved_held = None
        self._tokens.close()
        self._w.release()
        if self._q is not None:
            self._q.release()
        self._bytes.release()
        self._anchor = None

    def _require(self, producer: bool) -> None:
        if self._is_producer != producer:
            side = "producer" if producer else "consumer"
            raise ShmRingError(f"this ByteRingBuffer is not the {side} side")

    # ---- producer side ----------------------------------------------------------

    def write(self, data: Any, sync: bool = True) -> bool:
        """Writes one message if it fits now; False when the ring is full.

        ``sync``: whether the message is a sync point (a record a receiver can start
        decoding at, e.g. a key frame): a live receiver that fell behind resumes at
        the newest sync point still in the ring. Raises MessageTooLargeError for a
        message longer than capacity - 4 (it can never fit). Producer; never blocks.
        """
        if not self._is_producer:
            self._require(True)
        n = len(data) if type(data) is bytes else memoryview(data).nbytes
        start = self._reserve_offset(n)
        if start < 0:
            return False
        if n:
            if type(data) is bytes:
                self._bytes[start:start + n] = data
            else:
                self._bytes[start:start + n] = memoryview(data).cast("B")
        self._commit(n, 0, sync)
        return True

    def reserve(self, n: int) -> Optional[memoryview]:
        """Zero-copy: room for an ``n``-byte payload, as a writable view; None when full.

        Writes (and publishes) a WRAP marker first when the record would cross the
        end. Fill the view, then :meth:`commit`. Producer; never blocks.
        """
        self._require(True)
        if self._reserved_held is not None:
            raise ShmRingError("a reservation is already open; commit() it first")
        start = self._reserve_offset(n)
        if start < 0:
            return None
        held = self._tokens.held(start, n, 0, False)
        self._reserved_held = held
        assert held.view is not None
        return held.view

    def commit(self, length: Optional[int] = None, sync: bool = True) -> None:
        """Publishes the reserved message with ``length`` bytes (default: all reserved);
        ``sync``: whether it is a sync point (see :meth:`write`).

        The reserved view is released first; if it (or an array made from it) is
        still referenced, ViewInUseError is raised and nothing is published. Wakes a
        sleeping consumer. Producer; never blocks.
        """
        held = self._reserved_held
        if held is None or self._reserved < 0:
            raise ShmRingError("commit() without an open reservation")
        if length is None:
            length = self._reserved
        if not 0 <= length <= self._reserved:
            raise ValueError(f"commit length {length} is outside 0..{self._reserved}")
        if not held.try_release():
            raise ViewInUseError(
                "the reserved view (or an array made from it) is still referenced at "
                "commit; delete it first (del arr) so the published bytes cannot change")
        self._reserved_held = None
        self._commit(length, 0, sync)

    def abandon(self) -> None:
        """Publishes the open reservation as a PAD record, which every reader skips
        silently (C++ ``Abandon``): the space is given up in ring order. Producer;
        never blocks."""
        held = self._reserved_held
        if held is None or self._reserved < 0:
            raise ShmRingError("abandon() without an open reservation")
        if not held.try_release():
            raise ViewInUseError("the reserved view is still referenced at abandon")
        self._reserved_held = None
        self._commit(self._reserved, PAD_FLAG)

    def cancel(self) -> None:
        """Abandons the open reservation without publishing it. Producer; never blocks."""
        held = self._reserved_held
        if held is not None:
            if not held.try_release():
                raise ViewInUseError("the reserved view is still referenced at cancel")
            self._reserved_held = None
        self._reserved = -1

    def writeable_bytes(self) -> int:
        """Free bytes in the ring (records and padding included). Either side; never blocks."""
        if not self._is_producer:
            return self._capacity - self.readable_bytes()
        lowest, _, _ = self._scan_slots()
        return self._capacity - ((self._head - lowest) & _M)

    def _counted_slots(self) -> Tuple[int, ...]:
        """The slots that hold the producer back (C++ ``ScanSlots``): with one slot,
        slot 0 always (its tail keeps the backlog for the next consumer); with
        several, the attached ones not found dead, or slot 0 when none is attached."""
        n = self._max_receivers
        if n == 1:
            return (0,)
        w = self._w
        counted = []
        for k in range(n):
            flags = int(w[slot_word(k, SLOT_FLAGS)])
            dead = self._dead.get(k)
            if dead is not None:
                if flags >> CONSUMER_ATTACH_COUNT_SHIFT == dead:
                    continue
                del self._dead[k]  # a new receiver attached since
            if flags & CONSUMER_ATTACHED:
                counted.append(k)
        return tuple(counted) if counted else (0,)

    def _scan_slots(self) -> Tuple[int, int, bool]:
        """(lowest protected position, the slot holding it, whether any position counted);
        head when none. Validates
        each tail: one past head, more than a capacity behind it, or not a multiple of
        8 would make us overwrite unread data: CorruptRecordError (a corrupt or
        hostile peer). A live receiver holding nothing (SLOT_IDLE) is not waited for."""
        w = self._w
        head = self._head
        cap = self._capacity
        lowest, limiting, found = head, 0, False
        slots = self._counted_slots()
        acquire_fence()
        for k in slots:
            tail = int(w[slot_word(k, SLOT_TAIL)])
            if tail & SLOT_IDLE:
                continue
            behind = (head - tail) & _M
            if behind > cap or tail % RECORD_ALIGN:
                # A receiver takes a position (a live pin, a lossless start while it
                # attaches) before it checks the floor: a position we lapped is one it
                # is about to see as reused and leave (docs/DESIGN.md "Fan-out"). A
                # lossless tail behind the head and below our floor exists only in
                # that window (one slot: the floor does not move; such a tail is corrupt).
                if not tail % RECORD_ALIGN and (
                        w[slot_word(k, SLOT_MODE)] == MODE_LIVE
                        or (self._max_receivers > 1 and behind < 0x80000000
                            and (tail - self._floor) & _M >= 0x80000000)):
                    continue
                raise CorruptRecordError(
                    f"corrupt peer: the consumer's tail {tail} is not a valid index for "
                    f"head {head} (capacity {cap}, receiver slot {k}; tail must be a "
                    f"multiple of {RECORD_ALIGN} at most a capacity behind head)")
            if not found or behind > (head - lowest) & _M:
                lowest, limiting, found = tail, k, True
        acquire_fence()
        return lowest, limiting, found

    def _load_tail(self, need: int = -1) -> int:
        """The lowest position the receivers protect (see _scan_slots), published as the
        reuse floor before anything below it is reused: store the floor, full fence,
        look at the slots again (a receiver that took a position meanwhile is seen now,
        or sees the floor). ``need``: the bytes about to be reserved. Producer."""
        lowest, limiting, counted = self._scan_slots()
        # One slot holding a position (a lossless tail, a live pin): nobody can take a
        # position below it, so the floor need not move (the default ring's slow path
        # stays one load).
        need_floor = self._max_receivers > 1 or not counted
        cap = self._capacity
        if need_floor and 0 <= need <= cap - cap // 4:
            # What nobody holds is free, but a lapped live receiver resumes only at or
            # above the floor (the newest sync point still there): free what this
            # reservation needs plus a quarter of the ring, not everything up to the
            # head, so the newest three quarters of a lap stay readable.
            head = self._head
            at_least = (head + need + cap // 4 - cap) & _M
            if (at_least - self._floor) & _M >= 0x80000000:
                at_least = self._floor  # floors only grow
            if 0 < (at_least - head) & _M < 0x80000000:
                at_least = head  # never past the head
            if (head - at_least) & _M > (head - lowest) & _M:
                lowest = at_least  # an older limit: keep more
        if need_floor and 0 < (lowest - self._floor) & _M < 0x80000000:
            self._floor = lowest
            release_fence()
            self._w[FLOOR_WORD] = lowest
            full_fence()
            again, slot2, _ = self._scan_slots()
            if (self._head - again) & _M > (self._head - lowest) & _M:
                lowest, limiting = again, slot2
        self._tail_cache = lowest
        self._limit_slot = limiting
        return lowest

    def mark_slot_dead(self, slot: int, flags_seen: int) -> None:
        """The producer found receiver ``slot`` dead (its role byte free, ATTACHED
        set): it stops holding the producer back until a new receiver attaches to
        the slot. ``flags_seen`` is the slot's flags word as read BEFORE the role
        byte was probed: a receiver that claims the slot between the probe and this
        call has bumped the attach count past it and is counted (a fresh read here
        would bury it). Producer; never blocks."""
        self._require(True)
        if 0 <= slot < self._max_receivers:
            self._dead[slot] = (flags_seen & 0xFFFFFFFF) >> CONSUMER_ATTACH_COUNT_SHIFT

    def set_stream_info(self, data: bytes, index: int) -> None:
        """Stores ``data`` (at most INFO_MAX bytes) in the stream-info side area with the
        ring index of the record it came with (a sequence lock: odd while written).
        Producer; never blocks."""
        self._require(True)
        if len(data) > INFO_MAX:
            raise ValueError(f"stream info of {len(data)} bytes exceeds {INFO_MAX}")
        w = self._w
        seq_word = (INFO_OFFSET + INFO_SEQ) // 4
        seq = int(w[seq_word])
        w[seq_word] = (seq + 1) & _M
        full_fence()
        w[(INFO_OFFSET + INFO_INDEX) // 4] = index & _M
        w[(INFO_OFFSET + INFO_LEN) // 4] = len(data)
        start = INFO_OFFSET + INFO_DATA
        self._bytes[start:start + len(data)] = data
        release_fence()
        w[seq_word] = (seq + 2) & _M

    def read_stream_info(self) -> Optional[Tuple[bytes, int]]:
        """(data, ring index) from the stream-info side area; None when never written
        (or the producer kept rewriting it). Either side; never blocks."""
        w = self._w
        seq_word = (INFO_OFFSET + INFO_SEQ) // 4
        for _ in range(64):
            seq = int(w[seq_word])
            acquire_fence()
            if seq == 0:
                return None
            if seq & 1:
                continue
            length = int(w[(INFO_OFFSET + INFO_LEN) // 4])
            index = int(w[(INFO_OFFSET + INFO_INDEX) // 4])
            if length > INFO_MAX:
                continue
            start = INFO_OFFSET + INFO_DATA
            data = bytes(self._bytes[start:start + length])
            full_fence()
            if int(w[seq_word]) == seq:
                return data, index
        return None

    @property
    def max_receivers(self) -> int:
        """Receiver slots of this ring (1..16)."""
        return self._max_receivers

    @property
    def slot(self) -> int:
        """The receiver slot this consumer view uses."""
        return self._slot

    @property
    def mode(self) -> int:
        """This consumer view's mode (MODE_LOSSLESS or MODE_LIVE)."""
        return self._mode

    def slot_words(self, k: int) -> Tuple[int, int, int, int, int]:
        """Slot ``k``'s (flags, pid, mode, tail, skipped). Either side; never blocks."""
        if not 0 <= k < self._max_receivers:
            raise ValueError(f"slot {k} is not one of the ring's {self._max_receivers}")
        w = self._w
        return (int(w[slot_word(k, SLOT_FLAGS)]), int(w[slot_word(k, SLOT_PID)]),
                int(w[slot_word(k, SLOT_MODE)]), int(w[slot_word(k, SLOT_TAIL)]),
                load_u64(w, self._q, slot_word(k, SLOT_SKIPPED)))

    @property
    def skipped(self) -> int:
        """Records (messages) this (live) receiver skipped because the producer reused
        them before it read them."""
        return load_u64(self._w, self._q, slot_word(self._slot, SLOT_SKIPPED))

    def _reserve_offset(self, n: int) -> int:
        """Byte offset in the buffer of room for an n-byte payload, or -1 when full."""
        if n > self._max:
            raise MessageTooLargeError(
                f"message of {n} bytes can never fit: the ring holds at most {self._max} "
                f"bytes per message (capacity {self._capacity} - 4)")
        if self._reserved_held is not None:
            raise ShmRingError("a reservation is already open; commit() it first")
        cap = self._capacity
        rec = (n + LEN_SIZE + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
        head = self._head
        pos = head & self._mask
        to_end = cap - pos
        marker = False
        if rec > to_end:
            # The record would cross the end: a WRAP marker fills the rest of this lap.
            if cap - ((head - self._tail_cache) & _M) < to_end:
                tail = self._load_tail(to_end + rec)
                if cap - ((head - tail) & _M) < to_end:
                    return -1
            self._publish_marker()
            marker = True
            head = self._head
            pos = 0
        if cap - ((head - self._tail_cache) & _M) < rec:
            tail = self._load_tail(rec)
            if cap - ((head - tail) & _M) < rec:
                if marker:
                    # Only the consumer skipping the marker can free the rest: it
                    # must not sleep through it.
                    self._wake_consumer_if_waiting()
                return -1
        self._reserved = n
        return HEADER_SIZE + pos + LEN_SIZE

    def _publish_marker(self) -> None:
        pos = self._head & self._mask
        self._w[DATA_WORD + (pos >> 2)] = WRAP_MARKER
        self._head = (self._head + self._capacity - pos) & _M
        release_fence()
        # Published alone so the consumer can free this lap at once. No wake here
        # (a marker is not a message); callers wake only when the record does not
        # fit behind it.
        self._w[HEAD_WORD] = self._head
        release_fence()  # the head mark follows the head (same sequence number)
        store_u64(self._w, self._q, HEAD_MARK_WORD, mark(self._head, self._pub_seq))

    def _wake_consumer_if_waiting(self) -> None:
        """After a head store: wakes the consumer if its WAITING bit is set."""
        w = self._w
        # Store-load fence against the consumer's "set WAITING, fence, re-check
        # head"; in MEMBARRIER mode the sleeper's membarrier supplies it.
        if not self._light:
            full_fence()
        # Every receiver sleeps on the head word: one wake if any of them waits.
        if self._max_receivers == 1:
            if w[CONSUMER_FLAGS_WORD] & CONSUMER_WAITING:
                _futex.wake_word(self._head_address)
            return
        for k in range(self._max_receivers):
            if w[slot_word(k, SLOT_FLAGS)] & CONSUMER_WAITING:
                _futex.wake_word(self._head_address)
                return

    def _commit(self, n: int, flag: int = 0, sync: bool = True) -> None:
        self._reserved = -1
        start = self._head
        pos = start & self._mask
        rec = (n + LEN_SIZE + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
        w = self._w
        w[DATA_WORD + (pos >> 2)] = n | flag
        pad = rec - LEN_SIZE - n
        if pad:
            end = HEADER_SIZE + pos + rec
            self._bytes[end - pad:end] = _ZEROS[:pad]
        w[LAST_START_WORD] = start  # published by the head store below
        head = (start + rec) & _M
        self._head = head
        # Payload and len are visible before head (release).
        release_fence()
        w[HEAD_WORD] = head
        # The marks after the head (release): a receiver that loads a mark finds a
        # head that covers what it names. A PAD record is not a message.
        seq = self._pub_seq
        release_fence()
        store_u64(w, self._q, LAST_MARK_WORD, mark(start, seq))
        if not flag:
            if sync:
                store_u64(w, self._q, SYNC_MARK_WORD, mark(start, seq))
            seq = (seq + 1) & _M
            self._pub_seq = seq
        store_u64(w, self._q, HEAD_MARK_WORD, mark(head, seq))
        self._wake_consumer_if_waiting()

    def wait_writable(self, n: int, timeout: Optional[float]) -> bool:
        """Sleeps until an ``n``-byte message fits (True) or ``timeout`` s expire (False).

        ``timeout`` None waits forever. Publishes a pending WRAP marker as soon as
        the bytes to the end are free. Returns False early, too, when a consumer
        attached or detached meanwhile (the caller decides whether to go on). Sets
        WAITING and fences once per call. Raises MessageTooLargeError, or
        RingInterruptedError after :meth:`interrupt`. Producer; blocks (futex,
        GIL released).
        """
        try:
            return self._wait_writable(n, timeout)
        finally:
            if self._sleeping:
                self._sleeping = False
                self._pflags_and(~PRODUCER_WAITING)

    def _wait_writable(self, n: int, timeout: Optional[float]) -> bool:
        """Sleeps until an ``n``-byte message fits (True) or ``timeout`` s expire (False).

        ``timeout`` None waits forever. Publishes a pending WRAP marker as soon as
        the bytes to the end are free. Raises MessageTooLargeError, or
        RingInterruptedError after :meth:`interrupt`. Producer; blocks (futex,
        GIL released). With several receiver slots it neither reaps dead receivers
        nor is woken when the receiver it waits for detaches: ShmProducer waits in
        liveness slices and reaps between them; pass a bounded timeout here too.
        """
        self._require(True)
        if n > self._max:
            raise MessageTooLargeError(
                f"message of {n} bytes can never fit: the ring holds at most {self._max}")
        cap = self._capacity
        rec = (n + LEN_SIZE + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        w = self._w
        spin = 0
        while True:
            to_end = cap - (self._head & self._mask)
            tail = self._load_tail(rec if rec <= to_end else to_end + rec)
            free = cap - ((self._head - tail) & _M)
            if rec <= to_end:
                if free >= rec:
                    return True
            elif free >= to_end:
                self._publish_marker()  # the record goes at offset 0 of the next lap
                # If it does not fit behind the marker yet, only the consumer
                # skipping the marker can free the rest: it must not sleep through it.
                if free - to_end < rec:
                    self._wake_consumer_if_waiting()
                continue
            if self._interrupted:
                raise RingInterruptedError("wait for space interrupted")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if spin < SPIN_POLLS:
                spin += 1
                continue
            if not self._sleeping:
                # Set WAITING and fence once per call; it stays set across re-sleeps
                # (cleared on return, below).
                self._pflags_or(PRODUCER_WAITING)
                full_fence()
                self._sleeping = True
                self._fenced = False
            nap = remaining
            # Sleep on the tail word of the receiver that holds us back, and its flags.
            slot = self._limit_slot
            tail_word = slot_word(slot, SLOT_TAIL)
            flags_word = slot_word(slot, SLOT_FLAGS)
            if not self._fenced:
                if w[flags_word] & CONSUMER_MEMBARRIER and not heavy_barrier():
                    nap = _cap(remaining, UNFENCED_NAP_S)  # the waker is unordered: poll
                else:
                    self._fenced = True
            cflags = w[flags_word]
            if w[tail_word] == tail:
                sleeper = self._tail_sleepers.get(slot)
                if sleeper is None:
                    sleeper = self._tail_sleepers[slot] = _futex.PairSleeper(
                        w, tail_word, self._address + tail_word * 4, flags_word,
                        self._address + flags_word * 4)
                self._sleep(sleeper, tail, cflags, nap)
            if (w[flags_word] ^ cflags) & CONSUMER_ATTACHED:
                return False  # attached or detached meanwhile: the caller looks

    def _sleep(self, sleeper: "_futex.PairSleeper", seen: int, seen2: int,
               timeout: Optional[float]) -> None:
        me = threading.get_ident()
        self._sleepers.add(me)  # before the flag check: interrupt() either sees us or
        try:                    # we see its flag
            if not self._interrupted:
                sleeper.sleep(seen, seen2, timeout)
        finally:
            self._sleepers.discard(me)

    def set_closed(self) -> None:
        """Sets CLOSED (end of stream) and wakes the consumer. Producer; never blocks."""
        self._require(True)
        release_fence()
        self._pflags_or(PRODUCER_CLOSED)
        full_fence()
        _futex.wake_word(self._head_address)

    def set_live(self, live: bool) -> None:
        """Sets or clears producer_flags bit LIVE (release). Producer; never blocks."""
        self._require(True)
        release_fence()
        if live:
            self._pflags_or(PRODUCER_LIVE)
        else:
            self._pflags_and(~PRODUCER_LIVE)

    def add_dropped(self, n: int = 1) -> None:
        """Adds ``n`` to the header's ``dropped`` counter. Producer; never blocks."""
        self._require(True)
        store_u64(self._w, self._q, DROPPED_WORD, self.dropped + n)

    # ---- consumer side ----------------------------------------------------------

    def _corrupt(self, text: str) -> CorruptRecordError:
        return CorruptRecordError(text)

    def _locate(self, start: int) -> Optional[Tuple[int, int, int]]:
        """(payload offset in buf, len, end index) of the record at ``start``, or None.

        Skips WRAP markers (releasing them when nothing is held before them) and
        validates everything it reads; sets ``_eos`` when CLOSED and drained.
        """
        w = self._w
        cap = self._capacity
        pos_index = start
        while True:
            head = self._head_cache
            avail = (head - pos_index) & _M
            if avail == 0:
                head = w[HEAD_WORD]
                acquire_fence()
                self._head_cache = head
                avail = (head - pos_index) & _M
                if avail == 0:
                    if self._freed != self._released or self._pinned:
                        self._store_tail(self._freed)  # going idle: free everything
                    if not w[PRODUCER_FLAGS_WORD] & PRODUCER_CLOSED:
                        return None
                    # CLOSED was stored after the last publish: re-read head.
                    acquire_fence()
                    head = w[HEAD_WORD]
                    acquire_fence()
                    self._head_cache = head
                    avail = (head - pos_index) & _M
                    if avail == 0:
                        self._eos = True
                        return None
            if (self._live and not self._pinned) or self._check_floor:
                # Nothing held: pin the position before reading its bytes (or skip
                # ahead when the producer may have reused them already).
                at = self._pin(pos_index)
                if at is None:  # lapped on every look: nothing here is safe yet
                    self._unpin_if_idle()
                    return None
                self._check_floor = False
                if not self._live:
                    self._pinned = False  # a lossless tail is not a pin
                if at != pos_index:
                    start = pos_index = at
                    continue
            # A misaligned head or tail could put a len word across the end.
            if avail > cap or (head | pos_index) & (RECORD_ALIGN - 1):
                raise self._corrupt(
                    f"head {head} is not a valid index for tail {pos_index} "
                    f"(capacity {cap})")
            pos = pos_index & self._mask
            to_end = cap - pos
            length = w[DATA_WORD + (pos >> 2)]
            if length == WRAP_MARKER:
                if to_end > avail:
                    raise self._corrupt(f"WRAP marker at offset {pos} skips past head")
                pos_index = (pos_index + to_end) & _M
                if start == self._read_pos and self._read_pos == self._freed:
                    self._read_pos = pos_index
                    self._store_tail(pos_index)  # nothing held before the marker
                    start = pos_index
                continue
            if length & PAD_FLAG:
                # A reservation the producer gave up (or the unused end of one):
                # skipped silently, freed at once when nothing is held before it.
                n = length & MAX_VALID_LEN
                rec = (n + LEN_SIZE + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
                if rec > to_end or rec > avail:
                    raise self._corrupt(
                        f"PAD record at offset {pos} of len {n} passes "
                        f"{'the end' if rec > to_end else 'head'}")
                pos_index = (pos_index + rec) & _M
                if start == self._read_pos and self._read_pos == self._freed:
                    self._read_pos = pos_index
                    self._lazy_release(pos_index)
                    start = pos_index
                continue
            rec = (length + LEN_SIZE + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
            if rec > to_end:
                raise self._corrupt(
                    f"record at offset {pos} of len {length} crosses the end of the data area")
            if rec > avail:
                raise self._corrupt(f"record at offset {pos} of len {length} passes head")
            return HEADER_SIZE + pos + LEN_SIZE, length, (pos_index + rec) & _M

    def _lazy_release(self, end: int) -> None:
        self._freed = end
        # Stored now when the batch is full or the reader caught up with the head it
        # knows (nothing more to read: a producer in this very thread may be about to
        # wait for that space, so it must never stay unstored).
        if (end - self._released) & _M >= self._tail_batch or end == self._head_cache:
            self._store_tail(end)

    def flush(self) -> None:
        """Stores the tail word now if releases are pending. Consumer; never blocks."""
        if not self._is_producer and self._freed != self._released:
            self._store_tail(self._freed)

    def skip_to_head(self) -> int:
        """Consumer with nothing held or peeked: frees everything published so far (the
        tail jumps to the head) and returns the new read position (C++
        ``SkipToHead``). Consumer; never blocks."""
        if self._is_producer:
            self._require(False)
        if self._read_pos != self._freed or self._peeked is not None:
            return self._read_pos
        head_mark = load_u64(self._w, self._q, HEAD_MARK_WORD)
        acquire_fence()
        head = int(self._w[HEAD_WORD])
        acquire_fence()  # pairs with the producer's release of the head
        self._head_cache = head
        # The head mark's head when sound (its sequence number comes with it).
        marked = head_mark & _M
        # Never behind our position: between the producer's head store and its mark
        # store the mark names the previous head, which we may have read past.
        self._read_seq_known = not marked % RECORD_ALIGN and (head - marked) & _M <= \
            self._capacity and (marked - self._read_pos) & _M < 0x80000000
        self._read_seq = head_mark >> 32
        if self._read_seq_known:
            head = marked
        self._read_pos = head
        self._eos = False
        self._store_tail(head)  # wakes a producer waiting for the space
        return self._read_pos

    def _pin(self, at: int) -> Optional[int]:
        """Live receiver about to read at ``at`` with nothing held (or a lossless one
        whose attach could not settle its start): stores the pin, full fence, loads
        the reuse floor (the producer stores the floor, fences, reads the pins: one
        sees the other). Returns ``at``, or after a skip the newest record (the head
        while that one is being reused too); None when the producer lapped every pin
        it tried (a few looks): nothing is safe to read yet, look again later."""
        w = self._w
        attempt = 0
        while True:
            w[self._tail_word] = at
            self._pinned = True
            full_fence()
            floor = int(w[FLOOR_WORD])
            acquire_fence()
            if (at - floor) & _M < 0x80000000:
                return at
            # Bounded (a hostile floor above the head fails every look), and never
            # unsafe: ``at`` may be overwritten under a limit the producer cached
            # before it saw our pin, so giving up reads nothing.
            if attempt >= 5:
                return None
            # ``at`` may be a WRAP marker (or PAD records) before the lap's start: the
            # floor passing it reused nothing this receiver needs when the next lap's
            # start is above the floor and no message lies between (its sequence
            # number is ours). Go on there, losing nothing (C++ ``PinForRead``).
            cap, pos = self._capacity, at & self._mask
            if attempt == 0 and pos and self._read_seq_known:
                lap = (at + cap - pos) & _M
                if (lap - floor) & _M < 0x80000000 and \
                        self._seq_of_start(lap) == self._read_seq & _M:
                    at = self._read_pos = self._freed = self._released = lap
                    # (_seq_of_start left the tail at ``lap``, unpinned.) A producer
                    # asleep on our old pin must look again.
                    full_fence()
                    if w[PRODUCER_FLAGS_WORD] & PRODUCER_WAITING:
                        _futex.wake_word(self._tail_address)
                    attempt += 1
                    continue
            # The producer may have reused ``at``: resume at the newest sync point (a
            # key frame) still in the ring, or, when there is none (or it is being
            # reused too), at the published head: wait for what comes next.
            at, seq = self._resume_target(floor, attempt < 2, attempt < 4)
            self._read_pos = self._freed = self._released = at
            # Records skipped: the sequence numbers say how many; without them, one.
            lost = 1
            if seq is not None and self._read_seq_known:
                lost = (seq - self._read_seq) & _M
                if lost >= 0x80000000:
                    lost = 0
            self._read_seq = 0 if seq is None else seq
            self._read_seq_known = seq is not None
            word = slot_word(self._slot, SLOT_SKIPPED)
            store_u64(w, self._q, word, load_u64(w, self._q, word) + lost)  # own word
            # A producer asleep on our old pin must look again.
            w[self._tail_word] = at
            full_fence()
            if w[PRODUCER_FLAGS_WORD] & PRODUCER_WAITING:
                _futex.wake_word(self._tail_address)
            attempt += 1

    def _resume_target(self, floor: int, allow_sync: bool,
                       allow_last: bool) -> Tuple[int, Optional[int]]:
        """Where a lapped live receiver resumes (C++ ``ResumeTarget``): the newest sync
        point when it is still in the ring (``allow_sync``), else the newest record
        (``allow_last``), else the head mark's head, else the head; with its sequence
        number (None when unknown)."""
        w, q = self._w, self._q
        # The marks first, then the head: each mark is stored after the head store
        # that published what it names, so a sound mark is covered by the head.
        sync = load_u64(w, q, SYNC_MARK_WORD)
        last = load_u64(w, q, LAST_MARK_WORD)
        head_mark = load_u64(w, q, HEAD_MARK_WORD)
        acquire_fence()
        head = int(w[HEAD_WORD])
        acquire_fence()
        self._head_cache = head
        cap = self._capacity
        # A hostile mark is only ever a position to pin and check again.
        for allowed, value in ((allow_sync, sync), (allow_last, last), (True, head_mark)):
            at = value & _M
            if allowed and not at % RECORD_ALIGN and (head - at) & _M <= cap and \
                    (at - floor) & _M < 0x80000000:
                return at, value >> 32
        return head, None

    def _seq_of_start(self, start: int) -> Optional[int]:
        """The sequence number of ``start`` (C++ ``SeqOfStart``): pins it, counts the
        messages up to the head mark, unpins. None when the walk could not finish
        (lapped, or a record that does not check out)."""
        w = self._w
        cap, mask = self._capacity, self._mask
        w[self._tail_word] = start
        full_fence()
        floor = int(w[FLOOR_WORD])
        head_mark = load_u64(w, self._q, HEAD_MARK_WORD)
        acquire_fence()  # the records up to the head mark are published
        end = head_mark & _M
        ok = (start - floor) & _M < 0x80000000 and (end - start) & _M <= cap and \
            not (start | end) % RECORD_ALIGN
        at = start
        messages = 0
        # Every step moves at least 8 bytes and never past ``end``.
        while ok and at != end:
            avail = (end - at) & _M
            pos = at & mask
            to_end = cap - pos
            length = int(w[DATA_WORD + (pos >> 2)])
            if length == WRAP_MARKER:
                size = to_end
            elif length & PAD_FLAG:
                size = (((length & MAX_VALID_LEN) + LEN_SIZE + RECORD_ALIGN - 1)
                        & ~(RECORD_ALIGN - 1))
            else:
                size = (length + LEN_SIZE + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
                messages += 1
            ok = size <= to_end and size <= avail
            if ok:
                at = (at + size) & _M
        release_fence()
        w[self._tail_word] = start | SLOT_IDLE  # unpinned again: nothing held
        self._pinned = False
        return ((head_mark >> 32) - messages) & _M if ok else None

    def _unpin_if_idle(self) -> None:
        """A live receiver that looked at a record without taking it unpins."""
        if self._pinned and self._read_pos == self._freed and self._peeked is None:
            self._store_tail(self._freed)

    def attach_slot(self, at_newest: bool, pid: int) -> int:
        """Attaches to this view's slot (C++ ``AttachSlot``): resets its mode, pid and
        skipped, picks the start (the head when ``at_newest``, else the oldest
        position still in the ring: this slot's tail on a ring nobody else reads, else
        the oldest attached receiver's), publishes it and sets ATTACHED; a lossless
        start below the reuse floor moves to the newest record. Returns the start.
        Consumer; never blocks."""
        self._require(False)
        w = self._w
        cap = self._capacity
        # The head mark first, then the head: a sound producer's mark is covered by it.
        head_mark = load_u64(w, self._q, HEAD_MARK_WORD)
        acquire_fence()
        head = int(w[HEAD_WORD])
        acquire_fence()
        start = int(w[self._tail_word]) & ~SLOT_IDLE
        marked = head_mark & _M
        mark_ok = not marked % RECORD_ALIGN and (head - marked) & _M <= cap
        self._read_seq_known = False
        if at_newest:
            # The published head whose sequence number the producer gave with it.
            start = marked if mark_ok else head
            self._read_seq = head_mark >> 32
            self._read_seq_known = mark_ok
        elif self._max_receivers > 1:
            oldest, found = head, False
            for k in range(self._max_receivers):
                if k == self._slot or not w[slot_word(k, SLOT_FLAGS)] & CONSUMER_ATTACHED:
                    continue
                t = int(w[slot_word(k, SLOT_TAIL)]) & ~SLOT_IDLE
                if (head - t) & _M > cap or t % RECORD_ALIGN:
                    continue
                if not found or (head - t) & _M > (head - oldest) & _M:
                    oldest, found = t, True
            if found or (head - start) & _M > cap or start % RECORD_ALIGN:
                start = oldest
        w[slot_word(self._slot, SLOT_MODE)] = self._mode
        store_u64(w, self._q, slot_word(self._slot, SLOT_SKIPPED), 0)
        self._read_pos = self._freed = self._released = start
        self._pinned = False
        self._check_floor = False
        attempt = 0
        while True:
            release_fence()
            w[self._tail_word] = (start | SLOT_IDLE) if self._live else start
            if attempt == 0:
                self.set_consumer_attached(True, pid)
            full_fence()
            floor = int(w[FLOOR_WORD])
            acquire_fence()
            if self._live or (start - floor) & _M < 0x80000000:
                break
            if attempt >= 5:  # bounded: a floor above the head is a hostile producer's
                self._check_floor = True  # the first read checks again before reading
                break
            now = int(w[HEAD_WORD])
            acquire_fence()
            newest = int(w[LAST_START_WORD])
            acquire_fence()
            if (newest - floor) & _M < 0x80000000 and (now - newest) & _M <= cap and \
                    attempt < 4:
                start = newest
            else:
                start = now
            self._read_pos = self._freed = self._released = start
            self._read_seq_known = False  # a lossless receiver never skips: not needed
            attempt += 1
        if self._live and not self._read_seq_known:
            # A live receiver may skip later and counts the records it skips by
            # sequence numbers: learn the one of its start (or, when that cannot be
            # done, start at the head mark as a lapped receiver would).
            seq = self._seq_of_start(start)
            if seq is not None:
                self._read_seq, self._read_seq_known = seq, True
            elif mark_ok:
                now_mark = load_u64(w, self._q, HEAD_MARK_WORD)
                acquire_fence()
                now = int(w[HEAD_WORD])
                acquire_fence()
                start = now_mark & _M
                self._read_seq = now_mark >> 32
                self._read_seq_known = not start % RECORD_ALIGN and (now - start) & _M <= cap
                if not self._read_seq_known:
                    start = now
                self._read_pos = self._freed = self._released = start
                release_fence()
                w[self._tail_word] = start | SLOT_IDLE
        self._head_cache = int(w[HEAD_WORD])
        acquire_fence()
        self._eos = False
        return start

    def _store_tail(self, tail: int) -> None:
        self._freed = tail
        self._released = tail
        w = self._w
        value = tail
        if self._live:
            # A live receiver keeps its pin only while it holds (or peeked) a record.
            self._pinned = self._read_pos != tail or self._peeked is not None
            if not self._pinned:
                value = tail | SLOT_IDLE
        # Our reads of the released records happen before the producer reuses them.
        release_fence()
        w[self._tail_word] = value
        # Store-load fence against the producer's "set WAITING, fence, re-check tail".
        if not self._light:
            full_fence()
        if w[PRODUCER_FLAGS_WORD] & PRODUCER_WAITING:
            _futex.wake_word(self._tail_address)

    def _settle_peek(self) -> None:
        held = self._peeked
        if held is not None:
            if not held.try_release():
                raise ViewInUseError(
                    "the peeked view (or an array made from it) is still referenced; "
                    "delete it or copy what you keep (bytes(view), arr.copy())")
            self._peeked = None

    def read(self) -> Optional[bytes]:
        """Copies out the next message; None when there is none right now.

        Raises CorruptRecordError on an invalid record. Consumer; never blocks.
        """
        if self._is_producer:
            self._require(False)
        if self._peeked is not None:
            if self._release_pending:
                self.release()
            else:
                self._settle_peek()  # the peeked message is read (copied) instead
        if self._read_pos != self._freed:
            raise ShmRingError("read() while acquired records are held; release_to() them")
        found = self._locate(self._read_pos)
        if found is None:
            return None
        start, length, end = found
        data: bytes
        if self._is_mmap:
            data = bytes(self._buf[start:start + length])
        else:
            data = self._bytes[start:start + length].tobytes()
        self._read_pos = end
        self._read_seq += 1  # one message read (masked where compared)
        self._lazy_release(end)
        return data

    def peek(self) -> Optional[memoryview]:
        """Zero-copy: the next message as a read-only view, left in the ring; None if empty.

        Repeated calls return the same view until :meth:`release`. Consumer; never
        blocks.
        """
        if self._is_producer:
            self._require(False)
        held = self._peeked
        if held is not None:
            if not self._release_pending:
                return held.view
            self.release()  # finish a release that found the view still in use
        read_pos = self._read_pos
        if read_pos != self._freed:
            raise ShmRingError("peek() while acquired records are held; release_to() them")
        found = self._locate(read_pos)
        if found is None:
            return None
        start, length, end = found
        held = self._tokens.held(start, length, end, True)
        self._peeked = held
        return held.view

    def release(self) -> None:
        """Gives the peeked message back to the producer.

        Raises ViewInUseError while the view or an array made from it is still
        referenced; the message then stays held (it is not delivered again) and the
        next release/peek/read retries. Consumer; never blocks.
        """
        held = self._peeked
        if held is None:
            return
        self._release_pending = True
        if not held.try_release():  # _settle_peek, inlined
            raise ViewInUseError(
                "the peeked view (or an array made from it) is still referenced; "
                "delete it or copy what you keep (bytes(view), arr.copy())")
        self._peeked = None
        self._release_pending = False
        end = held.end
        self._read_pos = end
        self._read_seq += 1  # one message read (masked where compared)
        # _lazy_release, inlined (once per zero-copy message).
        self._freed = end
        if (end - self._released) & _M >= self._tail_batch or end == self._head_cache:
            self._store_tail(end)

    def acquire(self) -> Optional[Tuple[int, int, int]]:
        """The next message not yet acquired, kept in the ring: (offset, len, end).

        ``offset`` is the payload's byte offset in the buffer, ``end`` the ring index
        to pass to :meth:`release_to`. Several may be held; release them in order.
        Consumer; never blocks.
        """
        found = self._locate(self._read_pos)
        if found is not None:
            self._read_pos = found[2]
            self._read_seq += 1  # one message read (masked where compared)
        return found

    def acquire_view(self) -> Optional[Held]:
        """Like :meth:`acquire`, as a tracked read-only view (``Held``). Consumer; never blocks."""
        found = self.acquire()
        if found is None:
            return None
        start, length, end = found
        return self._tokens.held(start, length, end, True)

    def view_of(self, start: int, length: int, end: int) -> Held:
        """A tracked read-only view of ``length`` bytes at buffer offset ``start`` inside
        an acquired record ending at ring index ``end``. Consumer; never blocks."""
        if start < HEADER_SIZE or start + length > HEADER_SIZE + self._capacity:
            raise ValueError(f"view {start}+{length} is outside the data area")
        return self._tokens.held(start, length, end, True)

    @property
    def buffer(self) -> Any:
        """The buffer this ring lives in (header at offset 0, data area at HEADER_SIZE)."""
        return self._buf

    def release_to(self, end: int) -> None:
        """Frees the ring up to ring index ``end`` (an acquired record's end, in order).

        Consumer; never blocks.
        """
        freed = self._freed
        if (end - freed) & _M == 0 or (end - freed) & _M > (self._read_pos - freed) & _M:
            return
        self._store_tail(end)

    def readable_bytes(self) -> int:
        """Bytes written and not yet released (records and padding). Either side; never blocks."""
        if self._is_producer:
            lowest, _, _ = self._scan_slots()
            return (self._head - lowest) & _M
        head = self._w[HEAD_WORD]
        acquire_fence()
        return (head - self._freed) & _M

    def has_data(self) -> bool:
        """Whether a message (not just a WRAP marker) is waiting. Consumer; never blocks."""
        found = self._locate(self._read_pos) is not None
        if self._live:
            self._unpin_if_idle()
        return found

    @property
    def at_end(self) -> bool:
        """Whether the producer set CLOSED and every message was read. Consumer; never blocks."""
        found = self._locate(self._read_pos) is not None
        if self._live:
            self._unpin_if_idle()
        if found:
            return False
        return self._eos

    def wait_readable(self, timeout: Optional[float], keep_waiting: bool = False) -> bool:
        """Sleeps until a message is readable or the stream ended (True), or ``timeout``
        seconds expire (False; None = no limit).

        Follows the wait protocol: spin briefly, then on the first sleep set WAITING
        and fence (membarrier when the producer relies on it), re-check head and
        CLOSED, futex-wait on head, producer_flags and the producer's owner word
        together. Each sleep lasts at most LIVENESS_SLICE_S (ARMED_LIVENESS_SLICE_S
        while the owner word is armed). With a ``timeout``, also returns False
        early when the owner word is newly marked OWNER_DIED (the caller looks at the
        producer: :meth:`take_owner_died`). WAITING is cleared on return unless ``keep_waiting``
        (a caller that will wait again at once, e.g. after its liveness look: the
        re-sleep then needs no new fence; it calls :meth:`end_sleep` when done).
        Raises RingInterruptedError after :meth:`interrupt`. Consumer; blocks (GIL
        released while asleep).
        """
        self._require(False)
        try:
            return self._wait_readable(timeout)
        finally:
            if not keep_waiting:
                self.end_sleep()

    def owner_look(self) -> bool:
        """Looks at the producer's owner word; True when it is newly marked OWNER_DIED
        (the producer's process died or exec'd, or a hostile producer wrote it). Then
        the kernel woke one sleeper of the word: this wakes the others (the ring's
        other receivers); the caller looks at the producer's lock byte, the verdict.
        Later sleeps expect the value seen here. Consumer thread; never blocks."""
        value = self._w[PRODUCER_OWNER_WORD]
        if value == self._owner_seen:
            return False
        self._owner_seen = value
        self._head_sleeper.expected3 = value
        if self._waiter is not None:
            self._waiter.owner_seen = value
        if not value & OWNER_DIED:
            return False
        _futex.note_owner_died()
        _futex.wake_word(self._owner_address)
        self._owner_died = True
        return True

    @property
    def owner_marked(self) -> bool:
        """The owner word, as :meth:`owner_look` last saw it, is marked OWNER_DIED.
        Never blocks."""
        return bool(self._owner_seen & OWNER_DIED)

    def take_owner_died(self) -> bool:
        """Whether :meth:`owner_look` found the owner word newly marked OWNER_DIED since
        the last call (cleared by this call): the consumer should look at the producer
        now. Consumer thread; never blocks."""
        self.owner_look()
        died = self._owner_died
        self._owner_died = False
        return died

    @property
    def owner_armed(self) -> bool:
        """The owner word, as :meth:`owner_look` last saw it, is armed: the producer's
        death wakes this consumer, so its liveness slice may be long. Never blocks."""
        return self._owner_seen != 0 and not self._owner_seen & OWNER_DIED

    def end_sleep(self) -> None:
        """Clears the consumer's WAITING bit left set by ``wait_readable(...,
        keep_waiting=True)`` (no-op when not set). Consumer; never blocks."""
        if self._waiter is not None:
            self._waiter.end()
        if self._sleeping:
            self._sleeping = False
            self._flags_and(~CONSUMER_WAITING)

    def sleep_after_empty_look(self, timeout: Optional[float]) -> None:
        """One sleep of the wait protocol for a consumer whose last look (``acquire``,
        ``peek``, ``read``, ``has_data``) found nothing: returns when the head moves
        past what that look saw, CLOSED is set, a wake or signal comes, or after
        ``timeout`` s (at most a liveness slice is what callers pass); the caller
        looks again. With ``shmring._native`` built this is one native call (spin
        when the last sleep was short, set WAITING, fence, re-check, futex_waitv);
        without it, :meth:`wait_readable`'s steps. Leaves WAITING set: the caller
        calls :meth:`end_sleep` before it returns to its own caller. Raises
        RingInterruptedError after :meth:`interrupt`. Consumer; blocks (GIL
        released while asleep)."""
        waiter = self._waiter
        if waiter is None:
            self._wait_readable(timeout)
            return
        me = threading.get_ident()
        sleepers = self._sleepers
        sleepers.add(me)  # before the flag check, as in _sleep
        try:
            if self._interrupted:
                raise RingInterruptedError("wait for a message interrupted")
            if self.owner_look():
                return  # the caller looks at the producer first
            if waiter.wait(self._head_cache, timeout) < 0:  # no futex_waitv
                self._drop_waiter(waiter)
        finally:
            sleepers.discard(me)

    def acquire_wait(self, deadline: Optional[float], check_at: float,
                     release: int = -1) -> Any:
        """:meth:`acquire`, sleeping while there is nothing to acquire: the consumer's
        blocking lookup, one lookup per wake-up. ``release`` >= 0: first frees the
        ring up to that index, which must be the end of an acquired record not yet
        released, in order (as :meth:`release_to`; in the same native call when it
        can).

        Returns the next record as :meth:`acquire` does, ``(offset, len, end)``; or
        :data:`WAIT_ENDED` (0) when the stream ended (``at_end``: CLOSED and drained)
        or ``deadline`` passed with nothing to read; or :data:`WAIT_CHECK` (1) when
        ``check_at`` was reached with nothing to read (a liveness look is due: the
        caller looks at the producer, then calls again). A WAIT_CHECK before
        ``check_at`` means the producer's owner word was found marked OWNER_DIED
        (:meth:`take_owner_died` says True): the caller looks at the producer now;
        until it takes that news, later calls may return WAIT_CHECK at once. Any
        other change of the owner word is taken as seen here and the wait goes on. ``deadline`` and
        ``check_at`` are ``time.monotonic()`` values (``deadline`` None: no limit).
        With ``shmring._native`` built the look, the sleeps and the looks after them
        are one native call (``_native.Waiter.next``; the GIL released while asleep);
        records it cannot judge on its own (CLOSED, a pin to take, markers at the
        end of the data, anything that does not check out) go through
        :meth:`acquire`, which raises CorruptRecordError for a hostile segment.
        Without it the same steps run in Python. Leaves WAITING set once it slept:
        the caller calls :meth:`end_sleep` before it returns to its own caller.
        Raises RingInterruptedError after :meth:`interrupt`. Consumer; blocks.
        """
        if release >= 0:
            if self._live or self._waiter is None:
                self._store_tail(release)
                release = -1
            else:  # stored by the native call below (a lossless tail: no pin bits)
                self._freed = self._released = release
        while True:
            waiter = self._waiter
            if waiter is not None:
                pos = self._read_pos
                # Bit 0: pin first (a live receiver holding nothing, or a start whose
                # floor check is pending: the Python lookup pins); bit 1: tail stores
                # pending or a pin held (the Python lookup stores them when idle).
                r = waiter.next(pos, (self._check_floor or (self._live and (
                    not self._pinned or pos == self._freed)))
                                | (self._freed != self._released or self._pinned) << 1,
                                deadline, check_at, release)
                release = -1
                if r.__class__ is tuple:
                    start, length, end, self._head_cache, skip = r
                    if skip >= 0:
                        self._markers_skipped(pos, skip)
                    self._read_pos = end
                    self._read_seq += 1  # one message read (masked where compared)
                    return start, length, end
                if r < 2:
                    if r == WAIT_ENDED:
                        # What _locate says of an empty look (CLOSED seen: _eos, by the
                        # slow path) is what at_end says.
                        return WAIT_ENDED
                    if time.monotonic() < check_at and not self.owner_look() \
                            and not self._owner_died:
                        # The owner word changed (armed, re-armed) or was woken, and it
                        # does not say the producer died: taken as seen, sleep again
                        # (as the pure-Python steps below do).
                        continue
                    return WAIT_CHECK
                if r == 3:
                    raise RingInterruptedError("wait for a message interrupted")
                if r < 0:  # no futex_waitv: the pure-Python path from now on
                    self._drop_waiter(waiter)
                    continue
            # The Python lookup (no native helper, or one it leaves to Python).
            found = self.acquire()
            if found is not None:
                return found
            if self._eos:
                return WAIT_ENDED
            if self._interrupted:
                raise RingInterruptedError("wait for a message interrupted")
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return WAIT_ENDED
            if now >= check_at:
                return WAIT_CHECK
            if self.owner_look() or self._owner_died:
                return WAIT_CHECK  # the owner word says the producer died: the caller looks
            until = check_at if deadline is None or check_at < deadline else deadline
            nap: Optional[float] = None if until == _INF else until - now
            if self._waiter is not None:
                self.sleep_after_empty_look(nap)  # a look the native call left to Python
            else:
                self._sleep_once(self._head_cache, nap, self._spin)

    def _markers_skipped(self, pos: int, skip: int) -> None:
        """The native lookup found the record at ``skip & ~7`` behind WRAP markers (``skip
        & 1``) or PAD records starting at ``pos``: released as _locate releases them
        when nothing is held before them."""
        if pos == self._read_pos and pos == self._freed:
            at = skip & ~(RECORD_ALIGN - 1)
            self._read_pos = at
            if skip & 1:
                self._store_tail(at)
            else:
                self._lazy_release(at)

    def _sleep_once(self, seen: int, nap: Optional[float], spin: bool) -> None:
        """One sleep of the pure-Python wait after an empty look that saw head ``seen``:
        spin first when ``spin`` (returning when head moves), set WAITING and fence on
        the first sleep of a wait (membarrier when the producer relies on it), re-check
        head and CLOSED, futex-wait on head and producer_flags at most ``nap`` s. WAITING
        stays set (end_sleep). Consumer; blocks (GIL released while asleep)."""
        w = self._w
        if spin:
            # Spin on the word that can change our answer (one aligned load each),
            # not on a full record lookup: only when the last sleep was short (a
            # slow stream's next message is far away).
            for _ in range(SPIN_POLLS):
                if w[HEAD_WORD] != seen:
                    return
        if not self._sleeping:
            # The running -> sleeping transition: set WAITING, fence, then look again
            # below. WAITING stays set, and fenced, across re-sleeps.
            self._flags_or(CONSUMER_WAITING)
            full_fence()
            self._sleeping = True
            self._fenced = False
        if not self._fenced:
            if w[PRODUCER_FLAGS_WORD] & PRODUCER_MEMBARRIER and not heavy_barrier():
                nap = _cap(nap, UNFENCED_NAP_S)  # the waker is unordered: poll
            else:
                self._fenced = True
        pflags = w[PRODUCER_FLAGS_WORD]
        if w[HEAD_WORD] == seen and not pflags & PRODUCER_CLOSED:
            start = time.monotonic()
            self._sleep(self._head_sleeper, seen, pflags, nap)
            # Spin before the next sleep only when messages come close together.
            self._spin = time.monotonic() - start < _SPIN_AFTER_SLEEP_S

    def read_wait(self, deadline: Optional[float], check_at: float) -> Any:
        """:meth:`read`, sleeping while there is nothing to read (:meth:`acquire_wait`):
        the message as bytes, or WAIT_ENDED / WAIT_CHECK as acquire_wait returns them.
        Consumer; blocks."""
        if self._peeked is not None or self._read_pos != self._freed:
            data = self.read()  # settles the peeked message; refuses held records
            if data is not None:
                return data
        found = self.acquire_wait(deadline, check_at)
        if found.__class__ is not tuple:
            return found
        start, length, end = found
        if self._is_mmap:
            data = bytes(self._buf[start:start + length])
        else:
            data = self._bytes[start:start + length].tobytes()
        self._lazy_release(end)
        return data

    def _drop_waiter(self, waiter: Any) -> None:
        """The kernel has no futex_waitv: the pure-Python sleep (futex_wait on head
        alone) takes over for good, from a cleared WAITING bit."""
        waiter.close()  # clears the WAITING it set
        self._waiter = None
        _futex.no_waitv()

    def _wait_readable(self, timeout: Optional[float]) -> bool:
        # The blocking reader's hot path: every bytecode here runs on caches gone
        # cold during the sleep, so the loop is kept short (docs/PERF-PYTHON.md).
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        w = self._w
        spin = self._spin
        while True:
            if self._eos or self._locate(self._read_pos) is not None:
                if self._live:
                    self._unpin_if_idle()
                return True
            if self._interrupted:
                raise RingInterruptedError("wait for a message interrupted")
            if self.owner_look() and deadline is not None:
                return False  # the owner word says the producer died: the caller looks
            cap = (ARMED_LIVENESS_SLICE_S if self.owner_armed and _futex.have_waitv()
                   else LIVENESS_SLICE_S)
            if deadline is None:
                nap: Optional[float] = cap
            else:
                nap = deadline - time.monotonic()
                if nap <= 0:
                    return False
                if nap > cap:
                    nap = cap
            seen = self._head_cache  # the head _locate just found empty
            waiter = self._waiter
            if waiter is not None:
                # Spin, WAITING + fence (+ membarrier), re-check, futex_waitv: one
                # native call (shmring._native), registered for interrupt() as _sleep.
                me = threading.get_ident()
                sleepers = self._sleepers
                sleepers.add(me)
                try:
                    if self._interrupted:
                        continue  # raised at the top of the loop
                    if waiter.wait(seen, nap) < 0:  # no futex_waitv: the pure path
                        self._drop_waiter(waiter)
                finally:
                    sleepers.discard(me)
                continue
            if spin:
                # Spin on the word that can change our answer (one aligned load
                # each), not on a full record lookup; CLOSED and interrupt() are
                # looked at by the full check that follows. Skipped after a long
                # sleep (a slow stream: the next message is far away).
                spin = False
                for _ in range(SPIN_POLLS):
                    if w[HEAD_WORD] != seen:
                        break
                continue
            self._sleep_once(seen, nap, False)

    def _flags_or(self, bits: int) -> None:
        """Sets ``bits`` in this receiver slot's flags word: one atomic RMW where the
        platform allows (_atomics.fetch_or; the native wait's C code writes the word
        too). Relaxed as far as ordering goes: callers fence. Never blocks."""
        fetch_or(self._w, self._flags_word, self._address + self._flags_word * 4, bits)

    def _flags_and(self, mask: int) -> None:
        """Keeps ``mask``'s bits of this slot's flags word (atomic RMW where possible)."""
        fetch_and(self._w, self._flags_word, self._address + self._flags_word * 4, mask)

    def _pflags_or(self, bits: int) -> None:
        """Sets ``bits`` in producer_flags (atomic RMW where possible). Never blocks."""
        fetch_or(self._w, PRODUCER_FLAGS_WORD, self._address + PRODUCER_FLAGS_WORD * 4, bits)

    def _pflags_and(self, mask: int) -> None:
        """Keeps ``mask``'s bits of producer_flags (atomic RMW where possible)."""
        fetch_and(self._w, PRODUCER_FLAGS_WORD, self._address + PRODUCER_FLAGS_WORD * 4, mask)

    def set_consumer_attached(self, attached: bool, pid: int) -> None:
        """Sets (pid first) or clears (flag first) ATTACHED and consumer_pid. Consumer;
        never blocks."""
        self._require(False)
        w = self._w
        flags_word = self._flags_word
        pid_word = slot_word(self._slot, SLOT_PID)
        if attached:
            w[pid_word] = pid & _M
            release_fence()
            # A receiver that died asleep left WAITING (and COUNTS_SLEEPS) set: cleared,
            # or a C++ producer would skip our wakes on the dead one's unchanged sleep
            # count (we do not count ours; PROTOCOL.md section 4, "Wake once per sleep").
            self._flags_and(~(CONSUMER_WAITING | CONSUMER_COUNTS_SLEEPS))
            self._sleeping = False
            # One more attach (bits 16..31, wrapping), then ATTACHED.
            fetch_add(w, flags_word, self._address + flags_word * 4, CONSUMER_ATTACH_COUNT_ONE)
            self._flags_or(CONSUMER_ATTACHED)
        else:
            if self._live:
                # Leaving: the slot's position becomes a plain tail again (slot 0 of a
                # ring nobody else reads keeps the backlog from here).
                w[slot_word(self._slot, SLOT_MODE)] = MODE_LOSSLESS
                release_fence()
                w[self._tail_word] = self._released
                self._pinned = False
            self._flags_and(~CONSUMER_ATTACHED)
            release_fence()
            w[pid_word] = 0
        full_fence()
        if not attached and w[PRODUCER_FLAGS_WORD] & PRODUCER_WAITING:
            # A producer asleep for space sleeps on our flags word too: it hears
            # the detach at once instead of at its next liveness look.
            _futex.wake_word(self._tail_address)

