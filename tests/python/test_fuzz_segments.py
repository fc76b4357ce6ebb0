"""Fuzzing of the Python consumer with hypothesis: arbitrary bytes as a segment, and a
hostile peer rewriting header words and record lens between the consumer's calls.

The mirror of tests/fuzz/fuzz_segment.cpp. Every call the consumer makes (attach,
peek, release, acquire, acquire_view, release_to, read, has_data, at_end,
readable_bytes, flush) and the profile-1 decoder on what it hands out must either
work or raise one of the package's errors (ShmRingError and its subclasses), never
IndexError, ValueError, struct.error or anything else; every message handed out lies
inside the data area. SHMRING_FUZZ_EXAMPLES sets the number of cases (default 300;
scripts/fuzz.sh runs many more).
"""
from __future__ import annotations

import mmap
import os
import struct
from typing import Any, Callable, List, Tuple

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from shmring import ByteRingBuffer, ShmConsumer, ShmRingError, framing, layout  # noqa: E402
from shmring.ring import validate_header  # noqa: E402

from conftest import unique_name  # noqa: E402

EXAMPLES = int(os.environ.get("SHMRING_FUZZ_EXAMPLES", "300"))
U32 = st.integers(0, 0xFFFFFFFF)
CONSUMER_CALLS = ["peek", "release", "acquire", "acquire_view", "read", "has_data", "at_end",
                  "readable_bytes", "flush", "drop_views"]


