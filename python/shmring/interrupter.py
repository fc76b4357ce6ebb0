"""Interrupter: lets one thread interrupt another thread's blocking shmring call,
including a consumer that is still waiting for its ring to appear.

The Python counterpart of C++ ``shm::Interrupter`` given in
``ConsumerOptions::interrupter``: pass one to ``ShmConsumer(..., interrupter=i)`` (or
``FrameReader``) and ``i.interrupt()`` from any thread wakes the open wait and, once
attached, every later wait of that consumer. Sticky until :meth:`clear`.
"""
from __future__ import annotations

import threading
from typing import List

from .ring import ByteRingBuffer


class Interrupter:
    """A sticky interrupt flag shared by the waits of the consumers it is given to.

    Any thread may call :meth:`interrupt` and :meth:`clear`; neither blocks longer
    than waking the sleepers (see :meth:`ByteRingBuffer.interrupt`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._rings: List[ByteRingBuffer] = []

    @property
    def interrupted(self) -> bool:
        """Whether :meth:`interrupt` was called and not cleared since. Never blocks."""
        return self._event.is_set()

    def interrupt(self) -> None:
        """Wakes the open wait and every blocking call of the attached consumers at
        once; they raise RingInterruptedError, and so does every later one until
        :meth:`clear`. Any thread; returns once the sleepers are awake."""
        with self._lock:
            self._event.set()
            rings = list(self._rings)
        for ring in rings:
            ring.interrupt()

    def clear(self) -> None:
        """Re-arms blocking calls. Any thread; never blocks."""
        with self._lock:
            self._event.clear()
            rings = list(self._rings)
        for ring in rings:
            ring.clear_interrupt()

    def nap(self, seconds: float) -> bool:
        """Sleeps up to ``seconds`` or until interrupted; True when interrupted.
        Used by the open wait. Blocks."""
        return self._event.wait(seconds)

    def attach(self, ring: ByteRingBuffer) -> None:
        """Makes :meth:`interrupt` reach ``ring``'s waits too (and interrupts it now if
        the flag is set). Called by a consumer once attached. Never blocks."""
        with self._lock:
            self._rings.append(ring)
            now = self._event.is_set()
        if now:
            ring.interrupt()

    def detach(self, ring: ByteRingBuffer) -> None:
        """Forgets ``ring`` (its consumer closed). Never blocks."""
        with self._lock:
            self._rings = [r for r in self._rings if r is not ring]
