"""ShmProducer / ShmConsumer: a named ring with its lifecycle.

Create (replacing a stale segment), attach (optionally waiting for the producer),
end of stream, dead or replaced producer. Mirrors ``core/include/shm/shm_channel.hpp``
and interoperates with it: a C++ producer can feed a Python consumer and back.

Liveness (Linux): the producer holds an OFD lock on byte 0 of its segment for as long
as it owns the ring, the consumer one on byte 1 (see ``_locks``); the kernel drops
them when the process dies, whatever its pid namespace. The pids in the header are
information only. Elsewhere the pid is probed instead.

Names shared with C++: ``ShmProducer.end_stream()`` is C++ ``ShmProducer::Close()``
(CLOSED, mapping and name kept); ``close()`` (and leaving ``with``) is the C++
destructor (end of stream if not yet, unlink its own name, unmap).
"""
from __future__ import annotations

import errno
import os
import struct
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple

from . import _futex, _locks, _shm
from ._owner import OwnerArm
from ._aio import run_interruptibly
from ._atomics import buffer_address, fetch_and
from ._process import process_alive
from ._tuning import (ABANDONED_AFTER_S, ARMED_LIVENESS_SLICE_S, CREATE_ATTEMPTS, CREATE_RETRY_S,
                      LIVENESS_SLICE_S, OPEN_POLL_MAX_S, OPEN_POLL_MIN_S, OWNER_DIED_LOOK_S)
from .interrupter import Interrupter
from .errors import (ForeignOwnerError, IncompatibleSegmentError, ProducerDeadError,
                     ProducerReplacedError, RingBusyError, RingInterruptedError,
                     RingNotFoundError, RingTimeoutError, ShmRingError, StreamClosedError,
                     ViewInUseError)
from .layout import (CONSUMER_ATTACHED,
                     GENERATION_OFFSET, HEADER_SIZE, IDENT_SIZE, MAGIC, MAGIC_OFFSET,
                     PRODUCER_CLOSED, PRODUCER_FLAGS_OFFSET, PRODUCER_PID_OFFSET,
                     PRODUCER_WAITING, VERSION,
                     VERSION_OFFSET,
                     PROFILE_OPAQUE, RECORD_ALIGN, may_be_ring_in_creation, round_up_capacity)
from .layout import (CONSUMER_ATTACH_COUNT_SHIFT, HEAD_WORD, PRODUCER_FLAGS_WORD, PRODUCER_LIVE,
                     PRODUCER_OWNER_OFFSET, TAIL_WORD)
from .layout import (MAX_RECEIVERS_LIMIT, MAX_RECEIVERS_WORD, MODE_LIVE, MODE_LOSSLESS, SLOT_FLAGS,
                     SLOT_PID, slot_word)
from ._fence import acquire_fence
from .ring import WAIT_CHECK, ByteRingBuffer, _new_generation, validate_header

# Segments of live producers and consumers of this process. A forked child closes its
# copies of their descriptors at once: an OFD lock lives as long as any descriptor of
# its open file description, so a child that kept one would keep a crashed parent
# looking alive (and keep its consumer role).
_OPEN_SEGMENTS: "weakref.WeakSet[_shm.Segment]" = weakref.WeakSet()


def _close_inherited_descriptors() -> None:
    for segment in list(_OPEN_SEGMENTS):
        fd, segment.fd = segment.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_descriptors)


def _header_fields(header: bytes) -> Tuple[int, int, int, int]:
    """(magic, generation, producer_flags, producer_pid) of a header copy (>= 40 bytes)."""
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


def _slice(remaining: Optional[float]) -> float:
    """One sleep of a wait: at most a liveness slice."""
    return LIVENESS_SLICE_S if remaining is None or remaining > LIVENESS_SLICE_S else remaining


class _ConsumerWatch:
    """A producer waiting for space: whether its consumer is gone (died or detached)
    while one had attached to the ring (before the wait or during it). Before any
    consumer ever attached the wait goes on (either side may start first). One lock
    probe per call: at the start, per liveness slice, and when the consumer attached
    or detached."""

    __slots__ = ("_producer", "_had")

    def __init__(self, producer: "ShmProducer") -> None:
        self._producer = producer
        self._had = producer.ring.consumer_flags >> CONSUMER_ATTACH_COUNT_SHIFT != 0

    def gone(self) -> bool:
        producer = self._producer
        if producer.ring.max_receivers > 1:
            # Several receivers: a dead one must not hold us back (reaped per slice);
            # the others may still make room.
            producer._maybe_reap(producer.ring)
            return False
        attached = producer.consumer_attached()
        if self._had and not attached:
            return True
        self._had = self._had or attached
        return False


def _check_owner(name: str, uid: int, mode: int, allowed: bool) -> None:
    """Refuses a segment owned by another uid unless the caller allowed it."""
    me = os.geteuid()
    if uid != me and not allowed:
        who = _shm.owner_name(uid)
        raise ForeignOwnerError(
            f"{_shm.path_of(name)} belongs to uid {uid} ({who}), not to uid {me} "
            f"({_shm.owner_name(me)}); refusing it (pass allow_foreign_owner=True if that "
            "user is trusted)", _shm.path_of(name), uid, who, mode & 0o7777)


def _still_the_stale_ring(fd: int, seen: bytes) -> bool:
    """Whether the file of ``fd`` still holds the ring whose header ``seen`` was judged
    stale: the same magic, version and generation (a stale ring stays stale), and for
    a segment without magic or of another layout version, still no producer byte
    held (C++ StillTheStaleRing)."""
    identity = 32  # magic, version, header size, profile, generation
    want = min(len(seen), identity)
    now = os.pread(fd, identity, 0)
    if len(now) < want or now[:want] != seen[:want]:
        return False
    v2 = want == identity and \
        struct.unpack_from("<I", seen, MAGIC_OFFSET)[0] == MAGIC and \
        struct.unpack_from("<H", seen, VERSION_OFFSET)[0] == VERSION
    return v2 or not (_locks.HAVE_OFD_LOCKS and _locks.is_locked(fd, _locks.PRODUCER_BYTE))


