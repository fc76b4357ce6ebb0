"""ShmProducer / ShmConsumer: a named ring with its lifecycle.

Create (replacing a stale segment), attach (optionally waiting for the producer),
end of stream, dead or replaced producer. Mirrors ``core/include/shm/shm_channel.hpp``
and interoperates with it: a C++ producer can feed a Python consumer and back.
"""
from __future__ import annotations

import errno
import os
import struct
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from . import _shm
from ._process import process_alive
from .errors import (IncompatibleSegmentError, ProducerDeadError, ProducerReplacedError,
                     RingBusyError, RingNotFoundError, RingTimeoutError,
                     StreamClosedError, ViewInUseError)
from .layout import (CONSUMER_ATTACHED, CONSUMER_FLAGS_OFFSET, CONSUMER_PID_OFFSET,
                     GENERATION_OFFSET, HEADER_SIZE, MAGIC, MAGIC_OFFSET, PRODUCER_CLOSED,
                     PRODUCER_FLAGS_OFFSET, PROFILE_OPAQUE, may_be_ring_in_creation,
                     round_up_capacity)
from .ring import ByteRingBuffer, validate_header

#: How often a waiting consumer looks at the producer's pid and the name's
#: generation: bounds the time to notice a crash (as the C++ core does).
LIVENESS_SLICE = 0.2
# A segment without a magic (or shorter than the header) this many seconds after
# its last change is abandoned debris; younger, another creator may be between
# shm_open and its magic store (as the C++ core's kAbandonedAfterS).
_ABANDONED_AFTER = 5.0
# How often a creator looks again at a name another creator is still setting up,
# and how long it pauses in between (about 1 s in all, as the C++ core).
_CREATE_ATTEMPTS = 20
_CREATE_PAUSE = 0.05


def _new_generation() -> int:
    g = int.from_bytes(os.urandom(8), "little")
    return g or 1


def _header_fields(header: bytes) -> tuple:
    magic, = struct.unpack_from("<I", header, MAGIC_OFFSET)
    generation, = struct.unpack_from("<Q", header, GENERATION_OFFSET)
    flags, pid = struct.unpack_from("<II", header, PRODUCER_FLAGS_OFFSET)
    return magic, generation, flags, pid


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, not {timeout}")
    return time.monotonic() + timeout


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Closer:
    """What closing needs, kept apart from the user's object so a finalizer can run it."""

    def __init__(self, ring: ByteRingBuffer, segment: _shm.Segment, producer: bool,
                 claim_fd: Optional[int] = None) -> None:
        self.ring: Optional[ByteRingBuffer] = ring
        self.segment = segment
        self.producer = producer
        self.pid = os.getpid()
        self.generation = ring.generation
        self.claim_fd = claim_fd  # consumer: holds the flock that makes us THE consumer

    def __call__(self) -> None:
        ring, self.ring = self.ring, None
        if ring is None or os.getpid() != self.pid:  # a forked child owns nothing
            return
        try:
            if self.producer:
                # Unlink first, then CLOSED: while we are alive and not CLOSED nobody
                # replaces the name, so the generation we check is still the one we
                # unlink. (After an explicit ring.set_closed() a successor may replace
                # us at any time; the check then keeps us off its name except in the
                # instant between check and unlink.)
                header = _shm.peek_header(self.segment.name, HEADER_SIZE)
                if header is not None and len(header) >= 32 and \
                        _header_fields(header)[1] == self.generation:
                    _shm.unlink(self.segment.name, missing_ok=True)
                if not ring.producer_closed():
                    ring.set_closed()
            else:
                ring.set_consumer_attached(False, 0)
        finally:
            ring.detach()
            self.segment.close()
            fd, self.claim_fd = self.claim_fd, None
            if fd is not None:
                os.close(fd)  # drops the consumer claim (after ATTACHED is cleared)


class _Endpoint:
    """What both ends of a ring say about themselves (either side; never blocks)."""

    _ROLE = ""
    _name: str
    _ring: Optional[ByteRingBuffer]

    @property
    def ring(self) -> ByteRingBuffer:
        """The underlying ByteRingBuffer (this end's side)."""
        if self._ring is None:
            raise StreamClosedError(f"{self._ROLE} of ring {self._name!r} is closed")
        return self._ring

    @property
    def name(self) -> str:
        return self._name

    @property
    def capacity(self) -> int:
        """Data-area bytes (a producer's requested capacity rounded up to a power of two)."""
        return self.ring.capacity

    @property
    def profile(self) -> int:
        """0 = opaque messages, 1 = GStreamer framing (read it with FrameReader)."""
        return self.ring.profile


