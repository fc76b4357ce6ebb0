"""Property test: ByteRingBuffer against a trivial model (a FIFO plus the fit rule).

The model keeps the queue of messages and WRAP markers and the number of bytes in
use; its fit rule is the spec's sentence ("a record that does not fit before the
end gets a WRAP marker as soon as those bytes are free"). Operations: write,
reserve + commit (possibly shorter) or cancel, read, peek (+ release or + read),
has_data, with sizes 0..capacity (above capacity - 4 must raise) and start indices
near 2**32 so the index wraps inside the run.
"""
from __future__ import annotations

from collections import deque

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import settings, strategies as st  # noqa: E402
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant,  # noqa: E402
                                 precondition, rule)

from shmring import ByteRingBuffer, MessageTooLargeError, layout  # noqa: E402


def rec(n: int) -> int:
    return layout.record_size(n)


class RingModel(RuleBasedStateMachine):
    @initialize(capacity=st.sampled_from([64, 128, 256]),
                start=st.one_of(st.just(0), st.integers(0, (1 << 29) - 1).map(lambda k: k * 8),
                                st.integers(1, 64).map(lambda k: (1 << 32) - 8 * k)))
    def setup(self, capacity, start):
        self.capacity = capacity
        self.buf = bytearray(layout.HEADER_SIZE + capacity)
        ByteRingBuffer.initialize(self.buf, capacity, 0, 7, start)
        self.p = ByteRingBuffer(self.buf, True)
        self.c = ByteRingBuffer(self.buf, False)
        self.queue = deque()  # ("msg", bytes) or ("marker", size)
        self.used = 0
        self.pos = start % capacity  # data offset of head
        self.counter = 0
        self.peeked = None

    # ---- model --------------------------------------------------------------

    def _payload(self, n: int) -> bytes:
        self.counter += 1
        return bytes((self.counter + i) & 0xFF for i in range(n))

    def _fit(self, n: int) -> bool:
        """The spec's fit rule; publishes a marker into the model when it applies."""
        r = rec(n)
        to_end = self.capacity - self.pos
        if r > to_end:
            if self.capacity - self.used < to_end:
                return False
            self.queue.append(("marker", to_end))
            self.used += to_end
            self.pos = 0
        return self.capacity - self.used >= r

    def _push(self, data: bytes) -> None:
        self.queue.append(("msg", data))
        self.used += rec(len(data))
        self.pos = (self.pos + rec(len(data))) % self.capacity

    def _consumer_looks(self) -> None:
        """A consumer call frees WRAP markers at the front (nothing is held before them)."""
        while self.queue and self.queue[0][0] == "marker":
            self.used -= self.queue.popleft()[1]

    def _pop(self) -> bytes:
        self._consumer_looks()
        kind, data = self.queue.popleft()
        assert kind == "msg"
        self.used -= rec(len(data))
        return data

    def _has_msg(self) -> bool:
        return any(kind == "msg" for kind, _ in self.queue)

    # ---- rules ----------------------------------------------------------------

    @precondition(lambda self: self.peeked is None)
    @rule(n=st.integers(0, 260))
    def write(self, n):
        if n > self.capacity - 4:
            with pytest.raises(MessageTooLargeError):
                self.p.write(bytes(n))
            return
        data = self._payload(n)
        expected = self._fit(n)
        assert self.p.write(data) == expected
        if expected:
            self._push(data)

    @precondition(lambda self: self.peeked is None)
    @rule(n=st.integers(0, 252), shorten=st.integers(0, 252), cancel=st.booleans())
    def reserve(self, n, shorten, cancel):
        if n > self.capacity - 4:
            return
        expected = self._fit(n)
        view = self.p.reserve(n)
        assert (view is not None) == expected
        if view is None:
            return
        final = min(n, shorten)
        data = self._payload(final)
        view[:final] = data
        del view
        if cancel:
            self.p.cancel()
        else:
            self.p.commit(final)
            self._push(data)

    @precondition(lambda self: self.peeked is None)
    @rule()
    def read(self):
        got = self.c.read()
        if self._has_msg():
            assert got == self._pop()
        else:
            self._consumer_looks()
            assert got is None

    @precondition(lambda self: self.peeked is None)
    @rule()
    def peek(self):
        view = self.c.peek()
        self._consumer_looks()
        if self._has_msg():
            assert view is not None and bytes(view) == self.queue[0][1]
            self.peeked = bytes(view)
        else:
            assert view is None

    @precondition(lambda self: self.peeked is not None)
    @rule(then_read=st.booleans())
    def finish_peek(self, then_read):
        if then_read:
            assert self.c.read() == self.peeked  # read after peek gives the same message
        else:
            self.c.release()
        assert self._pop() == self.peeked
        self.peeked = None

    @rule()
    def has_data(self):
        assert self.c.has_data() == self._has_msg()
        self._consumer_looks()

    @invariant()
    def accounting(self):
        if not hasattr(self, "p"):
            return
        assert self.c.readable_bytes() == self.used
        assert self.p.writeable_bytes() == self.capacity - self.used
        head, tail = self.p.head, self.p.tail
        assert 0 <= head <= 0xFFFFFFFF and 0 <= tail <= 0xFFFFFFFF
        assert (head - tail) & 0xFFFFFFFF == self.used


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
