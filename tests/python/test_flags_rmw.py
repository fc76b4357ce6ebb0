"""Flags words (a receiver slot's flags, producer_flags) have several writers: the side's
own threads and the native wait's C code. Setting or clearing a bit must be one atomic
read-modify-write (``_atomics.fetch_or``/``fetch_and`` on ``_native.compare_exchange``),
not a load and a separate store that overwrites a change made in between. Driven
deterministically: a stand-in for the ring's word view lets "another writer" change the
word in memory right after the ring's first load of it."""
from __future__ import annotations

import os
from typing import Any, Callable, Tuple

import pytest

from conftest import unique_name
from shmring import ShmConsumer, ShmProducer, _atomics, _futex, layout

needs_rmw = pytest.mark.skipif(not _atomics.HAVE_ATOMIC_RMW,
                               reason="atomic RMW needs shmring._native (python/meson.build)")

SLOT0_FLAGS = layout.slot_word(0, layout.SLOT_FLAGS)


def test_the_atomic_rmw_is_there_when_the_build_made_the_native_helper() -> None:
    # Under meson (SHMRING_NATIVE_BUILT=1) the tests below must run, not skip.
    if os.environ.get("SHMRING_NATIVE_BUILT") == "1":
        assert _atomics.HAVE_ATOMIC_RMW


class WriterBetween:
    """The ring's word view, except that right after the first load of word ``index``
    another writer sets ``bits`` in that word in memory: between the ring's load and
    whatever it stores next."""

    def __init__(self, words: memoryview, index: int, bits: int) -> None:
        self._words, self._index, self._bits = words, index, bits
        self.fired = False

    def __getitem__(self, i: Any) -> Any:
        v = self._words[i]
        if i == self._index and not self.fired:
            self.fired = True
            self._words[i] = v | self._bits  # the other writer
        return v

    def __setitem__(self, i: Any, v: Any) -> None:
        self._words[i] = v

    def __len__(self) -> int:
        return len(self._words)


def _between(ring: Any, index: int, bits: int, op: Callable[[], Any]) -> Tuple[int, bool]:
    """Runs ``op`` with the ring's word view replaced; returns the word after, and
    whether the other writer ran."""
    real = ring._w
    view = WriterBetween(real, index, bits)
    ring._w = view
    try:
        op()
    finally:
        ring._w = real
    return int(real[index]), view.fired


@needs_rmw
def test_waiting_set_by_a_python_waiter_keeps_a_bit_set_meanwhile() -> None:
    # The pure-Python wait sets WAITING itself (the native one in C, atomically).
    previous = _futex.use_native(False)
    try:
        p = ShmProducer(unique_name(), 4096)
        c = ShmConsumer(p.name)
    finally:
        _futex.use_native(previous)
    with p, c:
        assert c.ring._waiter is None
        other = layout.CONSUMER_MEMBARRIER  # a bit this wait does not touch
        after, fired = _between(c.ring, SLOT0_FLAGS, other,
                                lambda: c.ring.wait_readable(0.001, keep_waiting=True))
        assert fired, "the wait never loaded its flags word"
        assert after & layout.CONSUMER_WAITING, "WAITING not set"
        assert after & other, "the other writer's bit was overwritten by the WAITING store"
        c.ring.end_sleep()


@needs_rmw
def test_detach_keeps_a_waiting_bit_set_meanwhile() -> None:
    # Another thread of the receiver (the native wait) sets WAITING while close()
    # clears ATTACHED.
    with ShmProducer(unique_name(), 4096) as p:
        c = ShmConsumer(p.name)
        try:
            after, fired = _between(c.ring, SLOT0_FLAGS, layout.CONSUMER_WAITING,
                                    lambda: c.ring.set_consumer_attached(False, 0))
        finally:
            c.close()
        assert fired
        assert not after & layout.CONSUMER_ATTACHED
        assert after & layout.CONSUMER_WAITING, "the WAITING set meanwhile was overwritten"


@needs_rmw
def test_closed_keeps_a_waiting_bit_set_meanwhile() -> None:
    # A producer thread asleep for space sets WAITING while another ends the stream.
    with ShmProducer(unique_name(), 4096) as p:
        after, fired = _between(p.ring, layout.PRODUCER_FLAGS_WORD, layout.PRODUCER_WAITING,
                                p.ring.set_closed)
        assert fired
        assert after & layout.PRODUCER_CLOSED
        assert after & layout.PRODUCER_WAITING, "the WAITING set meanwhile was overwritten"
        p.ring._pflags_and(~layout.PRODUCER_WAITING)