class ShmProducer(_Endpoint):
    """The writing end of ring ``name``: creates it and owns the name.

    ``ShmProducer(name, capacity)`` creates a ring whose data area is ``capacity``
    bytes rounded UP to a power of two (>= 64, <= 2**31), permissions ``mode``
    (0600). A name held by a live producer that has not closed is refused
    (RingBusyError); a stale one (producer dead or CLOSED) is replaced. ``profile``
    1 marks GStreamer framing. ``start_index`` is a test hook (initial head/tail).
    ``close()`` (or leaving the ``with`` block, or interpreter exit) ends the stream
    and unlinks the name. Blocks only in OS calls.
    """

    _ROLE = "producer"

    def __init__(self, name: str, capacity: int = 1 << 20, *, profile: int = PROFILE_OPAQUE,
                 mode: int = 0o600, start_index: int = 0) -> None:
        _shm.validate_name(name)
        if capacity < 0:
            raise ValueError(f"capacity must be positive, not {capacity}")
        rounded = round_up_capacity(capacity)
        if rounded == 0:
            raise ValueError(f"capacity {capacity} exceeds the maximum 2^31")
        self._name = name
        segment = self._create_segment(name, HEADER_SIZE + rounded, mode)
        try:
            assert segment.mm is not None
            # producer_pid is stored before the magic (see _create_segment).
            ByteRingBuffer.initialize(segment.mm, rounded, profile, _new_generation(),
                                      start_index, os.getpid())
            ring = ByteRingBuffer(segment.mm, True)
        except BaseException:
            segment.close()
            _shm.unlink(name, missing_ok=True)
            raise
        self._ring: Optional[ByteRingBuffer] = ring
        self._closer = _Closer(ring, segment, True)
        self._finalizer = weakref.finalize(self, self._closer)
        self._closed = False

    @staticmethod
    def _create_segment(name: str, size: int, mode: int) -> _shm.Segment:
        """Creates the segment, replacing a stale one: producer dead or CLOSED, or a
        creation abandoned long ago. A creator writes producer_pid before the magic,
        so a magic with pid 0 is a foreign writer's (unknown): treated as alive."""
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                return _shm.create(name, size, mode)
            except FileExistsError:
                pass
            header = _shm.peek_header(name, HEADER_SIZE)
            if header is None:
                continue  # gone meanwhile: try creating again
            magic = _header_fields(header)[0] if len(header) == HEADER_SIZE else 0
            existing = _shm.segment_size(name)
            if magic == 0 and existing is not None and not may_be_ring_in_creation(existing):
                raise IncompatibleSegmentError(
                    f"segment {name!r} exists and is not a shmring ring ({existing} bytes, "
                    f"no magic); remove it first", "size")
            if magic == 0:
                # No magic yet: another creator may be between shm_open and its magic
                # store. Only debris older than _ABANDONED_AFTER is stale.
                age = _shm.age_seconds(name)
                if 0 <= age < _ABANDONED_AFTER:
                    if attempt + 1 < _CREATE_ATTEMPTS:
                        time.sleep(_CREATE_PAUSE)
                        continue
                    raise RingBusyError(
                        f"ring {name!r} is being created by another process (magic still "
                        f"0, last changed {age:.1f} s ago); retry later")
            elif magic == MAGIC:
                _, _, flags, pid = _header_fields(header)
                if not flags & PRODUCER_CLOSED and process_alive(pid):  # pid 0: alive
                    raise RingBusyError(
                        f"ring {name!r} is in use by live producer pid {pid}")
            else:
                raise IncompatibleSegmentError(
                    f"segment {name!r} exists and is not a shmring ring (magic "
                    f"0x{magic:08X}); remove it first", "magic")
            _shm.unlink(name, missing_ok=True)
        raise RingBusyError(f"could not create ring {name!r}: the name kept reappearing")

    # ---- identity ---------------------------------------------------------------

    @property
    def max_message_size(self) -> int:
        """Largest message that can ever fit: capacity - 4."""
        return self.ring.max_message_size

    @property
    def generation(self) -> int:
        return self.ring.generation

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- writing ------------------------------------------------------------------

    def write(self, data: Any, timeout: Optional[float] = 0.0) -> bool:
        """Writes one message (any bytes-like object); False when it does not fit in time.

        ``timeout`` 0 (the default) never blocks: False means full right now. A
        positive timeout waits up to that many seconds for space, None waits as
        long as it takes. Raises MessageTooLargeError for a message that can never
        fit, StreamClosedError after close(). Producer; blocks when timeout != 0.
        """
        ring = self._ring
        if ring is None:
            raise StreamClosedError(f"write to closed producer of ring {self._name!r}")
        if ring.write(data):
            return True
        if timeout == 0:
            return False
        n = len(data) if type(data) is bytes else memoryview(data).nbytes
        deadline = _deadline(timeout)
        while True:
            if not ring.wait_writable(n, _remaining(deadline)):
                return False
            if ring.write(data):
                return True

    @contextmanager
    def reserve(self, n: int, timeout: Optional[float] = None) -> Iterator[memoryview]:
        """Zero-copy write: yields a writable ``n``-byte view into the ring.

        Fill it inside the ``with`` block; leaving the block normally publishes the
        message, an exception abandons it. Waits up to ``timeout`` seconds for space
        (None = no limit, 0 = not at all) and raises RingTimeoutError when there is
        none. The view (and arrays made from it) must not be referenced after the
        block: ViewInUseError otherwise. Producer; blocks.
        """
        ring = self.ring
        view = ring.reserve(n)
        if view is None:
            deadline = _deadline(timeout)
            while view is None:
                if timeout == 0 or not ring.wait_writable(n, _remaining(deadline)):
                    raise RingTimeoutError(
                        f"no room for a {n}-byte message in ring {self._name!r} "
                        f"within {timeout} s")
                view = ring.reserve(n)
        try:
            yield view
        except BaseException:
            try:
                ring.cancel()
            except ViewInUseError:
                pass
            raise
        ring.commit()

    def writeable_bytes(self) -> int:
        """Free bytes in the ring right now. Producer; never blocks."""
        return self.ring.writeable_bytes()

    def readable_bytes(self) -> int:
        """Bytes written and not yet consumed. Producer; never blocks."""
        return self.ring.readable_bytes()

    def count_dropped(self, n: int = 1) -> None:
        """Counts ``n`` messages dropped on purpose (the header's ``dropped``). Producer;
        never blocks."""
        self.ring.add_dropped(n)

    @property
    def dropped(self) -> int:
        """Messages counted as dropped so far."""
        return self.ring.dropped()

    def consumer_attached(self) -> bool:
        """Whether a live consumer is attached now. Producer; never blocks."""
        ring = self.ring
        return bool(ring.consumer_flags() & CONSUMER_ATTACHED) and \
            process_alive(ring.consumer_pid())

    def interrupt(self) -> None:
        """Makes a blocked write/reserve in another thread raise RingInterruptedError;
        sticky until clear_interrupt(). Any thread."""
        self.ring.interrupt()

    def clear_interrupt(self) -> None:
        self.ring.clear_interrupt()

    def close(self) -> None:
        """Ends the stream: unlinks the name (if it still holds this ring), then sets
        CLOSED and wakes the consumer, and unmaps. Idempotent. Producer; never
        blocks. (``ring.set_closed()`` alone ends the stream but keeps the name.)"""
        if self._ring is None:
            return
        self._ring = None
        self._closed = True
        self._finalizer()

    def __enter__(self) -> "ShmProducer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ring is None else f"capacity={self._ring.capacity}"
        return f"<ShmProducer {self._name!r} {state}>"


