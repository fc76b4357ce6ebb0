"""Fan-out in Python: one producer, several receivers of one ring (max_receivers), each
in a slot of its own; lossless and live receivers; a killed receiver is reaped; Python
and C++ receivers on one ring. No timed assertions: a wrong result fails or hangs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import List, Optional

import pytest

from conftest import peer_path
from helpers import python_env, wait_until
from peer_format import check, fill, make_pool
import shmring.ring
from shmring import RingBusyError, ShmConsumer, ShmProducer
from shmring.layout import (CONSUMER_ATTACH_COUNT_ONE, CONSUMER_ATTACHED, FLOOR_WORD, HEAD_WORD,
                            INFO_MAX, MODE_LOSSLESS, SLOT_FLAGS, SLOT_MODE, SLOT_TAIL, slot_word)

# Blocking reads run through the native consume path and the pure-Python one.
pytestmark = pytest.mark.usefixtures("wait_impl")

MSG = 200


def message(seq: int) -> bytes:
    return seq.to_bytes(8, "little") + bytes([seq & 0xFF]) * (MSG - 8)


def seq_of(msg) -> int:
    """The sequence number of a whole message, -1 when its bytes are not one."""
    data = bytes(msg)
    if len(data) != MSG:
        return -1
    seq = int.from_bytes(data[:8], "little")
    return seq if data[8:] == bytes([seq & 0xFF]) * (MSG - 8) else -1


def read_all(c: ShmConsumer, count: int, out: List[str]) -> None:
    for want in range(count):
        msg = c.read(timeout=None)
        if msg is None or seq_of(msg) != want:
            out.append(f"message {want} came as {None if msg is None else seq_of(msg)}")
            return
    if c.read(timeout=None) is not None or not c.at_end:
        out.append("no end of stream after the last message")


def test_slots_are_claimed_lowest_first_and_limited(ring_name):
    with ShmProducer(ring_name, 4096, max_receivers=3) as p:
        assert p.max_receivers == 3
        a = ShmConsumer(ring_name)
        b = ShmConsumer(ring_name)
        c = ShmConsumer(ring_name)
        assert (a.slot, b.slot, c.slot) == (0, 1, 2)
        with pytest.raises(RingBusyError, match="already has 3 receivers"):
            ShmConsumer(ring_name)
        assert all(p.receiver_attached(k) for k in range(3))
        a.close()
        assert not p.receiver_attached(0)
        with ShmConsumer(ring_name) as e:
            assert e.slot == 0
        b.close()
        c.close()


def test_second_receiver_of_a_default_ring_is_refused_as_before(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name):
        assert p.max_receivers == 1
        with pytest.raises(RingBusyError,
                           match=rf"already has a consumer \(pid {os.getpid()}\); "
                                 "a ring has one consumer"):
            ShmConsumer(ring_name)


def test_max_receivers_out_of_range_is_refused(ring_name):
    for bad in (0, 17):
        with pytest.raises(ValueError, match=f"max_receivers {bad}"):
            ShmProducer(ring_name, 4096, max_receivers=bad)


def test_python_and_cpp_receivers_each_get_every_message(ring_name):
    """Three receivers at once: two Python threads and the C++ peer (a process)."""
    count, max_size = 3000, 600
    pool = make_pool(max_size)
    with ShmProducer(ring_name, 8192, max_receivers=3) as p:
        peer = subprocess.Popen([peer_path(), "consume", ring_name, "--count", str(count),
                                 "--timeout-ms", "30000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_until(p.consumer_attached, 30), "the C++ receiver never attached"
            receivers = [ShmConsumer(ring_name), ShmConsumer(ring_name)]
            problems: List[Optional[str]] = []

            def verify(c: ShmConsumer) -> None:
                for seq in range(count):
                    with c.read_view(timeout=30) as view:
                        if view is None:
                            problems.append(f"ended before {seq}")
                            return
                        problem = check(view, seq)
                    if problem is not None:
                        problems.append(problem)
                        return

            threads = [threading.Thread(target=verify, args=(c,)) for c in receivers]
            for t in threads:
                t.start()
            sizes = [(seq * 37) % max_size for seq in range(count)]
            for seq, n in enumerate(sizes):
                with p.reserve(n, timeout=30) as view:
                    fill(view, seq, pool)
            p.end_stream()
            for t in threads:
                t.join()
            assert problems == []
            for c in receivers:
                c.close()
        finally:
            out, err = peer.communicate(timeout=120)
        assert peer.returncode == 0, err + out
        assert f"consumed {count} messages, {sum(sizes)} bytes" in out


def test_live_receiver_skips_while_lossless_loses_nothing(ring_name):
    count = 2000
    with ShmProducer(ring_name, 4096, max_receivers=2) as p:
        lossless = ShmConsumer(ring_name, mode="lossless")
        live = ShmConsumer(ring_name, mode="live")
        assert live.mode == "live" and lossless.mode == "lossless"
        problems: List[str] = []
        reader = threading.Thread(target=read_all, args=(lossless, count, problems))
        reader.start()
        for seq in range(count):
            assert p.write(message(seq), timeout=None)
        p.end_stream()
        reader.join()
        assert problems == []
        msg = live.read(timeout=0)
        assert msg is not None
        assert live.skipped > 0
        assert seq_of(msg) == count - 1, "a live receiver that fell behind skips to the newest"
        assert live.read(timeout=None) is None and live.at_end
        lossless.close()
        live.close()


def test_held_view_of_a_live_receiver_is_never_reused(ring_name):
    with ShmProducer(ring_name, 1024, max_receivers=2) as p:
        with ShmConsumer(ring_name, mode="live") as live:
            assert p.write(message(7))
            with live.read_view(timeout=0) as view:
                assert view is not None and seq_of(view) == 7
                written = 0
                while p.write(message(8 + written)):
                    written += 1
                    assert written < 100, "the producer ran over a held record"
                assert seq_of(view) == 7  # intact while held
            assert p.write(message(1000))  # released: room again


KILLED_RECEIVER = textwrap.dedent("""
    import sys, time
    from shmring import ShmConsumer
    c = ShmConsumer(sys.argv[1])
    print(c.slot, flush=True)
    while True:
        time.sleep(3600)  # attached, lossless, reading nothing
