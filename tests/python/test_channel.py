"""ShmProducer / ShmConsumer: original API, blocking, views, lifecycle across processes."""
from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

import shmring
from helpers import dev_shm, spawn_python, wait_until
from shmring import (InvalidNameError, MessageTooLargeError, ProducerDeadError,
                     ProducerReplacedError, RingInterruptedError,
                     RingNotFoundError, RingTimeoutError, ShmConsumer, ShmProducer, ShmRingError,
                     StreamClosedError, ViewInUseError, layout)

# Blocking reads run through the native consume path and the pure-Python one.
pytestmark = pytest.mark.usefixtures("wait_impl")

def test_original_api_basics(ring_name):
    p = ShmProducer(ring_name, 4096)
    c = ShmConsumer(ring_name)
    assert not c.has_data()
    assert c.read() is None
    assert p.write(b"hello") is True
    assert c.has_data()
    assert c.read() == b"hello"
    p.close()
    c.close()


@pytest.mark.parametrize("asked,got", [(0, 64), (1, 64), (64, 64), (65, 128), (1000, 1024),
                                       (1 << 20, 1 << 20)])
def test_capacity_rounds_up_never_down(ring_name, asked, got):
    with ShmProducer(ring_name, asked) as p:
        assert p.capacity == got
        assert p.max_message_size == got - 4
        assert os.path.getsize(dev_shm(ring_name)) == layout.HEADER_SIZE + got


def test_capacity_above_2_to_31_is_refused(ring_name):
    with pytest.raises(ValueError, match="2\\^31"):
        ShmProducer(ring_name, (1 << 31) + 1)
    assert not os.path.exists(dev_shm(ring_name))


@pytest.mark.parametrize("bad", ["", "a" * 31, ".hidden", "-x", "a/b", "a b", "cam\x00", "é"])
def test_bad_names_raise_value_error(bad):
    with pytest.raises(InvalidNameError) as info:
        ShmProducer(bad, 64)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ShmRingError)
    with pytest.raises(InvalidNameError):
        ShmConsumer(bad)


def test_name_of_30_chars_is_fine(ring_names):
    name = ("n%d_" % os.getpid()).ljust(30, "x")
    ring_names.append(name)
    with ShmProducer(name, 64), ShmConsumer(name):
        assert os.path.exists(dev_shm(name))


def test_message_that_can_never_fit(ring_name):
    with ShmProducer(ring_name, 64) as p:
        with pytest.raises(MessageTooLargeError):
            p.write(bytes(61))
        with pytest.raises(ValueError):
            with p.reserve(61):
                pass


def test_segment_permissions_default_0600_and_custom(ring_names):
    a, b = "perm_a%d" % os.getpid(), "perm_b%d" % os.getpid()
    ring_names.extend([a, b])
    with ShmProducer(a, 64), ShmProducer(b, 64, mode=0o644):
        assert os.stat(dev_shm(a)).st_mode & 0o777 == 0o600
        assert os.stat(dev_shm(b)).st_mode & 0o777 == 0o644


def test_read_timeout_returns_none(ring_name):
    with ShmProducer(ring_name, 64), ShmConsumer(ring_name) as c:
        assert c.read(timeout=0) is None
        assert c.read(timeout=0.05) is None
        assert not c.at_end