class _Closer:
    """What closing needs, kept apart from the user's object so a finalizer can run it."""

    def __init__(self, ring: ByteRingBuffer, segment: _shm.Segment, producer: bool,
                 owner: Optional[OwnerArm] = None) -> None:
        self.ring: Optional[ByteRingBuffer] = ring
        self.segment = segment
        self.producer = producer
        self.owner = owner  # the producer's owner-word arm, disarmed before the unmap
        self.pid = os.getpid()
        self.generation = ring.generation

    def __call__(self) -> None:
        ring, self.ring = self.ring, None
        if ring is None:
            return
        if os.getpid() != self.pid:  # a forked child owns nothing: only drop the copy
            # (the owner word and its arming thread are the parent's: left alone)
            ring.detach()
            self.segment.close()
            return
        try:
            if self.producer:
                # Unlink first, then CLOSED. After an explicit end_stream() a
                # successor may have replaced us: the name is removed only while it
                # still names our own file (_shm.unlink_if_still; a successor
                # removing us holds the same flock).
                if self.segment.fd >= 0:
                    try:
                        _shm.unlink_if_still(self.segment.name, self.segment.fd, True,
                                             lambda fd: True)
                    except OSError:
                        pass  # nothing to do about it while closing
                if not ring.producer_closed:
                    ring.set_closed()
            else:
                ring.set_consumer_attached(False, 0)
        finally:
            try:
                if self.owner is not None:
                    # After CLOSED, before the unmap: the word to 0 and off the kernel's
                    # list, so a later death marks nothing and the kernel holds no
                    # pointer into a mapping that is gone. Interrupted in its join
                    # (Ctrl-C), the thread still does so by itself, and keeps the
                    # mapping (its export) until it has.
                    self.owner.disarm()
            finally:
                ring.detach()
                self.segment.close()  # closes the fd: releases this side's lock last


class _Call:
    """``with endpoint._call() as ring:`` runs its body as a registered call of the
    endpoint (``_enter``/``_leave``) and turns the interruption a concurrent
    ``close()`` causes into StreamClosedError; other interruptions pass. A plain
    class, not @contextmanager: no generator per message on the hot paths."""

    __slots__ = ("_endpoint",)

    def __init__(self, endpoint: "_Endpoint") -> None:
        self._endpoint = endpoint

    def __enter__(self) -> ByteRingBuffer:
        return self._endpoint._enter()  # raises StreamClosedError after close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        endpoint = self._endpoint
        try:
            if exc_type is not None and issubclass(exc_type, RingInterruptedError) \
                    and endpoint._closing:
                raise endpoint._closed_while_waiting() from None
        finally:
            endpoint._leave()