class ShmConsumer(_Endpoint):
    """The reading end of ring ``name``. Never unlinks it.

    ``timeout`` says how long to wait for a producer to create the ring: 0 (the
    default) attaches now or raises RingNotFoundError, None waits without limit, a
    number waits that many seconds. An existing but invalid segment is refused at
    once with IncompatibleSegmentError naming the field. A ring already read by
    another live consumer raises RingBusyError. Blocks while waiting for the ring.
    """

    _ROLE = "consumer"

    def __init__(self, name: str, timeout: Optional[float] = 0.0) -> None:
        _shm.validate_name(name)
        self._name = name
        segment = self._open_segment(name, timeout)
        claim_fd: Optional[int] = None
        try:
            assert segment.mm is not None
            # Claim the role before writing any consumer word: a refused consumer
            # must not touch the live one's flags.
            claim_fd = self._claim(name, segment.mm)
            ring = ByteRingBuffer(segment.mm, False)
            ring.set_consumer_attached(True, os.getpid())
        except BaseException:
            segment.close()
            if claim_fd is not None:
                os.close(claim_fd)
            raise
        self._ring: Optional[ByteRingBuffer] = ring
        self._generation = ring.generation
        self._closer = _Closer(ring, segment, False, claim_fd)
        self._finalizer = weakref.finalize(self, self._closer)
        self._last_check = -1e9

    @staticmethod
    def _claim(name: str, mm: Any) -> Optional[int]:
        """Takes the consumer role: an exclusive flock on the segment, held (the
        returned fd) for the consumer's lifetime, so two consumers racing to attach
        cannot both win, even in one process. Where flock is unsupported (None
        returned), falls back to the ATTACHED flag and the liveness of its pid.
        Raises RingBusyError when another consumer holds the role."""
        try:
            fd = _shm.claim_exclusive(name)
        except BlockingIOError:
            cpid, = struct.unpack_from("<I", mm, CONSUMER_PID_OFFSET)
            raise RingBusyError(f"ring {name!r} already has a consumer (pid {cpid}); "
                                "a ring has one consumer") from None
        except FileNotFoundError:
            fd = None  # unlinked since we mapped it: no one else can claim it by name
        if fd is not None:
            return fd  # any ATTACHED flag left behind is a dead consumer's
        cflags, cpid = struct.unpack_from("<II", mm, CONSUMER_FLAGS_OFFSET)
        if cflags & CONSUMER_ATTACHED and cpid != 0 and process_alive(cpid):
            raise RingBusyError(f"ring {name!r} already has a consumer (pid {cpid}); "
                                "a ring has one consumer")
        return None

    @staticmethod
    def _open_segment(name: str, timeout: Optional[float]) -> _shm.Segment:
        deadline = _deadline(timeout)
        pause = 0.001
        while True:
            not_ready = None
            try:
                segment = _shm.open_existing(name)
            except FileNotFoundError:
                segment = None
            except OSError as e:
                if e.errno != errno.EAGAIN:
                    raise
                segment, not_ready = None, ("size", str(e))
            if segment is not None:
                assert segment.mm is not None
                bad = validate_header(segment.mm)
                if bad is None:
                    return segment
                segment.close()
                if bad[0] == "magic" and bad[1].startswith("magic is 0:"):
                    not_ready = bad
                else:
                    raise IncompatibleSegmentError(f"ring {name!r} is not usable: {bad[1]}",
                                                   bad[0])
            now = time.monotonic()
            if not_ready is not None:
                # Created but not initialized (size 0, magic 0): a producer mid-way, or
                # debris a new producer will replace. Waited for like a missing name,
                # up to the timeout (PROTOCOL.md section 2; as the C++ core).
                if deadline is not None and now >= deadline:
                    raise IncompatibleSegmentError(
                        f"ring {name!r} is not usable: {not_ready[1]}", not_ready[0])
            else:
                if deadline is not None and now >= deadline:
                    if timeout == 0:
                        raise RingNotFoundError(errno.ENOENT, f"no ring {name!r}")
                    raise RingNotFoundError(
                        errno.ENOENT, f"no ring {name!r} appeared within {timeout} s")
            step = pause if deadline is None else max(0.0, min(pause, deadline - now))
            time.sleep(step if not_ready is None else min(pause, 0.01))
            pause = min(pause * 2, 0.02)  # poll the name at most every 20 ms

    # ---- identity ---------------------------------------------------------------

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def dropped(self) -> int:
        """Messages the producer counted as dropped."""
        return self.ring.dropped()

    @property
    def at_end(self) -> bool:
        """True once the producer closed the stream and every message was read."""
        return self.ring.at_end()

    # ---- reading ------------------------------------------------------------------

    def has_data(self) -> bool:
        """Whether a message is waiting. Consumer; never blocks."""
        return self.ring.has_data()

    def readable_bytes(self) -> int:
        """Bytes written and not yet read (records and padding). Consumer; never blocks."""
        return self.ring.readable_bytes()

    def writeable_bytes(self) -> int:
        """Free bytes in the ring as the consumer sees it. Consumer; never blocks."""
        return self.ring.writeable_bytes()

    def read(self, timeout: Optional[float] = 0.0) -> Optional[bytes]:
        """The next message as bytes, or None when there is none.

        ``timeout`` 0 (the default) never blocks; a number waits up to that many
        seconds; None waits until a message or the end of the stream. None is
        returned for empty / timed out / end of stream (then ``at_end`` is True).
        Raises ProducerDeadError or ProducerReplacedError once every message the
        producer finished writing has been read, CorruptRecordError on an invalid
        record. Consumer; blocks when timeout != 0 (GIL released while asleep).
        """
        ring = self._ring
        if ring is None:
            raise StreamClosedError(f"read from closed consumer of ring {self._name!r}")
        data = ring.read()
        if data is not None:
            return data
        while self._wait(ring, timeout):
            data = ring.read()
            if data is not None:
                return data
            if ring.at_end():
                return None
        return None

    def _wait(self, ring: ByteRingBuffer, timeout: Optional[float]) -> bool:
        """Waits for a message: True when one is (probably) there, False on timeout or
        end of stream. Looks at producer liveness while the ring is empty."""
        deadline = _deadline(timeout)
        while True:
            if ring.has_data():
                return True
            if ring.at_end():
                return False
            self._check_producer(ring, force=timeout != 0)
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                return False
            if ring.wait_readable(LIVENESS_SLICE if remaining is None
                                  else min(remaining, LIVENESS_SLICE)):
                if ring.has_data():
                    return True

    def _check_producer(self, ring: ByteRingBuffer, force: bool) -> None:
        """Raises ProducerDeadError / ProducerReplacedError (only called when empty)."""
        now = time.monotonic()
        if not force and now - self._last_check < LIVENESS_SLICE:
            return
        self._last_check = now
        # A re-created name says more (re-open it) than a dead pid, so it goes first.
        header = _shm.peek_header(self._name, 32)
        if header is not None and len(header) >= 32:
            magic, generation, _, _ = _header_fields(header + bytes(HEADER_SIZE))
            if magic == MAGIC and generation != self._generation:
                if ring.has_data():
                    return
                raise ProducerReplacedError(
                    f"ring {self._name!r} was re-created by another producer (generation "
                    f"0x{self._generation:016x} -> 0x{generation:016x}); re-open it",
                    self._generation, generation)
        pid = ring.producer_pid()
        if not ring.producer_closed() and not process_alive(pid):
            if ring.has_data():
                return
            raise ProducerDeadError(
                f"producer pid {pid} of ring {self._name!r} died without closing the "
                "stream", pid)

    def check_producer(self) -> None:
        """Raises ProducerDeadError / ProducerReplacedError if the producer is gone or
        was replaced and nothing is left to read. Consumer; never blocks (one open +
        read of the name)."""
        ring = self.ring
        if not ring.has_data():
            self._check_producer(ring, force=True)

    def __iter__(self) -> "ShmConsumer":
        return self

    def __next__(self) -> bytes:
        """The next message, waiting as long as needed; StopIteration at end of stream."""
        data = self.read(timeout=None)
        if data is None:
            raise StopIteration
        return data

    def read_view(self, timeout: Optional[float] = None) -> "_ReadView":
        """Zero-copy read: a context manager yielding the next message as a read-only
        memoryview into the ring (None when there is none within ``timeout`` or at
        end of stream).

        The message is given back to the producer when the block ends. If the view
        (or a slice, cast or numpy array made from it) is still referenced then,
        ViewInUseError is raised and the message stays held until the next call,
        which retries: ring memory is never reused under a live view.
        ``timeout`` as for :meth:`read` (default: wait). Consumer; blocks (on
        entering the ``with`` block).
        """
        return _ReadView(self, timeout)

    def interrupt(self) -> None:
        """Makes a blocked read in another thread raise RingInterruptedError; sticky
        until clear_interrupt(). Any thread."""
        self.ring.interrupt()

    def clear_interrupt(self) -> None:
        self.ring.clear_interrupt()

    def close(self) -> None:
        """Detaches (clears ATTACHED) and unmaps; never unlinks. Idempotent. Consumer;
        never blocks."""
        if self._ring is None:
            return
        self._ring = None
        self._finalizer()

    def __enter__(self) -> "ShmConsumer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ring is None else f"capacity={self._ring.capacity}"
        return f"<ShmConsumer {self._name!r} {state}>"


class _ReadView:
    """What ShmConsumer.read_view returns: a one-shot context manager (a small class,
    not @contextmanager: no generator per message on the zero-copy path)."""

    __slots__ = ("_consumer", "_timeout", "_ring")

    def __init__(self, consumer: ShmConsumer, timeout: Optional[float]) -> None:
        self._consumer = consumer
        self._timeout = timeout
        self._ring: Optional[ByteRingBuffer] = None

    def __enter__(self) -> Optional[memoryview]:
        if self._ring is not None:
            raise RuntimeError("a read_view() context manager can be entered only once")
        consumer = self._consumer
        ring = consumer._ring
        if ring is None:
            ring = consumer.ring  # raises StreamClosedError
        view = ring.peek()
        if view is None and consumer._wait(ring, self._timeout):
            view = ring.peek()
        self._ring = ring
        return view

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        ring = self._ring
        assert ring is not None
        if exc_type is None:
            ring.release()
            return
        try:
            ring.release()
        except ViewInUseError:
            pass  # the block's own exception is the one to see