def test_blocking_read_wakes_when_a_thread_writes(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        got = []
        t = threading.Thread(target=lambda: got.append(c.read(timeout=30)))
        t.start()
        # The reader is asleep in FUTEX_WAIT with its WAITING flag set; this thread
        # can only observe that because the sleeper released the GIL.
        assert wait_until(lambda: c.ring.consumer_flags & layout.CONSUMER_WAITING)
        assert p.write(b"wake up")
        t.join(30)
        assert got == [b"wake up"]


def test_blocking_read_wakes_when_another_process_writes(ring_name):
    code = (
        "import sys, shmring\n"
        "p = shmring.ShmProducer(sys.argv[1], 4096)\n"
        "c_ready = sys.stdin.readline()\n"
        "p.write(b'from another process')\n"
        "sys.stdin.readline()\n"
        "p.close()\n")
    proc = spawn_python(code, ring_name, stdin=__import__("subprocess").PIPE)
    try:
        with ShmConsumer(ring_name, timeout=30) as c:
            got = []
            t = threading.Thread(target=lambda: got.append(c.read(timeout=30)))
            t.start()
            assert wait_until(lambda: c.ring.consumer_flags & layout.CONSUMER_WAITING)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            t.join(30)
            assert got == [b"from another process"]
    finally:
        proc.stdin.write("end\n")
        proc.stdin.flush()
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_blocking_write_waits_for_space(ring_name):
    with ShmProducer(ring_name, 64) as p, ShmConsumer(ring_name) as c:
        assert p.write(bytes(60))
        assert not p.write(b"x")                 # full, non-blocking
        assert not p.write(b"x", timeout=0.02)   # full, timed out
        done = []
        t = threading.Thread(target=lambda: done.append(p.write(b"y" * 60, timeout=30)))
        t.start()
        assert wait_until(lambda: p.ring.producer_flags & layout.PRODUCER_WAITING)
        assert c.read() == bytes(60)
        t.join(30)
        assert done == [True]
        assert c.read(timeout=5) == b"y" * 60


def test_iteration_stops_at_end_of_stream(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        msgs = [b"a", b"", b"ccc"]
        for m in msgs:
            p.write(m)
        p.close()
        assert list(c) == msgs
        assert c.at_end
        assert c.read(timeout=None) is None  # end of stream never blocks


def test_iteration_while_a_thread_produces(ring_name):
    with ShmProducer(ring_name, 256) as p, ShmConsumer(ring_name) as c:
        def produce():
            for i in range(2000):
                p.write(i.to_bytes(4, "little") * (i % 9), timeout=None)
            p.close()
        t = threading.Thread(target=produce)
        t.start()
        got = list(c)
        t.join()
        assert got == [i.to_bytes(4, "little") * (i % 9) for i in range(2000)]


def test_write_after_close_is_an_error(ring_name):
    p = ShmProducer(ring_name, 64)
    p.close()
    p.close()  # idempotent
    with pytest.raises(StreamClosedError):
        p.write(b"x")
    assert not os.path.exists(dev_shm(ring_name))


def test_read_view_is_zero_copy_and_released(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        p.write(b"0123456789")
        p.write(b"next")
        with c.read_view() as view:
            assert view.readonly and bytes(view) == b"0123456789"
            arr = np.frombuffer(view, dtype=np.uint8)
            assert arr[3] == ord("3")
            del arr
        with pytest.raises(ValueError):
            view.tobytes()  # released at the end of the block
        assert c.read() == b"next"


def test_read_view_still_exported_is_a_clear_error(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        p.write(b"kept")
        p.write(b"after")
        with pytest.raises(ViewInUseError, match="still referenced"):
            with c.read_view() as view:
                arr = np.frombuffer(view, dtype=np.uint8)
        with pytest.raises(ViewInUseError):
            c.read()           # the record stays held while arr lives
        assert bytes(arr) == b"kept"
        del arr
        assert c.read() == b"after"  # "kept" was consumed, not delivered twice


def test_read_view_none_at_end_of_stream(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        p.close()
        with c.read_view(timeout=None) as view:
            assert view is None


def test_reserve_context_manager_publishes_on_exit(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        with p.reserve(6) as view:
            view[:] = b"zerocp"
            assert not c.has_data()
        assert c.read() == b"zerocp"


def test_reserve_abandoned_on_exception(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        with pytest.raises(KeyError):
            with p.reserve(6) as view:
                view[:] = b"nope!!"
                raise KeyError
        assert not c.has_data()
        assert p.write(b"yes")
        assert c.read() == b"yes"


def test_reserve_timeout(ring_name):
    with ShmProducer(ring_name, 64) as p, ShmConsumer(ring_name):
        p.write(bytes(60))
        with pytest.raises(RingTimeoutError):
            with p.reserve(8, timeout=0):
                pass
        with pytest.raises(RingTimeoutError):
            with p.reserve(8, timeout=0.02):
                pass


def test_consumer_waits_for_the_producer_to_appear(ring_name):
    result = []

    def attach():
        with ShmConsumer(ring_name, timeout=30) as c:
            result.append(c.read(timeout=30))

    t = threading.Thread(target=attach)
    t.start()
    threading.Event().wait(0.05)
    with ShmProducer(ring_name, 4096) as p:
        p.write(b"hi", timeout=None)
        t.join(30)
    assert result == [b"hi"]


def test_missing_ring(ring_name):
    with pytest.raises(RingNotFoundError) as info:
        ShmConsumer(ring_name)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(RingNotFoundError, match="within"):
        ShmConsumer(ring_name, timeout=0.05)


def test_second_live_producer_is_refused(ring_name):
    with ShmProducer(ring_name, 64):
        code = "import sys, shmring\nshmring.ShmProducer(sys.argv[1], 64)\n"
        proc = spawn_python(code, ring_name)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0 and "RingBusyError" in err and "live producer" in err


def test_second_live_consumer_is_refused(ring_name):
    with ShmProducer(ring_name, 64), ShmConsumer(ring_name):
        code = "import sys, shmring\nshmring.ShmConsumer(sys.argv[1])\n"
        proc = spawn_python(code, ring_name)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0 and "RingBusyError" in err and "already has a consumer" in err


def test_stale_closed_segment_is_replaced(ring_name):
    code = ("import sys, shmring\n"
            "p = shmring.ShmProducer(sys.argv[1], 64)\n"
            "p.ring.set_closed()\n"
            "import os; os._exit(0)\n")  # CLOSED, but the name is left behind
    proc = spawn_python(code, ring_name)
    proc.communicate(timeout=30)
    assert os.path.exists(dev_shm(ring_name))
    with ShmProducer(ring_name, 128) as p:
        assert p.capacity == 128


def start_crashing_producer(name: str, messages: int) -> None:
    """A producer process that writes ``messages`` messages and dies without closing."""
    code = ("import sys, os, signal, shmring\n"
            "p = shmring.ShmProducer(sys.argv[1], 4096)\n"
            "for i in range(int(sys.argv[2])): p.write(b'm%d' % i)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = spawn_python(code, name, str(messages))
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_dead_producer_segment_is_replaced(ring_name):
    start_crashing_producer(ring_name, 1)
    with ShmProducer(ring_name, 64) as p:
        assert p.capacity == 64


def test_dead_producer_is_reported_after_draining(ring_name):
    code = ("import sys, os, signal, shmring\n"
            "p = shmring.ShmProducer(sys.argv[1], 4096)\n"
            "for i in range(3): p.write(b'm%d' % i)\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
            "sys.stdin.readline()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    import subprocess
    proc = spawn_python(code, ring_name, stdin=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    with ShmConsumer(ring_name) as c:
        proc.stdin.write("die\n")
        proc.stdin.flush()
        proc.communicate(timeout=30)  # reaped: its pid is gone
        assert [c.read(), c.read(), c.read()] == [b"m0", b"m1", b"m2"]
        with pytest.raises(ProducerDeadError) as info:
            c.read(timeout=10)
        assert info.value.pid == proc.pid
        with pytest.raises(ProducerDeadError):
            list(c)


def test_replaced_producer_is_reported(ring_name):
    import subprocess
    code = ("import sys, os, signal, shmring\n"
            "p = shmring.ShmProducer(sys.argv[1], 4096)\n"
            "p.write(b'old')\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
            "sys.stdin.readline()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = spawn_python(code, ring_name, stdin=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    with ShmConsumer(ring_name) as c:
        old_generation = c.generation
        proc.stdin.write("die\n")
        proc.stdin.flush()
        proc.communicate(timeout=30)
        with ShmProducer(ring_name, 4096) as new:
            assert c.read() == b"old"
            with pytest.raises(ProducerReplacedError) as info:
                c.read(timeout=10)
            assert info.value.old_generation == old_generation
            assert info.value.new_generation == new.generation
            with pytest.raises(ProducerReplacedError):
                c.check_producer()
        with pytest.raises(ProducerDeadError):  # the successor left too: only a dead pid
            c.check_producer()


def test_handed_over_ring(ring_name):
    """release_name, a successor under the name, then end_stream while the old
    producer lives: its consumer reads what the old ring held, sees the end, and
    handed_over() says the stream goes on under the name; once the old producer has
    let go of its lock, it is an ended stream (C++ ChannelTest.HandedOverRing)."""
    old = ShmProducer(ring_name, 4096)
    with ShmConsumer(ring_name) as c:
        old.write(b"last of the old")
        old.release_name()
        assert not os.path.exists(dev_shm(ring_name))
        with ShmProducer(ring_name, 16384) as new:
            assert not c.handed_over()  # not CLOSED yet
            old.end_stream()
            assert c.read(timeout=10) == b"last of the old"
            assert c.read(timeout=10) is None and c.at_end
            assert c.handed_over()
            with ShmConsumer(ring_name) as follower:
                assert follower.generation == new.generation
            old.close()
            assert not c.handed_over()  # the old producer let go of its lock
            with ShmConsumer(ring_name) as again:
                assert again.generation == new.generation  # its close left the name alone


def test_a_receiver_that_claims_after_the_move_follows(ring_name, monkeypatch):
    """Opened before the move, its slot claimed after it and after the old producer,
    seeing no receiver, let go of its lock: the consumer reads what the old ring
    holds, then the end with handed_over() (before: False, as for a stream cut
    short). A ring ended for good before the claim (no ring under the name) stays
    ended. As C++ HandoverWindow (tests/core/test_handover_window.cpp)."""
    real_claim = ShmConsumer._claim
    steps = []

    def claim_after(name: str, segment: object) -> int:
        if steps:
            steps.pop()()
        return real_claim(name, segment)
    monkeypatch.setattr(ShmConsumer, "_claim", staticmethod(claim_after))
    old = ShmProducer(ring_name, 4096)
    new = []
    try:
        old.write(b"last of the old")

        def move() -> None:
            old.release_name()
            new.append(ShmProducer(ring_name, 16384))
            old.end_stream()
            old.close()
        steps.append(move)
        with ShmConsumer(ring_name) as c:
            assert not steps and new
            assert c.generation != new[0].generation  # attached to the old ring
            assert c.read(timeout=10) == b"last of the old"
            assert c.read(timeout=10) is None and c.at_end
            assert c.handed_over()
            with ShmConsumer(ring_name) as follower:
                assert follower.generation == new[0].generation
    finally:
        old.close()
        for p in new:
            p.close()
    ended = ShmProducer(ring_name, 4096)
    ended.write(b"the last")
    steps.append(ended.close)  # CLOSED, the name removed, the lock dropped
    with ShmConsumer(ring_name) as c:
        assert c.read(timeout=10) == b"the last"
        assert c.read(timeout=10) is None and c.at_end
        assert not c.handed_over()  # no ring under the name


def test_a_restart_after_the_claim_is_not_followed(ring_name, monkeypatch):
    """A real end, then a restart in the same process under the same name: the ring
    was CLOSED at the claim but no successor was under the name then (the producer
    ended and went away before the claim, its restart's ring came after it): not a
    hand-over (before: handed_over() True, the restart taken for the old stream's
    rest). As C++ HandoverWindow.ARestartAfterTheClaimIsNotFollowed."""
    real_claim = ShmConsumer._claim
    ended = ShmProducer(ring_name, 4096)
    steps = [ended.close]  # CLOSED, the name removed, the lock dropped

    def claim_after(name: str, segment: object) -> int:
        if steps:
            steps.pop()()
        return real_claim(name, segment)
    monkeypatch.setattr(ShmConsumer, "_claim", staticmethod(claim_after))
    try:
        ended.write(b"the last")
        with ShmConsumer(ring_name) as c:
            assert not steps
            with ShmProducer(ring_name, 4096):  # the app restarts its sender
                assert c.read(timeout=10) == b"the last"
                assert c.read(timeout=10) is None and c.at_end
                assert not c.handed_over()
    finally:
        ended.close()


def test_a_restart_after_a_closed_ring_was_opened_is_not_followed(ring_name):
    """The same after end_stream() (CLOSED, the name kept): a consumer opens the ring
    that still holds data, the producer closes, the process makes a new ring under
    the name. The name held the old ring itself at the claim: not a hand-over
    (before: True). As C++ HandoverWindow.ARestartAfterAClosedRingWasOpenedIsNotFollowed."""
    p = ShmProducer(ring_name, 4096)
    try:
        p.write(b"the last")
        p.end_stream()
        with ShmConsumer(ring_name) as c:
            p.close()
            with ShmProducer(ring_name, 4096):
                assert c.read(timeout=10) == b"the last"
                assert c.read(timeout=10) is None and c.at_end
                assert not c.handed_over()
    finally:
        p.close()


def test_closed_ring_is_not_handed_over(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        p.end_stream()
        assert c.read(timeout=10) is None and c.at_end
        assert not c.handed_over()  # the name still holds this ring


def test_ring_replaced_by_another_process_is_not_handed_over(ring_name):
    """A ring CLOSED while its producer still holds its lock is not handed over when
    another process's producer took the name: a handover stays within one process
    (C++ ChannelTest.RingReplacedByAnotherProcessIsNotHandedOver)."""
    import subprocess
    code = ("import sys, shmring\n"
            "with shmring.ShmProducer(sys.argv[1], 4096):\n"
            "    sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
            "    sys.stdin.readline()\n")
    with ShmProducer(ring_name, 4096) as old, ShmConsumer(ring_name) as c:
        old.write(b"cut short")
        old.release_name()  # the name goes, as another process's unlink
        proc = spawn_python(code, ring_name, stdin=subprocess.PIPE)
        try:
            assert proc.stdout.readline() == "ready\n", proc.stderr.read()
            old.end_stream()  # CLOSED, lock still held
            assert c.read(timeout=10) == b"cut short"
            assert c.read(timeout=10) is None and c.at_end
            assert not c.handed_over()  # the name holds another process's ring
        finally:
            proc.communicate(input="done\n", timeout=30)
        assert proc.returncode == 0


def test_consumer_process_exit_leaves_the_segment(ring_name):
    with ShmProducer(ring_name, 4096) as p:
        p.write(b"one")
        p.write(b"two")
        code = ("import sys, shmring\n"
                "c = shmring.ShmConsumer(sys.argv[1])\n"
                "print(c.read().decode())\n")  # exits without close(): must not unlink
        proc = spawn_python(code, ring_name)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out.strip() == "one"
        assert err == ""  # no resource-tracker warnings
        assert os.path.exists(dev_shm(ring_name))
        assert not p.consumer_attached()
        with ShmConsumer(ring_name) as c:  # a new consumer continues where it stopped
            assert c.read() == b"two"


def test_producer_exit_without_close_ends_the_stream(ring_name):
    code = ("import sys, shmring\n"
            "p = shmring.ShmProducer(sys.argv[1], 4096)\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
            "sys.stdin.readline()\n"
            "p.write(b'last words')\n")  # interpreter exit closes and unlinks
    import subprocess
    proc = spawn_python(code, ring_name, stdin=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    with ShmConsumer(ring_name) as c:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.communicate(timeout=30)
        assert list(c) == [b"last words"]
    assert not os.path.exists(dev_shm(ring_name))


def test_interrupt_a_blocked_read(ring_name):
    with ShmProducer(ring_name, 64), ShmConsumer(ring_name) as c:
        errors = []

        def blocked():
            try:
                c.read(timeout=None)
            except RingInterruptedError as e:
                errors.append(e)

        t = threading.Thread(target=blocked)
        t.start()
        assert wait_until(lambda: c.ring.consumer_flags & layout.CONSUMER_WAITING)
        c.interrupt()
        t.join(30)
        assert len(errors) == 1
        c.clear_interrupt()
        assert c.read(timeout=0.01) is None


def test_dropped_and_attached(ring_name):
    with ShmProducer(ring_name, 64) as p:
        assert not p.consumer_attached()
        with ShmConsumer(ring_name) as c:
            assert p.consumer_attached()
            p.count_dropped(3)
            assert c.dropped == 3 and p.dropped == 3
        assert not p.consumer_attached()


def test_readable_and_writeable_bytes(ring_name):
    with ShmProducer(ring_name, 64) as p, ShmConsumer(ring_name) as c:
        p.write(b"12345")
        assert c.readable_bytes() == 16 == p.readable_bytes()
        assert p.writeable_bytes() == 48 == c.writeable_bytes()


def test_repr_and_package_exports():
    assert "ShmProducer" in shmring.__all__ and "FrameReader" in shmring.__all__
    for name in shmring.__all__:
        assert hasattr(shmring, name)


# ---- review fixes: creation races, producer exit, consumer claim, zombies ----

import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from shmring import ByteRingBuffer, IncompatibleSegmentError, RingBusyError  # noqa: E402
from shmring import channel as channel_mod  # noqa: E402
from shmring._process import process_alive  # noqa: E402
from shmring import _locks as _locks_mod  # noqa: E402


def plant(name: str, data: bytes) -> None:
    fd = os.open(dev_shm(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def ring_image(capacity: int = 64, pid: int = 0) -> bytes:
    img = bytearray(layout.HEADER_SIZE + capacity)
    ByteRingBuffer.initialize(img, capacity, 0, 7, 0, pid)
    return bytes(img)


@pytest.mark.parametrize("data", [b"", bytes(layout.HEADER_SIZE + 64)],
                         ids=["empty", "magic_0"])
def test_a_ring_being_created_is_not_replaced(ring_name, data):
    # Another creator between shm_open and its magic store: refuse, leave it alone.
    plant(ring_name, data)
    with pytest.raises(RingBusyError, match="being created"):
        ShmProducer(ring_name, 64)
    with open(dev_shm(ring_name), "rb") as f:
        assert f.read() == data


def test_abandoned_creation_debris_is_replaced(ring_name, monkeypatch):
    plant(ring_name, bytes(layout.HEADER_SIZE + 64))
    monkeypatch.setattr(channel_mod._shm, "age_seconds", lambda name: 60.0)
    with ShmProducer(ring_name, 64) as p:
        assert p.capacity == 64


@pytest.mark.parametrize("size", [10, 32, 4096])
def test_a_segment_no_ring_can_be_is_never_replaced(ring_name, monkeypatch, size):
    # Without a magic and with a size no creator leaves behind (a POSIX semaphore is
    # 32 bytes): someone else's segment, whatever its age.
    plant(ring_name, bytes(size))
    monkeypatch.setattr(channel_mod._shm, "age_seconds", lambda name: 60.0)
    with pytest.raises(IncompatibleSegmentError, match="not a shmring (ring|segment)") as info:
        ShmProducer(ring_name, 64)
    assert info.value.field == "size"
    assert os.path.getsize(dev_shm(ring_name)) == size


def test_segment_age_comes_from_the_os(ring_name):
    plant(ring_name, bytes(10))
    assert 0 <= channel_mod._shm.age_seconds(ring_name) < 60
    assert channel_mod._shm.age_seconds(ring_name + "x") == -1


def hold_lock(name: str, byte: int) -> int:
    """Takes the OFD lock on ``byte`` of segment ``name`` as a live peer would; returns
    the fd that holds it (close it to release)."""
    from shmring import _locks
    fd = os.open(dev_shm(name), os.O_RDWR)
    assert _locks.try_lock(fd, byte)
    return fd


@pytest.mark.skipif(not _locks_mod.HAVE_OFD_LOCKS, reason="needs OFD locks (Linux)")
@pytest.mark.parametrize("pid", [0, 1, 0x7FFFFFFF])
def test_producer_liveness_is_its_lock_not_its_pid(ring_name, pid):
    # A producer in a pid namespace records pid 1 (alive here), pid 0 is unknown, and
    # a huge pid is gone: none of them decides. The byte-0 lock does.
    plant(ring_name, ring_image(pid=pid))
    fd = hold_lock(ring_name, 0)
    try:
        with pytest.raises(RingBusyError, match="live producer"):
            ShmProducer(ring_name, 64)
    finally:
        os.close(fd)  # the "producer" dies: its lock goes with it
    with ShmProducer(ring_name, 64) as p:  # stale now: replaced
        assert p.ring.producer_pid == os.getpid()


def test_new_producer_pid_is_in_the_header_with_the_magic(ring_name):
    with ShmProducer(ring_name, 64):
        with open(dev_shm(ring_name), "rb") as f:
            header = f.read(layout.HEADER_SIZE)
        assert struct.unpack_from("<I", header, layout.PRODUCER_PID_OFFSET)[0] == os.getpid()


def test_producer_close_never_unlinks_a_successor(ring_name, monkeypatch):
    # A successor that replaces the ring while the old producer closes must keep its
    # name: the old producer unlinks (if its generation) BEFORE setting CLOSED, so
    # nobody may replace it until it has finished with the name.
    a = ShmProducer(ring_name, 64)
    successor = []
    real_peek = channel_mod._shm.peek_header

    def peek_then_race(name, length):
        header = real_peek(name, length)
        if not successor and name == ring_name:
            successor.append(None)
            try:
                successor[0] = ShmProducer(ring_name, 64)
            except RingBusyError:
                pass  # the old producer is alive and not CLOSED: not replaceable yet
        return header

    monkeypatch.setattr(channel_mod._shm, "peek_header", peek_then_race)
    a.close()
    monkeypatch.undo()
    b = successor[0] if successor else None
    if b is None:
        assert not os.path.exists(dev_shm(ring_name))  # a unlinked its own name
        return
    try:
        assert os.path.exists(dev_shm(ring_name)), "the old producer unlinked its successor"
        with open(dev_shm(ring_name), "rb") as f:
            header = f.read(layout.HEADER_SIZE)
        assert struct.unpack_from("<Q", header, layout.GENERATION_OFFSET)[0] == b.generation
    finally:
        b.close()


def test_explicit_set_closed_lets_a_successor_in_and_the_old_exit_leaves_it(ring_name):
    a = ShmProducer(ring_name, 64)
    a.ring.set_closed()                       # end of stream, name kept
    with ShmProducer(ring_name, 128) as b:    # CLOSED: replaceable
        a.close()                             # sees another generation: no unlink
        assert os.path.exists(dev_shm(ring_name))
        with ShmConsumer(ring_name) as c:
            assert c.generation == b.generation


def test_second_consumer_in_the_same_process_is_refused(ring_name):
    with ShmProducer(ring_name, 64) as p:
        with ShmConsumer(ring_name) as c:
            with pytest.raises(RingBusyError, match="already has a consumer"):
                ShmConsumer(ring_name)
            assert p.consumer_attached()
            p.write(b"still mine")
            assert c.read() == b"still mine"
        with ShmConsumer(ring_name) as c2:  # the claim went with the first consumer
            p.write(b"next")
            assert c2.read() == b"next"


def test_refused_consumer_leaves_the_live_consumers_flags_alone(ring_name):
    with ShmProducer(ring_name, 64), ShmConsumer(ring_name) as c:
        buf = c.ring.buffer
        mine = layout.CONSUMER_ATTACHED | layout.CONSUMER_WAITING  # asleep, MEMBARRIER clear
        struct.pack_into("<I", buf, layout.CONSUMER_FLAGS_OFFSET, mine)
        try:
            proc = spawn_python("import sys, shmring\nshmring.ShmConsumer(sys.argv[1])\n",
                                ring_name)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode != 0 and "already has a consumer" in err
            assert struct.unpack_from("<II", buf, layout.CONSUMER_FLAGS_OFFSET) == \
                (mine, os.getpid())
        finally:
            struct.pack_into("<I", buf, layout.CONSUMER_FLAGS_OFFSET, layout.CONSUMER_ATTACHED)


def test_consumers_racing_to_attach_one_wins(ring_name):
    code = ("import sys, shmring\n"
            "sys.stdin.readline()\n"
            "try:\n"
            "    c = shmring.ShmConsumer(sys.argv[1])\n"
            "    print('won', flush=True)\n"
            "except shmring.RingBusyError:\n"
            "    print('busy', flush=True)\n"
            "sys.stdin.readline()\n")
    with ShmProducer(ring_name, 64):
        procs = [spawn_python(code, ring_name, stdin=subprocess.PIPE) for _ in range(4)]
        try:
            for proc in procs:
                proc.stdin.write("go\n")
            for proc in procs:
                proc.stdin.flush()
            answers = sorted(proc.stdout.readline().strip() for proc in procs)
        finally:
            for proc in procs:
                proc.communicate("done\n", timeout=60)
        assert answers == ["busy", "busy", "busy", "won"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_zombie_counts_as_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        def state() -> str:
            with open(f"/proc/{proc.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        assert wait_until(lambda: state() == "Z", 30)
        assert not process_alive(proc.pid)
    finally:
        proc.wait()
    assert process_alive(os.getpid()) and process_alive(0)


def test_read_view_context_manager_is_one_shot_and_waits_on_enter(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        cm = c.read_view(timeout=0)
        p.write(b"late")                   # written after read_view(), before entering
        with cm as view:
            assert bytes(view) == b"late"
            del view
        with pytest.raises(RuntimeError):
            with cm:
                pass
        with c.read_view(timeout=0) as view:
            assert view is None


def test_read_view_exception_in_block_releases_and_propagates(ring_name):
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        p.write(b"one")
        p.write(b"two")
        with pytest.raises(KeyError):
            with c.read_view() as view:
                arr = np.frombuffer(view, dtype=np.uint8)  # still alive at exit:
                raise KeyError("boom")                     # the block's error wins
        with pytest.raises(ViewInUseError):
            c.read()
        del arr
        assert c.read() == b"two"


def test_attach_count_changes_on_every_attach_even_in_one_process(ring_name):
    # consumer_flags bits 16..31 (PROTOCOL.md section 2): a producer tells a new
    # consumer from the previous one even when both have the same pid.
    from shmring import layout
    with ShmProducer(ring_name, 4096) as p:
        before = p.ring.consumer_flags >> layout.CONSUMER_ATTACH_COUNT_SHIFT
        with ShmConsumer(ring_name):
            pass
        after_first = p.ring.consumer_flags >> layout.CONSUMER_ATTACH_COUNT_SHIFT
        assert after_first == before + 1
        with ShmConsumer(ring_name):
            flags = p.ring.consumer_flags
            assert flags >> layout.CONSUMER_ATTACH_COUNT_SHIFT == after_first + 1
            assert flags & layout.CONSUMER_ATTACHED
        assert not p.ring.consumer_flags & layout.CONSUMER_ATTACHED


def test_end_stream_keeps_the_name_and_close_removes_it(ring_name):
    # end_stream() is C++ ShmProducer::Close(); close() is the C++ destructor.
    p = ShmProducer(ring_name, 64)
    with ShmConsumer(ring_name) as c:
        assert p.write(b"last")
        p.end_stream()
        p.end_stream()  # idempotent
        assert p.stream_ended and not p.closed
        assert os.path.exists(dev_shm(ring_name))  # name and mapping kept
        with pytest.raises(StreamClosedError):
            p.write(b"after the end")
        assert c.read(timeout=5) == b"last"
        assert c.read(timeout=5) is None and c.at_end
        p.close()
        assert p.closed and not os.path.exists(dev_shm(ring_name))


def test_properties_and_methods_follow_one_rule():
    from shmring import ByteRingBuffer, FrameReader, FrameWriter
    properties = {
        ByteRingBuffer: ["capacity", "max_message_size", "profile", "generation", "dropped",
                         "at_end", "producer_flags", "producer_pid", "producer_closed",
                         "consumer_flags", "consumer_pid", "head", "tail", "is_producer"],
        ShmProducer: ["capacity", "profile", "generation", "dropped", "closed", "name",
                      "stream_ended", "max_message_size"],
        ShmConsumer: ["capacity", "profile", "generation", "dropped", "closed", "name",
                      "at_end"],
        FrameReader: ["caps", "name", "at_end", "closed"],
        FrameWriter: ["closed", "dropped", "producer"],
    }
    methods = {
        ByteRingBuffer: ["has_data", "readable_bytes", "writeable_bytes", "write", "read",
                         "interrupt", "flush"],
        ShmProducer: ["write", "writeable_bytes", "readable_bytes", "consumer_attached",
                      "end_stream", "close", "interrupt"],
        ShmConsumer: ["read", "has_data", "readable_bytes", "writeable_bytes",
                      "wait_readable", "check_producer", "close", "interrupt"],
        FrameReader: ["read_frame", "close", "interrupt"],
        FrameWriter: ["write", "set_caps", "close"],
    }
    for cls, names in properties.items():
        for n in names:
            assert isinstance(getattr(cls, n), property), f"{cls.__name__}.{n}"
    for cls, names in methods.items():
        for n in names:
            assert callable(getattr(cls, n)) and not isinstance(getattr(cls, n), property), \
                f"{cls.__name__}.{n}"


def _generation_at(name: str) -> int:
    from shmring import layout
    with open(dev_shm(name), "rb") as f:
        header = f.read(layout.HEADER_SIZE)
    return int.from_bytes(header[layout.GENERATION_OFFSET:layout.GENERATION_OFFSET + 8],
                          "little")


def _in_unlink_window(monkeypatch, action):
    """Runs ``action`` once, between a remover's checks and its unlink (with the
    file's flock held): the seam _shm.before_unlink_for_tests."""
    from shmring import _shm
    pending = [action]

    def hook(_name: str) -> None:
        if pending:
            pending.pop()()

    monkeypatch.setattr(_shm, "before_unlink_for_tests", hook)


def test_racing_replacers_of_a_stale_ring_never_remove_each_others_ring(ring_name,
                                                                       monkeypatch):
    """Two producers replace the same stale ring (its producer died): while the first
    is between its check and its unlink, the second tries too; it cannot remove the
    stale ring and put its own there meanwhile (which the first would then unlink):
    exactly one producer owns the name (C++ RacingReplacersOfAStaleRing...)."""
    import time
    start_crashing_producer(ring_name, 1)
    second = []

    def try_second() -> None:
        try:
            second.append(ShmProducer(ring_name, 64))
        except shmring.ShmRingError as e:
            second.append(e)

    threads = []

    def action() -> None:
        t = threading.Thread(target=try_second)
        t.start()
        threads.append(t)
        time.sleep(0.2)  # room for the second to act (not an assertion)

    _in_unlink_window(monkeypatch, action)
    with ShmProducer(ring_name, 64) as first:
        threads[0].join(30)
        assert isinstance(second[0], shmring.RingBusyError), second
        assert _generation_at(ring_name) == first.ring.generation


def test_old_producer_close_never_removes_a_ring_put_there_during_it(ring_name, monkeypatch):
    """A producer that ended its stream is being replaced while it closes: between its
    check and its unlink the replacer tries; the replacer's ring is never removed."""
    import time
    old = ShmProducer(ring_name, 64)
    old.end_stream()
    new = []
    threads = []

    def action() -> None:
        t = threading.Thread(target=lambda: new.append(ShmProducer(ring_name, 64)))
        t.start()
        threads.append(t)
        time.sleep(0.2)  # room for the replacer to act (not an assertion)

    _in_unlink_window(monkeypatch, action)
    old.close()
    threads[0].join(30)
    with new[0] as p:
        assert _generation_at(ring_name) == p.ring.generation