""")


def test_killed_receiver_is_reaped_and_others_continue(ring_name):
    count = 1000
    with ShmProducer(ring_name, 4096, max_receivers=3) as p:
        child = subprocess.Popen([sys.executable, "-c", KILLED_RECEIVER, ring_name],
                                 stdout=subprocess.PIPE, text=True, env=python_env())
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "0"
            other = ShmConsumer(ring_name)
            assert other.slot == 1 and p.receiver_attached(0)
            problems: List[str] = []
            reader = threading.Thread(target=read_all, args=(other, count, problems))
            reader.start()
            for seq in range(count):
                if seq == 10:  # before the ring is full: the producer then waits for it
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                assert p.write(message(seq), timeout=None)
            p.end_stream()
            reader.join()
            assert problems == []
            assert not p.receiver_attached(0)
            other.close()
            with ShmConsumer(ring_name) as nxt:
                assert nxt.slot == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_receiver_claiming_a_slot_while_it_is_reaped_is_counted(ring_name, monkeypatch):
    """The reaper reads a slot's attach count before it probes the role byte: a receiver
    that claims the byte right after the probe said "free" bumps the count past what the
    reaper saw, so it is counted (a count read after the probe buried it: the producer
    then ran over its unread records). The claim is forced into that window."""
    with ShmProducer(ring_name, 1024, max_receivers=2) as p, ShmConsumer(ring_name) as a:
        # What a receiver killed in slot 1 leaves: ATTACHED set, role byte free.
        p.ring._w[slot_word(1, SLOT_FLAGS)] = CONSUMER_ATTACHED | CONSUMER_ATTACH_COUNT_ONE
        late: List[ShmConsumer] = []
        probe = p.receiver_attached

        def probe_then_claim(k: int) -> bool:
            alive = probe(k)
            if k == 1 and not late:
                late.append(ShmConsumer(ring_name))  # claims slot 1 just after the probe
            return alive

        monkeypatch.setattr(p, "receiver_attached", probe_then_claim)
        assert p.reap_dead_receivers() == 1
        monkeypatch.undo()
        b = late[0]
        try:
            assert b.slot == 1
            written = 0
            while p.write(message(written), timeout=0):  # a reads everything, b nothing
                assert seq_of(a.read(timeout=0)) == written
                written += 1
                assert written < 100, "the producer ran over the new receiver's records"
            assert seq_of(b.read(timeout=0)) == 0
        finally:
            b.close()


def test_claim_clears_a_dead_receivers_attached_flag_first(ring_name):
    """A receiver clears a dead receiver's ATTACHED flag as soon as it claims the slot,
    before any other word of it, so "claimed, ATTACHED clear" is a receiver attaching
    (PROTOCOL.md section 7), never the dead one; the attach count is kept. The claim
    step alone (ShmConsumer._claim), then a whole attach."""
    from shmring import _shm
    with ShmProducer(ring_name, 1024, max_receivers=2) as p:
        flags = slot_word(0, SLOT_FLAGS)
        p.ring._w[flags] = CONSUMER_ATTACHED | 5 * CONSUMER_ATTACH_COUNT_ONE  # a dead one's
        segment = _shm.open_existing(ring_name)
        try:
            assert ShmConsumer._claim(ring_name, segment) == 0
            assert p.receiver_attached(0)
            assert p.ring._w[flags] == 5 * CONSUMER_ATTACH_COUNT_ONE, \
                "the claim left the dead receiver's ATTACHED flag set"
        finally:
            segment.close()
        assert not p.receiver_attached(0)
        with ShmConsumer(ring_name):
            assert p.ring._w[flags] & CONSUMER_ATTACHED
            assert p.ring._w[flags] // CONSUMER_ATTACH_COUNT_ONE == 6


def lap(p: ShmProducer, a: ShmConsumer, past: int, seq: int) -> int:
    """Writes (a reading everything) until the producer's floor is above ``past`` and its
    head more than a capacity beyond it. Returns the next sequence number."""
    w = p.ring._w
    cap = p.ring.capacity
    for _ in range(100):
        floor_ahead = 0 < (w[FLOOR_WORD] - past) & 0xFFFFFFFF < 0x80000000
        if floor_ahead and (w[HEAD_WORD] - past) & 0xFFFFFFFF > cap:
            return seq
        assert p.write(message(seq), timeout=0)
        assert seq_of(a.read(timeout=0)) == seq
        seq += 1
    raise AssertionError("the producer did not lap the position")


def test_live_receiver_lapped_on_every_pin_reads_nothing_rather_than_reused_bytes(
        ring_name, monkeypatch):
    """A live receiver's pin is store, full fence, load floor. Forced interleaving: each
    pin it stores stays invisible to the producer (as in a store buffer) until its fence,
    and meanwhile the producer laps it. After its bounded number of looks the receiver
    must read nothing (and read on later), never the position it could not protect (it
    read there and reported the ring corrupt)."""
    with ShmProducer(ring_name, 1024, max_receivers=2) as p, ShmConsumer(ring_name) as a, \
            ShmConsumer(ring_name, mode="live") as live:
        seq = 0
        assert p.write(message(seq), timeout=0) and seq_of(a.read(timeout=0)) == seq
        seq += 1
        tail = slot_word(live.slot, SLOT_TAIL)
        w = live.ring._w
        real_fence = shmring.ring.full_fence
        state = {"armed": True, "inside": False, "laps": 0}

        def fence_after_an_invisible_pin() -> None:
            if state["armed"] and not state["inside"] and not w[tail] & 1:
                state["inside"] = True
                pin = int(w[tail])
                w[tail] = pin | 1  # not visible yet: the producer sees the receiver idle
                state["seq"] = lap(p, a, pin, state.get("seq", seq))
                w[tail] = pin
                state["laps"] += 1
                state["inside"] = False
            real_fence()

        monkeypatch.setattr(shmring.ring, "full_fence", fence_after_an_invisible_pin)
        assert live.read(timeout=0) is None  # every look lapped: nothing read
        state["armed"] = False
        monkeypatch.undo()
        assert state["laps"] >= 6
        seq = state["seq"]
        assert p.write(message(seq), timeout=0)
        got = seq_of(live.read(timeout=0))
        assert 0 <= got <= seq  # a whole message again
        assert live.ring.skipped > 0


def test_lossless_start_the_producer_already_lapped_is_not_corrupt(ring_name):
    """A lossless receiver stores its start (the oldest tail it saw), then sets ATTACHED,
    then checks the floor. If the producer lapped that start meanwhile, the producer sees
    an attached lossless slot with a tail more than a capacity behind its head: that
    receiver is about to see the floor and move, so the producer must write on (it
    failed with "the consumer is corrupt")."""
    with ShmProducer(ring_name, 1024, max_receivers=2) as p, ShmConsumer(ring_name) as a:
        start = p.ring.head  # what the attaching receiver read as its start
        lap(p, a, start, 0)
        w = p.ring._w
        # The attaching receiver's words at the instant before its floor check.
        w[slot_word(1, SLOT_MODE)] = MODE_LOSSLESS
        w[slot_word(1, SLOT_TAIL)] = start
        w[slot_word(1, SLOT_FLAGS)] = CONSUMER_ATTACHED | CONSUMER_ATTACH_COUNT_ONE
        for seq in range(1000, 1010):  # slow paths included: every write scans the slots
            assert p.write(message(seq), timeout=0)
            assert seq_of(a.read(timeout=0)) == seq


def test_receivers_join_and_leave_in_a_loop(ring_name):
    count = 2000
    with ShmProducer(ring_name, 4096, max_receivers=4) as p:
        steady = ShmConsumer(ring_name)
        problems: List[str] = []
        reader = threading.Thread(target=read_all, args=(steady, count, problems))
        reader.start()
        churn_problems: List[str] = []

        def churn() -> None:
            for cycle in range(100):
                with ShmConsumer(ring_name, mode="live" if cycle % 2 else "lossless") as c:
                    for _ in range(3):
                        msg = c.read(timeout=0)
                        if msg is not None and seq_of(msg) < 0:
                            churn_problems.append(f"cycle {cycle}: a torn message")
                            return

        churner = threading.Thread(target=churn)
        churner.start()
        for seq in range(count):
            assert p.write(message(seq), timeout=None)
        churner.join()
        p.end_stream()
        reader.join()
        assert problems == [] and churn_problems == []
        steady.close()


def test_stream_info_reaches_late_receivers(ring_name):
    with ShmProducer(ring_name, 4096, max_receivers=2) as p:
        with ShmConsumer(ring_name) as early:
            assert early.stream_info() is None
            p.set_stream_info(b"video/x-raw, width=(int)1920", 96)
            with pytest.raises(ValueError):
                p.set_stream_info(bytes(INFO_MAX + 1), 0)
            with ShmConsumer(ring_name) as late:
                assert late.stream_info() == (b"video/x-raw, width=(int)1920", 96)