@st.composite
def scripts(draw: Any, sizes: str) -> Tuple[int, int, bytes, tuple, List[tuple]]:
    """sizes: "exact" (header + capacity), "aligned" (any multiple of 8) or "odd"."""
    capacity = draw(st.sampled_from([64, 128, 256, 1024]))
    if sizes == "exact":
        size = layout.HEADER_SIZE + capacity
    elif sizes == "aligned":
        size = 8 * draw(st.integers(0, (layout.HEADER_SIZE + capacity + 16) // 8))
    else:
        size = draw(st.integers(0, layout.HEADER_SIZE + capacity + 16).filter(lambda n: n % 8))
    initial = draw(st.binary(max_size=size))
    # Mostly a header that validates, so the calls get past the attach.
    stamp_header, stamp_capacity = draw(st.sampled_from(
        [(True, True), (True, True), (True, True), (True, False), (False, True), (False, False)]))
    # Mostly a tail and head that pass the index checks (8-aligned, at most a capacity
    # apart; laps near 0 and near the u32 wrap), so the record checks behind them get hit.
    indices = None
    if draw(st.sampled_from([True, True, False])):
        lap = draw(st.sampled_from([0, 1, (1 << 32) // capacity - 1]))
        tail = lap * capacity + 8 * draw(st.integers(0, capacity // 8 - 1))
        indices = (tail // 8, draw(st.integers(0, capacity // 8)))
    op = st.one_of(
        st.tuples(st.just("poke"), st.integers(0, max(0, size - 4)), U32),
        st.tuples(st.just("poke_header"), st.integers(0, 15), U32),
        st.tuples(st.just("poke_owner"), U32),
        st.tuples(st.just("poke_len"), st.integers(0, 31),
                  st.one_of(st.integers(0, 2 * capacity), U32)),
        st.tuples(st.just("publish"), st.integers(0, capacity)),
        st.tuples(st.just("craft"), st.integers(0, 3), st.integers(0, 7)),
        st.tuples(st.sampled_from(CONSUMER_CALLS)),
        st.tuples(st.just("release_held"), st.integers(0, 63)),
        st.tuples(st.just("release_to"), U32),
    )
    ops = [draw(op) for _ in range(draw(st.integers(0, 60)))]  # st.lists stays short
    return capacity, size, initial, (stamp_header, stamp_capacity, indices), ops


class Peer:
    """The hostile side: writes anything anywhere in the segment, without checks."""

    def __init__(self, buf: mmap.mmap, capacity: int) -> None:
        self.buf = buf
        self.capacity = capacity

    def load(self, off: int) -> int:
        return int(struct.unpack_from("<I", self.buf, off)[0])

    def store(self, off: int, value: int) -> None:
        if 0 <= off and off + 4 <= len(self.buf):
            struct.pack_into("<I", self.buf, off, value)

    def craft(self, variant: int, x: int) -> None:
        """Aims a len word at the consumer's check: at the record at tail, a record
        that crosses the end of the data area (with head a full capacity ahead, so
        only that check stops it), one that passes head, a WRAP marker that skips past
        head, an invalid len."""
        if len(self.buf) < layout.HEADER_SIZE + self.capacity:
            return
        cap = self.capacity
        tail = self.load(layout.TAIL_OFFSET) & ~7
        pos = tail & (cap - 1)
        at = layout.HEADER_SIZE + pos
        if variant == 0:
            self.store(layout.HEAD_OFFSET, (tail + cap) & 0xFFFFFFFF)
            self.store(at, cap - pos - 3 + 8 * x)
        elif variant == 1:
            avail = (self.load(layout.HEAD_OFFSET) - tail) & 0xFFFFFFFF
            self.store(at, (avail - 3 + 8 * x) & 0xFFFFFFFF)
        elif variant == 2:
            self.store(layout.HEAD_OFFSET, (tail + 8 * x) & 0xFFFFFFFF)
            self.store(at, layout.WRAP_MARKER)
        else:
            self.store(at, 0x80000000 + x)

    def publish(self, n: int) -> None:
        """Appends a well-formed record (or a WRAP marker) at head, head moves on."""
        if len(self.buf) < layout.HEADER_SIZE + self.capacity:
            return
        cap = self.capacity
        head = self.load(layout.HEAD_OFFSET)
        pos = head & (cap - 1) & ~7
        rec = layout.record_size(n % cap)
        if rec > cap - pos:
            self.store(layout.HEADER_SIZE + pos, layout.WRAP_MARKER)
            self.store(layout.HEAD_OFFSET, (head + cap - pos) & 0xFFFFFFFF)
        else:
            self.store(layout.HEADER_SIZE + pos, n % cap)
            self.store(layout.HEAD_OFFSET, (head + rec) & 0xFFFFFFFF)


def check_payload(payload: Any, lo: int, hi: int, offset: int, length: int) -> None:
    assert lo <= offset and offset + length <= hi, (offset, length, lo, hi)
    data = bytes(payload)
    assert len(data) == length
    try:
        framing.decode_message(data)
    except ShmRingError:
        pass


def stamp(store: Callable[[int, int], None], capacity: int, stamps: tuple) -> None:
    """Writes the chosen valid header fields over the segment's initial bytes."""
    stamp_header, stamp_capacity, indices = stamps
    if stamp_header:
        store(layout.MAGIC_OFFSET, layout.MAGIC)
        store(layout.VERSION_OFFSET, layout.VERSION | (layout.HEADER_SIZE << 16))
    if stamp_capacity:
        store(layout.CAPACITY_OFFSET, capacity)
    if indices is not None:
        tail = (8 * indices[0]) & 0xFFFFFFFF
        store(layout.TAIL_OFFSET, tail)
        store(layout.HEAD_OFFSET, (tail + 8 * indices[1]) & 0xFFFFFFFF)


def run_script(capacity: int, size: int, initial: bytes, stamps: tuple,
               ops: List[tuple]) -> None:
    buf = mmap.mmap(-1, max(size, 1))  # page-aligned, as a mapped segment
    buf[:len(initial)] = initial
    peer = Peer(buf, capacity)
    stamp(peer.store, capacity, stamps)
    segment: Any = buf if size > 0 else bytearray()  # an mmap cannot be empty
    try:
        validate_header(segment)
        ring = ByteRingBuffer(segment, False)
    except ShmRingError:
        return
    lo, hi = layout.HEADER_SIZE, layout.HEADER_SIZE + ring.capacity
    assert hi <= size
    held: List[int] = []
    views: List[Any] = []
    for op in ops:
        name = op[0]
        try:
            if name == "poke":
                peer.store(op[1], op[2])
            elif name == "poke_header":
                peer.store(op[1] * 4, op[2])
            elif name == "poke_owner":
                # The producer's owner word: any value, then a look and a sleep with
                # no time to sleep (must return at once).
                peer.store(layout.PRODUCER_OWNER_OFFSET, op[1])
                ring.take_owner_died()
                ring.wait_readable(0.0)
            elif name == "poke_len":
                tail = peer.load(layout.TAIL_OFFSET)
                peer.store(lo + ((tail + 8 * op[1]) & (capacity - 1) & ~3), op[2])
            elif name == "publish":
                peer.publish(op[1])
            elif name == "craft":
                peer.craft(op[1], op[2])
            elif name == "peek":
                v = ring.peek()
                if v is not None:  # a view has no offset to check: its length is
                    assert v.nbytes <= ring.capacity - layout.LEN_SIZE
                    check_payload(v, lo, hi, lo, v.nbytes)
                    del v
            elif name == "release":
                ring.release()
            elif name == "acquire":
                found = ring.acquire()
                if found is not None:
                    off, n, end = found
                    check_payload(memoryview(buf)[off:off + n], lo, hi, off, n)
                    if len(held) < 64:
                        held.append(end)
            elif name == "acquire_view":
                h = ring.acquire_view()
                if h is not None:
                    check_payload(h.view, lo, hi, lo, h.view.nbytes)
                    views.append(h)
                    if len(held) < 64:
                        held.append(h.end)
            elif name == "drop_views":
                for h in views:
                    h.try_release()
                views.clear()
            elif name == "read":
                data = ring.read()
                if data is not None:
                    assert len(data) <= ring.capacity - layout.LEN_SIZE
                    check_payload(data, lo, hi, lo, len(data))
            elif name == "has_data":
                ring.has_data()
            elif name == "at_end":
                at_end = ring.at_end  # a method or a property, depending on the version
                if callable(at_end):
                    at_end()
            elif name == "readable_bytes":
                assert 0 <= ring.readable_bytes() <= 0xFFFFFFFF
            elif name == "flush":
                ring.flush()
            elif name == "release_held":
                if held:
                    ring.release_to(held[op[1] % len(held)])
            elif name == "release_to":
                ring.release_to(op[1])
        except ShmRingError:
            pass  # refused with the package's own error: what a hostile peer gets
    for h in views:
        h.try_release()


FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(scripts("exact"))
def test_hostile_segment_raises_only_package_errors(script: tuple) -> None:
    run_script(*script)


@FUZZ
@given(scripts("aligned"))
def test_named_segment_raises_only_package_errors(script: tuple) -> None:
    """The same through ShmConsumer: a /dev/shm file of any content and size (a multiple
    of 8; other sizes below)."""
    run_named(*script)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(scripts("odd"))
def test_named_segment_of_odd_size_raises_only_package_errors(script: tuple) -> None:
    """A size that is not a multiple of 8 is refused with the package's error, never a
    ValueError from the buffer view (PROTOCOL.md section 1)."""
    run_named(*script)


def run_named(capacity: int, size: int, initial: bytes, stamps: tuple,
              ops: List[tuple]) -> None:
    name = unique_name("fz")
    path = "/dev/shm/" + name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        os.pwrite(fd, initial, 0)
        if size >= layout.HEADER_SIZE:
            stamp(lambda off, v: os.pwrite(fd, struct.pack("<I", v), off) and None,
                  capacity, stamps)
        try:
            consumer = ShmConsumer(name, 0)
        except ShmRingError:
            return
        with consumer:
            for op in ops:
                name_ = op[0]
                try:
                    if name_ in ("poke", "poke_header", "poke_len", "publish", "craft"):
                        off = op[1] * 4 if name_ == "poke_header" else op[1]
                        if name_ in ("poke", "poke_header") and off + 4 <= size:
                            os.pwrite(fd, struct.pack("<I", op[2]), off)
                    elif name_ == "poke_owner" and size >= layout.HEADER_SIZE:
                        # Any owner value, then a wait with no time to wait: a look
                        # at the word (and, if newly marked, at the producer).
                        os.pwrite(fd, struct.pack("<I", op[1]), layout.PRODUCER_OWNER_OFFSET)
                        consumer.wait_readable(0.0)
                    elif name_ in ("read", "peek", "acquire"):
                        data = consumer.read(0)
                        if data is not None:
                            assert len(data) <= consumer.capacity - layout.LEN_SIZE
                    elif name_ in ("acquire_view", "release"):
                        with consumer.read_view(0) as view:
                            if view is not None:
                                assert view.nbytes <= consumer.capacity - layout.LEN_SIZE
                                bytes(view)
                    elif name_ == "has_data":
                        consumer.has_data()
                    elif name_ == "readable_bytes":
                        consumer.readable_bytes()
                except ShmRingError:
                    pass
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@FUZZ
@given(st.binary(max_size=200))
def test_decoder_raises_only_package_errors(payload: bytes) -> None:
    try:
        header, start, body_len = framing.decode_header(payload)
    except ShmRingError:
        return
    assert framing.MIN_HEADER_SIZE <= start and start + body_len == len(payload)
    _, body = framing.decode_message(payload)
    assert bytes(body) == payload[start:]