class _Endpoint:
    """What both ends of a ring say about themselves (either side; never blocks), and
    the thread-safe close both share.

    Blocking calls register their thread while they run (``_enter``/``_leave``).
    ``close()`` from another thread then interrupts them and waits until they are out
    (each raises StreamClosedError) before it unmaps; ``close()`` from a signal handler
    running inside such a call only interrupts, and the call closes on its way out.
    Nothing ever touches the mapping after it is gone.
    """

    _ROLE = ""
    _name: str
    _ring: Optional[ByteRingBuffer]
    _finalizer: Any
    _closing = False
    _close_deferred = False  # close() was called inside a running call (signal handler)
    _active: "dict[int, int] | None" = None  # thread id -> nesting depth of its calls

    def _enter(self) -> ByteRingBuffer:
        """Registers the calling thread as inside a call; returns the ring."""
        ring = self._ring
        if ring is None or self._closing:
            raise StreamClosedError(f"{self._ROLE} of ring {self._name!r} is closed")
        if self._active is None:
            self._active = {}
        me = threading.get_ident()
        self._active[me] = self._active.get(me, 0) + 1
        return ring

    def _leave(self) -> None:
        active = self._active
        if active is not None:
            me = threading.get_ident()
            depth = active.get(me, 0) - 1
            if depth > 0:
                active[me] = depth
            else:
                active.pop(me, None)
            if self._close_deferred and not active:
                self._finish_close()

    def _call(self) -> _Call:
        """A registered call of this endpoint, as a context manager (see _Call)."""
        return _Call(self)

    def _closed_while_waiting(self) -> StreamClosedError:
        return StreamClosedError(f"{self._ROLE} of ring {self._name!r} was closed while "
                                 "this call waited")

    def _close_now_or_later(self) -> None:
        """close(): finalizes at once when no call is running; otherwise interrupts the
        running calls and lets the last one finalize (waiting for that unless the
        caller is one of them, e.g. a signal handler)."""
        if self._ring is None or self._closing:
            return
        active = dict(self._active or {})
        mine = threading.get_ident() in active
        others = set(active) - {threading.get_ident()}
        if not others and not mine:
            self._finish_close()
            return
        self._closing = True
        ring = self._ring
        if mine:
            self._close_deferred = True  # the running call closes on its way out
        ring.interrupt()  # returns once the other threads' calls are awake
        if mine:
            return
        deadline = time.monotonic() + 10.0  # they wake at once; a guard, not a timing
        while self._active and self._ring is not None and time.monotonic() < deadline:
            time.sleep(0.0005)
        self._finish_close()

    def _finish_close(self) -> None:
        if self._ring is None:
            return
        interrupter = getattr(self, "_interrupter", None)
        if interrupter is not None:
            interrupter.detach(self._ring)
        self._ring = None
        self._on_close()
        self._finalizer()

    def _on_close(self) -> None:
        """Subclass hook run just before the finalizer."""

    @property
    def ring(self) -> ByteRingBuffer:
        """The underlying ByteRingBuffer (this end's side)."""
        if self._ring is None:
            raise StreamClosedError(f"{self._ROLE} of ring {self._name!r} is closed")
        return self._ring

    @property
    def name(self) -> str:
        """The ring's name as given (e.g. ``"cam0"``)."""
        return self._name

    @property
    def capacity(self) -> int:
        """Data-area bytes (a producer's requested capacity rounded up to a power of two)."""
        return self.ring.capacity

    @property
    def profile(self) -> int:
        """0 = opaque messages, 1 = GStreamer framing (read it with FrameReader)."""
        return self.ring.profile

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called on this object."""
        return self._ring is None

    @property
    def dropped(self) -> int:
        """Messages the producer counted as dropped (the header's ``dropped``)."""
        return self.ring.dropped

    def interrupt(self) -> None:
        """Makes a blocking call of this object in another thread (or a signal
        handler's own thread) raise RingInterruptedError; sticky until
        :meth:`clear_interrupt`. Wakes the sleeper at once and returns as soon as it
        is awake. Any thread; blocks at most for that wake-up."""
        self.ring.interrupt()

    def clear_interrupt(self) -> None:
        """Re-arms blocking calls after :meth:`interrupt`. Any thread; never blocks."""
        self.ring.clear_interrupt()


class ShmProducer(_Endpoint):
    """The writing end of ring ``name``: creates it and owns the name.

    ``ShmProducer(name, capacity)`` creates a ring whose data area is ``capacity``
    bytes rounded UP to a power of two (>= 64, <= 2**31), permissions ``mode``
    (0600). A name held by a live producer that has not closed is refused
    (RingBusyError); a stale one (producer dead or CLOSED) is replaced. A segment
    of another user is never replaced (RingPermissionError / ForeignOwnerError, the
    latter unless ``allow_foreign_owner=True``); something that is not a ring (a
    FIFO, a directory, a symlink, a foreign magic) is refused with
    IncompatibleSegmentError. ``profile`` 1 marks GStreamer framing. ``live=True``
    marks the stream live (producer_flags bit LIVE; also the :attr:`live` property):
    a consumer that attaches starts at what is published after its attach.
    ``start_index`` is a test hook (initial head/tail). ``max_receivers`` (1..16,
    default 1, the single-consumer ring) lets that many receivers read the ring at
    the same time, each in a slot of its own, every message written once.

    :meth:`end_stream` ends the stream and keeps the name (C++ ``Close()``);
    :meth:`close` (or leaving the ``with`` block, or interpreter exit) ends the
    stream if not yet, removes the name and unmaps. Construct from one thread;
    blocks only in OS calls (and up to about 1 s while another creator finishes).
    """

    _ROLE = "producer"

    def __init__(self, name: str, capacity: int = 1 << 20, *, profile: int = PROFILE_OPAQUE,
                 mode: int = 0o600, start_index: int = 0,
                 allow_foreign_owner: bool = False, live: bool = False,
                 max_receivers: int = 1) -> None:
        _shm.validate_name(name)
        if not 1 <= max_receivers <= MAX_RECEIVERS_LIMIT:
            raise ValueError(f"max_receivers {max_receivers} is not between 1 and "
                             f"{MAX_RECEIVERS_LIMIT}")
        if capacity < 0:
            raise ValueError(f"capacity must be positive, not {capacity}")
        rounded = round_up_capacity(capacity)
        if rounded == 0:
            raise ValueError(f"capacity {capacity} exceeds the maximum 2^31")
        self._name = name
        self._ring = None
        segment = self._create_segment(name, HEADER_SIZE + rounded, mode, allow_foreign_owner)
        ring: Optional[ByteRingBuffer] = None
        closer: Optional[_Closer] = None
        try:
            assert segment.mm is not None
            # producer_pid is stored before the magic (see _create_segment).
            ByteRingBuffer.initialize(segment.mm, rounded, profile, _new_generation(),
                                      start_index, os.getpid(), max_receivers)
            ring = ByteRingBuffer(segment.mm, True)
            if live:
                ring.set_live(True)
            # Our death (any way, kill -9 included) wakes sleeping receivers at once:
            # the owner word (_owner; C++ owner::Arm at the same point). Disarmed by
            # the closer. Interrupted (Ctrl-C) while it arms, it stops its thread.
            owner = OwnerArm(segment.mm, PRODUCER_OWNER_OFFSET)
            closer = _Closer(ring, segment, True, owner)
            self._finalizer = weakref.finalize(self, closer)
        except BaseException:
            # Nothing may stay behind (a KeyboardInterrupt included): the name
            # unlinked, CLOSED, the owner word's thread stopped, unmapped, the lock's
            # descriptor closed.
            if closer is not None:
                closer()  # idempotent: a finalizer made already finds nothing to do
            else:
                try:
                    _shm.unlink(name, missing_ok=True)
                    if ring is not None:
                        ring.set_closed()
                finally:
                    if ring is not None:
                        ring.detach()
                    segment.close()
            raise
        self._segment = segment
        _OPEN_SEGMENTS.add(segment)
        self._ring = ring
        self._owner = owner
        self._closer = closer
        self._ended = False
        self._last_reap = -1e9

    @staticmethod
    def _create_segment(name: str, size: int, mode: int, allow_foreign_owner: bool
                        ) -> _shm.Segment:
        """Creates the segment and takes the producer lock (byte 0) before any header
        word is written, replacing a stale one: producer gone (its lock free) or
        CLOSED, or a creation abandoned long ago."""
        for attempt in range(CREATE_ATTEMPTS):
            try:
                segment = _shm.create(name, size, mode)
            except FileExistsError:
                pass
            else:
                if _locks.HAVE_OFD_LOCKS and not _locks.try_lock(segment.fd,
                                                                 _locks.PRODUCER_BYTE):
                    segment.close()  # someone locked the file we just made: leave it
                    raise RingBusyError(f"ring {name!r} was taken over while being created")
                return segment
            found = _shm.peek(name, HEADER_SIZE)  # FIFO, symlink, EACCES: raised here
            if found is None:
                continue  # gone meanwhile: try creating again
            _check_owner(name, found.uid, found.mode, allow_foreign_owner)
            if found.size % RECORD_ALIGN:  # not ours, whatever it holds: never removed
                raise IncompatibleSegmentError(
                    f"segment {name!r} exists: segment size {found.size} is not a multiple of "
                    f"{RECORD_ALIGN}: not a shmring segment; remove it first", "size")
            header = found.data
            # The magic and version are readable in a segment of any version's size;
            # the rest of this version's header only in a whole one.
            magic = (struct.unpack_from("<I", header, MAGIC_OFFSET)[0]
                     if len(header) >= IDENT_SIZE else 0)
            version = (struct.unpack_from("<H", header, VERSION_OFFSET)[0]
                       if len(header) >= IDENT_SIZE else 0)
            if magic == 0 and not may_be_ring_in_creation(found.size):
                raise IncompatibleSegmentError(
                    f"segment {name!r} exists and is not a shmring ring ({found.size} bytes, "
                    f"no magic); remove it first", "size")
            if magic == 0:
                # No magic yet: another creator may be between shm_open and its magic
                # store (it holds byte 0 from the start). Without a lock, only debris
                # older than ABANDONED_AFTER_S is stale.
                age = _shm.age_seconds(name)
                if found.producer_locked or 0 <= age < ABANDONED_AFTER_S:
                    if attempt + 1 < CREATE_ATTEMPTS:
                        time.sleep(CREATE_RETRY_S)
                        continue
                    raise RingBusyError(
                        f"ring {name!r} is being created by another process (magic still "
                        f"0, last changed {age:.1f} s ago); retry later")
            elif magic == MAGIC and (version != VERSION or len(header) != HEADER_SIZE):
                # A ring of another layout version: only its producer byte says whether
                # it is in use (its flags are elsewhere); a free byte is a stale ring.
                if found.producer_locked is not False:
                    raise RingBusyError(
                        f"ring {name!r} is a version {version} ring in use by a live "
                        f"producer (this build writes version {VERSION})")
            elif magic == MAGIC:
                _, _, flags, pid = _header_fields(header)
                if not flags & PRODUCER_CLOSED:
                    alive = found.producer_locked
                    if alive is None:  # no OFD locks here: the pid (0 = unknown = alive)
                        alive = process_alive(pid)
                    if alive:
                        raise RingBusyError(
                            f"ring {name!r} is in use by a live producer (pid {pid} as "
                            "it recorded it)")
            else:
                raise IncompatibleSegmentError(
                    f"segment {name!r} exists and is not a shmring ring (magic "
                    f"0x{magic:08X}); remove it first", "magic")
            # Removed only while the name still names the ring judged stale: a ring
            # another producer put there meanwhile (after removing this one) stays.
            def still(fd: int, seen: bytes = header) -> bool:
                return _still_the_stale_ring(fd, seen)
            if _shm.unlink_if_still(name, None, False, still) == _shm.BUSY:
                time.sleep(CREATE_RETRY_S)
        raise RingBusyError(f"could not create ring {name!r}: the name kept reappearing")

    # ---- identity ---------------------------------------------------------------

    @property
    def max_message_size(self) -> int:
        """Largest message that can ever fit: capacity - 4."""
        return self.ring.max_message_size

    @property
    def generation(self) -> int:
        """This ring's random 64-bit generation."""
        return self.ring.generation

    @property
    def live(self) -> bool:
        """Whether the stream is marked live (producer_flags bit LIVE): a consumer that
        attaches starts at what is published after its attach, never at the backlog.
        Settable from the producer thread; never blocks."""
        return self.ring.producer_live

    @live.setter
    def live(self, value: bool) -> None:
        self.ring.set_live(bool(value))

    @property
    def stream_ended(self) -> bool:
        """Whether the stream was ended (:meth:`end_stream` or :meth:`close`)."""
        return self._ended or self._ring is None

    # ---- writing ------------------------------------------------------------------

    def _writable_ring(self) -> ByteRingBuffer:
        ring = self._ring
        if ring is None or self._closing:
            raise StreamClosedError(f"write to closed producer of ring {self._name!r}")
        if self._ended:
            raise StreamClosedError(f"write after end_stream() on ring {self._name!r}")
        return ring

    def write(self, data: Any, timeout: Optional[float] = 0.0, *, sync: bool = True) -> bool:
        """Writes one message (any bytes-like object); False when it does not fit in time.

        ``sync``: whether the message is a sync point (a record a receiver can start
        decoding at, e.g. a key frame; say False for a delta frame): a live receiver
        that fell behind resumes at the newest sync point still in the ring.

        ``timeout`` 0 (the default) never blocks: False means full right now. A
        positive timeout waits up to that many seconds for space, None waits as
        long as it takes; either returns False at once when a consumer had attached
        to the ring and none is attached any more (it detached, or died: noticed
        within a liveness slice), since nobody is left to make room. Before any
        consumer ever attached the wait goes on. Raises MessageTooLargeError for a
        message that can never fit, StreamClosedError after end_stream()/close(),
        CorruptRecordError when the consumer's tail is corrupt. Producer thread;
        blocks when timeout != 0.
        """
        ring = self._writable_ring()
        with self._call():
            if ring.write(data, sync):
                return True
            if self._maybe_reap(ring) and ring.write(data, sync):
                return True
            if timeout == 0:
                return False
            n = len(data) if type(data) is bytes else memoryview(data).nbytes
            deadline = _deadline(timeout)
            watch = _ConsumerWatch(self)
            if watch.gone():
                return False  # a consumer came and left: nobody will make room
            while True:
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    return False
                if not ring.wait_writable(n, _slice(remaining)) and watch.gone():
                    return False  # the consumer left: nobody will make room
                if ring.write(data, sync):
                    return True

    @contextmanager
    def reserve(self, n: int, timeout: Optional[float] = None, *,
                sync: bool = True) -> Iterator[memoryview]:
        """Zero-copy write: yields a writable ``n``-byte view into the ring (``sync``:
        a sync point, see :meth:`write`).

        Fill it inside the ``with`` block; leaving the block normally publishes the
        message, an exception abandons it. Waits up to ``timeout`` seconds for space
        (None = no limit, 0 = not at all) and raises RingTimeoutError when there is
        none, or when a consumer had attached and none is left to make room (as
        :meth:`write`). The view (and arrays made from it) must not be referenced after the
        block: ViewInUseError otherwise. Producer thread; blocks.
        """
        ring = self._writable_ring()
        view = ring.reserve(n)
        if view is None:
            deadline = _deadline(timeout)
            with self._call():
                watch = _ConsumerWatch(self)
                while view is None:
                    remaining = _remaining(deadline)
                    if timeout != 0 and watch.gone():
                        raise RingTimeoutError(
                            f"no room for a {n}-byte message in ring {self._name!r}: "
                            "its consumer left, nobody will make room")
                    if self._maybe_reap(ring):
                        view = ring.reserve(n)
                        if view is not None:
                            break
                    if timeout == 0 or (remaining is not None and remaining <= 0):
                        raise RingTimeoutError(
                            f"no room for a {n}-byte message in ring {self._name!r} "
                            f"within {timeout} s")
                    if ring.wait_writable(n, _slice(remaining)):
                        view = ring.reserve(n)
        try:
            yield view
        except BaseException:
            try:
                ring.cancel()
            except ViewInUseError:
                pass
            raise
        ring.commit(None, sync)

    def _wait_writable(self, ring: ByteRingBuffer, n: int, deadline: Optional[float]) -> bool:
        """wait_writable in liveness slices on a ring with several receivers, looking
        for dead ones between them: a killed receiver holds us back at most a slice."""
        if ring.max_receivers == 1:
            return ring.wait_writable(n, _remaining(deadline))
        while True:
            left = _remaining(deadline)
            if ring.wait_writable(n, LIVENESS_SLICE_S if left is None
                                  else min(left, LIVENESS_SLICE_S)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.reap_dead_receivers()

    def _maybe_reap(self, ring: ByteRingBuffer) -> bool:
        """Full: once per liveness slice, reap receivers that died attached."""
        if ring.max_receivers == 1 or time.monotonic() - self._last_reap < LIVENESS_SLICE_S:
            return False
        return self.reap_dead_receivers() > 0

    def reap_dead_receivers(self) -> int:
        """Looks at every slot whose ATTACHED flag is set and whose role byte is free (a
        receiver killed without detaching): it stops holding the producer back. Returns
        how many it found; writes do this on their own every liveness slice while they
        wait or find the ring full. Producer thread; never blocks."""
        ring = self.ring
        self._last_reap = time.monotonic()
        found = 0
        for k in range(ring.max_receivers):
            flags = ring.slot_words(k)[0]  # before the probe: see mark_slot_dead
            if flags & CONSUMER_ATTACHED and not self.receiver_attached(k):
                ring.mark_slot_dead(k, flags)
                found += 1
        return found

    def receiver_attached(self, slot: int) -> bool:
        """Whether receiver ``slot`` is held now: its role byte 1 + slot is held
        (without OFD locks: ATTACHED and a live pid). A receiver holds the byte from its
        claim, before it stores its start and sets ATTACHED: true here does not mean it
        finished attaching (:class:`~shmring.header.ReceiverSnapshot` calls the two
        ``claimed`` and ``attached``). Any thread; never blocks."""
        ring = self.ring
        if not 0 <= slot < ring.max_receivers:
            return False
        if _locks.HAVE_OFD_LOCKS:
            return _locks.is_locked(self._segment.fd, _locks.CONSUMER_BYTE + slot)
        flags, pid = ring.slot_words(slot)[:2]
        return bool(flags & CONSUMER_ATTACHED) and process_alive(pid)

    @property
    def max_receivers(self) -> int:
        """Receiver slots of the ring (1..16)."""
        return self.ring.max_receivers

    def set_stream_info(self, info: bytes, index: int) -> None:
        """Publishes stream information for receivers that attach later (profile 1: the
        current caps, written by the record at ring index ``index``). Producer thread;
        never blocks."""
        self.ring.set_stream_info(info, index)

    def writeable_bytes(self) -> int:
        """Free bytes in the ring right now. Producer; never blocks."""
        return self.ring.writeable_bytes()

    def readable_bytes(self) -> int:
        """Bytes written and not yet consumed. Producer; never blocks."""
        return self.ring.readable_bytes()

    def count_dropped(self, n: int = 1) -> None:
        """Counts ``n`` messages dropped on purpose (the header's ``dropped``). Producer
        thread; never blocks."""
        self.ring.add_dropped(n)

    def consumer_attached(self) -> bool:
        """Whether a live consumer is attached now (its lock on byte 1 is held; where
        there are no OFD locks: ATTACHED and a live consumer_pid). Any thread; never
        blocks (one fcntl call)."""
        return any(self.receiver_attached(k) for k in range(self.ring.max_receivers))

    def end_stream(self) -> None:
        """Ends the stream: sets CLOSED after the last message and wakes the consumer,
        which reads what is left and then sees the end. Keeps the mapping and the
        name (as C++ ``ShmProducer::Close()``); writing afterwards raises
        StreamClosedError; :meth:`close` still removes the name. Idempotent.
        Producer thread; never blocks."""
        ring = self.ring
        self._ended = True
        if not ring.producer_closed:
            ring.set_closed()

    def release_name(self) -> None:
        """Hands the ring's name on to a successor (a larger ring for the same stream):
        removes the name while it still names this ring and keeps everything else (the
        producer lock, the consumers, what they have yet to read), as C++
        ``ShmProducer::ReleaseName``. Create the successor under the name, then
        :meth:`end_stream` while this object (and its lock) lives on: a consumer that
        drains this ring then tells the handover from an early stop
        (:meth:`ShmConsumer.handed_over`). Raises RingOSError (naming the OS call and
        errno) or ShmRingError when the name no longer names this ring. Producer
        thread; blocks only while another process removes a ring's name."""
        _ = self.ring  # raises StreamClosedError after close()
        if _shm.unlink_if_still(self._name, self._segment.fd, True,
                                lambda fd: True) != _shm.UNLINKED:
            raise ShmRingError(f"ring {self._name!r}: the name no longer names this ring")

    def close(self) -> None:
        """Ends the stream if not yet, removes the name (if it still holds this ring),
        unmaps and releases the producer lock: the C++ destructor. What is unread
        stays readable by an attached consumer. Idempotent. Any thread: a write
        blocked in another thread is woken and raises StreamClosedError first (close
        waits for that, briefly)."""
        self._close_now_or_later()

    def _on_close(self) -> None:
        self._ended = True

    def __enter__(self) -> "ShmProducer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ring is None else f"capacity={self._ring.capacity}"
        return f"<ShmProducer {self._name!r} {state}>"


def _drained_and_closed(segment: _shm.Segment) -> bool:
    """Whether the ring in `segment` is CLOSED with tail == head: a finished stream
    already read to its end."""
    assert segment.mm is not None
    words = memoryview(segment.mm).cast("B")[:HEADER_SIZE].cast("I")  # aligned loads
    try:
        flags = int(words[PRODUCER_FLAGS_WORD])
        acquire_fence()  # CLOSED is stored after the last publish: head is final
        return bool(flags & PRODUCER_CLOSED) and int(words[HEAD_WORD]) == int(words[TAIL_WORD])
    finally:
        words.release()


def _same_process_ring_under_name(name: str, ours: int, pid: int) -> Optional[int]:
    """The generation of the ring under ``name`` if it is not ours (generation
    ``ours``) and the same process made it (its producer pid is ``pid``): a ring this
    process handed its stream over to, or made after a real end. None otherwise (no
    ring, another process's, ours). As C++ SameProcessRingUnderName. Any thread;
    never blocks (one read of the name's header)."""
    length = PRODUCER_PID_OFFSET + 4
    try:
        header = _shm.peek_header(name, length)
    except (OSError, IncompatibleSegmentError):
        return None
    if header is None or len(header) < length:
        return None
    magic, = struct.unpack_from("<I", header, MAGIC_OFFSET)
    generation, = struct.unpack_from("<Q", header, GENERATION_OFFSET)
    creator, = struct.unpack_from("<I", header, PRODUCER_PID_OFFSET)
    if magic != MAGIC or generation == ours or creator != pid:
        return None
    return int(generation)


class ShmConsumer(_Endpoint):
    """The reading end of ring ``name``. Never unlinks it.

    ``timeout`` says how long to wait for a producer to create the ring: 0 (the
    default) attaches now or raises RingNotFoundError, None waits without limit, a
    number waits that many seconds. Only a missing name or a ring still being
    created is waited for; anything else is refused at once: a segment that is not
    a ring (IncompatibleSegmentError naming the field, ``"type"`` for a FIFO,
    directory or symlink, ``"size"`` for a size that is not a multiple of 8),
    permission denied (RingPermissionError naming the owner), a ring of another user
    (ForeignOwnerError unless ``allow_foreign_owner=True``), a ring that already has
    a live consumer (RingBusyError). Construct from one thread; blocks while waiting
    for the ring.

    ``interrupter`` (a :class:`shmring.Interrupter`, the C++
    ``ConsumerOptions::interrupter``): its ``interrupt()`` from another thread ends the
    wait for the ring with RingInterruptedError, and once attached interrupts every
    blocking call of this consumer as :meth:`interrupt` does; sticky until its
    ``clear()``.

    ``start_at`` (C++ ``ConsumerOptions::start_at``): ``"oldest"`` (the default) reads
    from the oldest record in the ring, losing nothing; ``"newest"`` frees the backlog
    unread and reads what is published after the attach; ``"newest_if_live"`` does
    that only when the producer marks its stream live (producer_flags LIVE), the
    rule for every receiver of a live stream. :attr:`live` and :attr:`attach_head`
    let a framing-aware reader skip the backlog's data itself while still reading
    its caps records.

    ``wait_for_open_producer=True`` (C++ ``wait_for_open_producer``): a ring that is
    CLOSED and already read to its end is a finished stream, not a new one: wait
    for the producer's next ring (RingNotFoundError when ``timeout`` runs out).

    ``mode`` (C++ ``ConsumerOptions::mode``): ``"lossless"`` (the default: the producer
    waits for this receiver), ``"auto"`` (live on a live ring with several receiver
    slots, else lossless) or ``"live"`` (never holds the producer back: when it
    falls behind, the producer reuses what it has not read and it resumes at the
    newest sync point still in the ring, else at the head; :attr:`skipped` counts the
    messages it lost). Records it holds (views) are never
    reused. On a ring with several receiver slots (the producer's
    ``max_receivers``) the consumer claims the lowest free slot (:attr:`slot`).
    """

    _ROLE = "consumer"
    _START_AT = ("oldest", "newest", "newest_if_live")
    _MODES = {"lossless": MODE_LOSSLESS, "live": MODE_LIVE, "auto": -1}

    def __init__(self, name: str, timeout: Optional[float] = 0.0, *,
                 allow_foreign_owner: bool = False,
                 interrupter: Optional[Interrupter] = None, start_at: str = "oldest",
                 wait_for_open_producer: bool = False, mode: str = "lossless") -> None:
        _shm.validate_name(name)
        if start_at not in self._START_AT:
            raise ValueError(f"start_at must be one of {self._START_AT}, not {start_at!r}")
        if mode not in self._MODES:
            raise ValueError(f"mode must be one of {tuple(self._MODES)}, not {mode!r}")
        self._name = name
        self._ring = None
        self._interrupter = interrupter
        segment = self._open_segment(name, timeout, allow_foreign_owner, interrupter,
                                     wait_for_open_producer)
        try:
            assert segment.mm is not None
            # Claim the role before writing any consumer word: a refused consumer
            # must not touch the live one's flags.
            slot = self._claim(name, segment)
            ring_mode = self._MODES[mode]
            if ring_mode < 0:  # auto: live on a live ring with several slots
                ring = ByteRingBuffer(segment.mm, False, slot=slot)
                ring_mode = MODE_LIVE if ring.producer_flags & PRODUCER_LIVE and \
                    ring.max_receivers > 1 else MODE_LOSSLESS
            ring = ByteRingBuffer(segment.mm, False, slot=slot, mode=ring_mode)
            self._live = bool(ring.producer_flags & PRODUCER_LIVE)
            # The backlog is freed unread when starting at the newest.
            ring.attach_slot(start_at == "newest" or
                             (start_at == "newest_if_live" and self._live), os.getpid())
            self._attach_head = ring.head
            # A producer that set CLOSED and then found this slot free had it before
            # our claim, so this plain load sees CLOSED: what orders it after the
            # producer's store is the claim's fcntl on our slot byte (the kernel
            # orders it with the producer's probe of that byte, under the lock of
            # the file's locks) and attach_slot's full fence since. Either the
            # producer counted us (and keeps its lock for us) or the ring was over
            # before we came. Then a hand-over's successor is already under the name
            # (it is created before the old ring is CLOSED), while a ring made after
            # a real end comes only after CLOSED and the unlink: the name's ring of
            # this process, seen now, is the only one handed_over() may follow
            # without the old producer's lock. As C++ TryOpen.
            self._successor_at_claim: Optional[int] = None
            if ring.producer_closed:
                self._successor_at_claim = _same_process_ring_under_name(
                    name, ring.generation, ring.producer_pid)
        except BaseException:
            segment.close()
            raise
        self._segment = segment
        _OPEN_SEGMENTS.add(segment)
        self._ring = ring
        self._generation = ring.generation
        self._closer = _Closer(ring, segment, False)
        self._finalizer = weakref.finalize(self, self._closer)
        self._last_check = -1e9
        self._slice = LIVENESS_SLICE_S  # from the last liveness look to the next
        self._owner_look = OWNER_DIED_LOOK_S  # the next short slice after OWNER_DIED
        if interrupter is not None:
            interrupter.attach(ring)  # its interrupt() reaches our waits from now on

    @staticmethod
    def _clear_stale_attached(mm: Any, words: memoryview, k: int) -> None:
        """Just claimed slot k: an ATTACHED flag left there is a dead receiver's; cleared
        before any other word of the slot, so that "claimed, ATTACHED clear" means
        attaching (PROTOCOL.md section 7, "Claiming a slot"); the attach count stays.
        Caller: the claiming thread; never blocks."""
        address, anchor = buffer_address(mm)
        try:
            index = slot_word(k, SLOT_FLAGS)
            fetch_and(words, index, address + index * 4, ~CONSUMER_ATTACHED & 0xFFFFFFFF)
        finally:
            del anchor

    @staticmethod
    def _claim(name: str, segment: _shm.Segment) -> int:
        """Claims the lowest free receiver slot k: an OFD lock on byte 1 + k of our own
        descriptor, held until close, so two receivers racing to attach cannot take
        one slot, even in one process. Without OFD locks: ATTACHED and a live pid
        refuse a slot. Returns k; raises RingBusyError when every slot is taken."""
        mm = segment.mm
        assert mm is not None
        words = memoryview(mm).cast("B")[:HEADER_SIZE].cast("I")  # single aligned loads
        try:
            n = int(words[MAX_RECEIVERS_WORD])  # validated by the open
            for k in range(n):
                if _locks.HAVE_OFD_LOCKS:
                    if _locks.try_lock(segment.fd, _locks.CONSUMER_BYTE + k):
                        ShmConsumer._clear_stale_attached(mm, words, k)
                        return k
                    continue
                cflags = int(words[slot_word(k, SLOT_FLAGS)])
                cpid = int(words[slot_word(k, SLOT_PID)])
                if not (cflags & CONSUMER_ATTACHED and cpid != 0 and process_alive(cpid)):
                    ShmConsumer._clear_stale_attached(mm, words, k)
                    return k
            pids = [int(words[slot_word(k, SLOT_PID)]) for k in range(n)]
        finally:
            words.release()
        if n == 1:
            raise RingBusyError(f"ring {name!r} already has a consumer (pid {pids[0]}); "
                                "a ring has one consumer")
        raise RingBusyError(f"ring {name!r} already has {n} receivers (pids "
                            f"{', '.join(map(str, pids))}), its producer's max_receivers")

    @staticmethod
    def _open_segment(name: str, timeout: Optional[float], allow_foreign_owner: bool,
                      interrupter: Optional[Interrupter] = None,
                      wait_for_open_producer: bool = False) -> _shm.Segment:
        deadline = _deadline(timeout)
        pause = OPEN_POLL_MIN_S
        ended = ""
        while True:
            if interrupter is not None and interrupter.interrupted:
                raise RingInterruptedError(f"waiting for ring {name!r} was interrupted")
            not_ready: Optional[Tuple[str, str]] = None
            try:
                segment: Optional[_shm.Segment] = _shm.open_existing(name)
            except RingNotFoundError:
                segment = None
            except _shm.NotReady as e:
                segment, not_ready = None, ("size", str(e))
            if segment is not None:
                assert segment.mm is not None
                try:
                    _check_owner(name, segment.uid, segment.mode, allow_foreign_owner)
                    if segment.size % RECORD_ALIGN:
                        raise IncompatibleSegmentError(
                            f"ring {name!r} is not usable: segment size {segment.size} is "
                            f"not a multiple of {RECORD_ALIGN}: not a shmring segment", "size")
                    bad = validate_header(segment.mm)
                except BaseException:
                    segment.close()
                    raise
                if bad is None and not (wait_for_open_producer and _drained_and_closed(segment)):
                    return segment
                segment.close()
                if bad is None:
                    ended = (f" (ring {name!r} holds a stream that ended and was read to "
                             "its end; waiting for the producer's next ring)")
                elif bad[0] == "magic" and bad[1].startswith("magic is 0:") and \
                        may_be_ring_in_creation(segment.size):
                    not_ready = bad  # a creator between ftruncate and its magic store
                else:
                    raise IncompatibleSegmentError(f"ring {name!r} is not usable: {bad[1]}",
                                                   bad[0])
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if not_ready is not None:
                    raise IncompatibleSegmentError(
                        f"ring {name!r} is not usable: {not_ready[1]}", not_ready[0])
                if timeout == 0:
                    raise RingNotFoundError(errno.ENOENT, f"no ring {name!r}{ended}")
                raise RingNotFoundError(
                    errno.ENOENT, f"no ring {name!r} appeared within {timeout} s{ended}")
            step = pause if deadline is None else max(0.0, min(pause, deadline - now))
            if interrupter is not None:
                interrupter.nap(step)  # returns at once on interrupt(); checked above
            else:
                time.sleep(step)
            pause = min(pause * 2, OPEN_POLL_MAX_S)

    # ---- identity ---------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the producer marked its stream live (producer_flags LIVE) at attach."""
        return self._live

    @property
    def slot(self) -> int:
        """The receiver slot this consumer claimed (the lowest free one)."""
        return self.ring.slot

    @property
    def mode(self) -> str:
        """``"lossless"`` or ``"live"``."""
        return "live" if self.ring.mode == MODE_LIVE else "lossless"

    @property
    def skipped(self) -> int:
        """Live mode: how many messages this receiver skipped because the producer
        reused them before it read them (it changes exactly when messages were lost:
        the next one read is a discontinuity)."""
        return self.ring.skipped

    def stream_info(self) -> Optional[Tuple[bytes, int]]:
        """The producer's stream information (``set_stream_info``) and the ring index of
        the record it came with; None when there is none. Never blocks."""
        return self.ring.read_stream_info()

    @property
    def attach_head(self) -> int:
        """The head index at attach: records ending at or before it were published
        before this consumer attached (the backlog)."""
        return self._attach_head

    @property
    def generation(self) -> int:
        """The attached ring's generation (the one it had when we attached)."""
        return self._generation

    @property
    def at_end(self) -> bool:
        """True once the producer closed the stream and every message was read."""
        return self.ring.at_end

    # ---- reading ------------------------------------------------------------------

    def has_data(self) -> bool:
        """Whether a message is waiting. Consumer thread; never blocks."""
        return self.ring.has_data()

    def readable_bytes(self) -> int:
        """Bytes written and not yet read (records and padding). Consumer thread; never
        blocks."""
        return self.ring.readable_bytes()

    def writeable_bytes(self) -> int:
        """Free bytes in the ring as the consumer sees it. Consumer thread; never blocks."""
        return self.ring.writeable_bytes()

    def read(self, timeout: Optional[float] = 0.0) -> Optional[bytes]:
        """The next message as bytes, or None when there is none.

        ``timeout`` 0 (the default) never blocks; a number waits up to that many
        seconds; None waits until a message or the end of the stream. None is
        returned for empty / timed out / end of stream (then ``at_end`` is True).
        Raises ProducerDeadError or ProducerReplacedError once every message the
        producer finished writing has been read, CorruptRecordError on an invalid
        record, RingInterruptedError after :meth:`interrupt`. Consumer thread;
        blocks when timeout != 0 (GIL released while asleep).
        """
        with self._call() as ring:  # raises StreamClosedError after close()
            if timeout == 0:  # never blocks: look, and at the producer once per slice
                data = ring.read()
                if data is not None:
                    return data
                while self._wait(ring, timeout):
                    data = ring.read()
                    if data is not None:
                        return data
                    if ring.at_end:
                        return None
                return None
            # Blocking: one lookup per wake-up (ByteRingBuffer.read_wait), a look at the
            # producer once per liveness slice with nothing to read.
            deadline = _deadline(timeout)
            try:
                while True:
                    got = ring.read_wait(deadline, self._check_at())
                    if got.__class__ is bytes:
                        return got  # type: ignore[no-any-return]
                    if got != WAIT_CHECK:
                        return None  # timed out, or the end of the stream (at_end)
                    self._check_producer(ring, force=True)
            finally:
                ring.end_sleep()

    def wait_readable(self, timeout: Optional[float]) -> bool:
        """Sleeps until a message is waiting or the stream ended (True) or ``timeout``
        seconds passed (False; None = no limit), watching the producer meanwhile.

        Raises ProducerDeadError / ProducerReplacedError when the producer is gone
        and nothing is left to read (looked at once per liveness slice: ``LIVENESS_SLICE_S``,
        ``ARMED_LIVENESS_SLICE_S`` while the producer's owner word is armed, 1 ms doubling
        after it was marked OWNER_DIED), RingInterruptedError after :meth:`interrupt`.
        Consumer thread; blocks (GIL released while asleep).
        """
        with self._call() as ring:
            return self._wait(ring, timeout) or ring.at_end

    def _wait(self, ring: ByteRingBuffer, timeout: Optional[float]) -> bool:
        # WAITING, once set by the first sleep, stays set (and fenced) across the
        # liveness slices' re-sleeps, and is cleared on the way out.
        deadline = _deadline(timeout)
        try:
            while True:
                if ring.has_data():
                    return True
                if ring.at_end:
                    return False
                self._check_producer(ring, force=False)  # one fcntl per slice at most
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    return False
                nap = self._until_look()
                if remaining is not None and remaining < nap:
                    nap = remaining
                if ring.wait_readable(nap, keep_waiting=True) and ring.has_data():
                    return True
        finally:
            ring.end_sleep()

    def _check_at(self) -> float:
        """When the next liveness look is due (a time.monotonic() value): the last look
        plus the slice chosen then, cut to LIVENESS_SLICE_S once sleeps cannot include
        the owner word (futex_waitv found missing after the slice was chosen). Once per
        blocking frame: one call (the flag is read, not asked for: no second call
        when the producer armed its owner word)."""
        slice_s = self._slice
        if slice_s > LIVENESS_SLICE_S and not _futex._have_waitv:
            slice_s = LIVENESS_SLICE_S
        return self._last_check + slice_s

    def _until_look(self) -> float:
        """Seconds to the next liveness look (>= 0)."""
        return max(0.0, self._check_at() - time.monotonic())

    def _next_slice(self, ring: ByteRingBuffer) -> float:
        """From this liveness look to the next: long while the producer's owner word is
        armed (its death wakes us) and it is not waiting for space (a reader holding
        frames hears of that once per slice); right after the word was marked
        OWNER_DIED with the producer's lock still held, 1 ms doubling (the kernel marks
        the word before the dying process's lock goes; or a forked child holds the
        ring); else LIVENESS_SLICE_S."""
        if ring.owner_armed:
            # Only while the sleep really includes the owner word (futex_waitv works).
            if ring.producer_flags & PRODUCER_WAITING or not _futex.have_waitv():
                return LIVENESS_SLICE_S
            return ARMED_LIVENESS_SLICE_S
        look = self._owner_look
        if ring.owner_marked and look < LIVENESS_SLICE_S:
            self._owner_look = look * 2
            return look
        return LIVENESS_SLICE_S

    def _producer_gone(self, ring: ByteRingBuffer) -> Optional[Exception]:
        """The error to report when the producer is gone or was replaced, else None.
        On Linux one fcntl call while it is alive: no name re-open, no /proc."""
        if ring.producer_closed:
            return None  # end of stream, reported by at_end
        pid = ring.producer_pid
        if _locks.HAVE_OFD_LOCKS:
            if _locks.is_locked(self._segment.fd, _locks.PRODUCER_BYTE):
                return None
        elif process_alive(pid):
            return None
        if ring.producer_closed:  # CLOSED is stored before the lock goes
            return None
        # Gone. A name that now holds another generation says more: re-open it.
        try:
            header = _shm.peek_header(self._name, 32)
        except (OSError, IncompatibleSegmentError):
            header = None
        if header is not None and len(header) >= 32:
            magic, = struct.unpack_from("<I", header, MAGIC_OFFSET)
            generation, = struct.unpack_from("<Q", header, GENERATION_OFFSET)
            if magic == MAGIC and generation != self._generation:
                return ProducerReplacedError(
                    f"ring {self._name!r} was re-created by another producer (generation "
                    f"0x{self._generation:016x} -> 0x{generation:016x}); re-open it",
                    self._generation, generation)
        return ProducerDeadError(
            f"producer of ring {self._name!r} (pid {pid} as it recorded it) died without "
            "closing the stream", pid)

    def _check_producer(self, ring: ByteRingBuffer, force: bool) -> None:
        """Raises ProducerDeadError / ProducerReplacedError (only called when empty);
        unless ``force`` or the owner word was newly marked OWNER_DIED, looks at most
        once per liveness slice (:meth:`_next_slice`)."""
        now = time.monotonic()
        if ring.take_owner_died():
            self._owner_look = OWNER_DIED_LOOK_S
            force = True
        if not force and now < self._check_at():
            return
        self._last_check = now
        self._slice = self._next_slice(ring)
        error = self._producer_gone(ring)
        if error is not None and not ring.has_data():
            raise error

    def handed_over(self) -> bool:
        """Whether this CLOSED ring was handed over (:meth:`ShmProducer.release_name`):
        its producer still holds its lock and the name now holds a ring of another
        generation created by the same process (the header's producer pid is this
        ring's), where the stream goes on (re-open the name). Meaningful once the
        stream ended and everything was read. As C++ ``ShmConsumer::HandedOver``; the
        lock is probed before the name is read, so a producer that ended and let go of
        its lock before that is not taken for one that handed over, nor is a ring
        another process put under the name (a heuristic: PROTOCOL.md section 5). A
        ring that was already CLOSED when this consumer claimed its slot (opened just
        before the move) needs no lock if the ring under the name then is still there
        now: its producer may have let go of it, seeing no receiver, before the
        claim; a ring the same process made after a real end is not followed.
        Consumer thread; never blocks (one fcntl call, one read of the name's
        header)."""
        ring = self.ring
        if not ring.producer_closed:
            return False
        # The lock is probed before the name is read. Unless the ring was CLOSED
        # before we claimed our slot with its successor already under the name: a
        # producer that moved may have let go of a ring it saw no receiver in, and
        # then only that successor (still under the name) is followed, not a ring of
        # a restart in the same process after a real end.
        if _locks.HAVE_OFD_LOCKS:
            held = _locks.is_locked(self._segment.fd, _locks.PRODUCER_BYTE)
        else:
            held = process_alive(ring.producer_pid)
        if not held and self._successor_at_claim is None:
            return False
        # A handover stays within one process: a ring of another process under the
        # name (one that replaced a ring CLOSED after an error while its producer
        # still held the lock, say) is an unrelated stream.
        under = _same_process_ring_under_name(self._name, self._generation,
                                              ring.producer_pid)
        return under is not None and (held or under == self._successor_at_claim)

    def check_producer(self) -> None:
        """Raises ProducerDeadError / ProducerReplacedError if the producer is gone or
        was replaced and nothing is left to read. Consumer thread; never blocks (one
        fcntl call on Linux; a re-open of the name only when the producer is gone)."""
        ring = self.ring
        if not ring.has_data():
            self._check_producer(ring, force=True)

    def __iter__(self) -> "ShmConsumer":
        return self

    async def aread(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """:meth:`read` for asyncio (default: wait for a message or the end of the
        stream): runs it in the loop's default executor. Cancelling the awaiting task
        (``task.cancel()``, ``asyncio.wait_for``) really stops the wait: the blocked
        read is interrupted and the thread freed. One awaiting task at a time;
        event-loop thread."""
        return await run_interruptibly(self, self.read, timeout)

    def __aiter__(self) -> "ShmConsumer":
        """``async for message in consumer``: messages until the end of the stream."""
        return self

    async def __anext__(self) -> bytes:
        data = await self.aread(None)
        if data is None:
            raise StopAsyncIteration
        return data

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
        ``timeout`` as for :meth:`read` (default: wait). Consumer thread; blocks (on
        entering the ``with`` block).
        """
        return _ReadView(self, timeout)

    def close(self) -> None:
        """Detaches (clears ATTACHED), unmaps and releases the consumer role; never
        unlinks: the C++ destructor. Idempotent. Any thread: a read blocked in another
        thread is woken and raises StreamClosedError first (close waits for that,
        briefly)."""
        self._close_now_or_later()

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
        with consumer._call() as ring:  # raises StreamClosedError after close()
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
