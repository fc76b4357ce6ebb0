"""Every blocking object has a public, thread-safe interrupt(): a call blocked in
another thread wakes with RingInterruptedError (a clear exception, not a
ValueError from released memory), and after clear_interrupt() the object works."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Tuple

import pytest

import shmring
from conftest import unique_name

# Every blocking call here runs through the native fused wait and the pure one.
pytestmark = pytest.mark.usefixtures("wait_impl")

CAPS = "video/x-raw,format=GRAY8,width=64,height=64"


def _consumer(name: str) -> Tuple[Any, Callable[[], Any], List[Any]]:
    p = shmring.ShmProducer(name, 4096)
    c = shmring.ShmConsumer(name)
    return c, lambda: c.read(timeout=None), [c, p]


def _producer(name: str) -> Tuple[Any, Callable[[], Any], List[Any]]:
    p = shmring.ShmProducer(name, 4096)
    c = shmring.ShmConsumer(name)  # attached, never reads: the ring fills
    while p.write(b"x" * 256, timeout=0):
        pass
    return p, lambda: p.write(b"y" * 256, timeout=None), [c, p]


def _frame_reader(name: str) -> Tuple[Any, Callable[[], Any], List[Any]]:
    w = shmring.FrameWriter(name, 1 << 16, caps=CAPS)
    r = shmring.FrameReader(name, timeout=None)
    return r, lambda: r.read_frame(timeout=None), [r, w]


def _frame_writer(name: str) -> Tuple[Any, Callable[[], Any], List[Any]]:
    w = shmring.FrameWriter(name, 1 << 16, caps=CAPS)
    r = shmring.FrameReader(name, timeout=None)  # attached, never reads
    frame = bytes(64 * 64)
    while w.write(frame, timeout=0):
        pass
    return w, lambda: w.write(frame, timeout=None), [r, w]


@pytest.mark.parametrize("make", [_consumer, _producer, _frame_reader, _frame_writer],
                         ids=["ShmConsumer.read", "ShmProducer.write",
                              "FrameReader.read_frame", "FrameWriter.write"])
def test_interrupt_wakes_the_blocked_call_of_every_blocking_object(make):
    obj, call, owned = make(unique_name("intr"))
    try:
        outcome: List[Any] = []

        def run() -> None:
            try:
                outcome.append(("returned", call()))
            except BaseException as e:  # noqa: B902 - recorded and asserted on below
                outcome.append(("raised", e))

        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(0.2)  # let it block (the interrupt is sticky: earlier works too)
        assert not outcome, f"the call did not block: {outcome}"
        obj.interrupt()
        t.join(10)  # a watchdog, not a timing: interrupt() returns once it is awake
        assert not t.is_alive(), "interrupt() did not wake the blocked call"
        kind, value = outcome[0]
        assert kind == "raised" and isinstance(value, shmring.RingInterruptedError), outcome
        obj.clear_interrupt()
        # Re-armed: a non-blocking call works again instead of raising.
        call_again = {"_consumer": lambda: obj.read(timeout=0),
                      "_producer": lambda: obj.write(b"z", timeout=0),
                      "_frame_reader": lambda: obj.read_frame(timeout=0),
                      "_frame_writer": lambda: obj.write(bytes(64 * 64), timeout=0)}
        call_again[make.__name__]()
    finally:
        for o in owned:
            o.close()
