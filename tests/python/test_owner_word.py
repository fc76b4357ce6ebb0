"""The producer's owner word (layout.PRODUCER_OWNER_OFFSET): C++ and Python producers
arm it (a robust-futex word the kernel marks OWNER_DIED and wakes when the producer
dies), and a consumer asleep in a blocking read hears a kill -9 through it, not through
a liveness slice's expiry. Both the native fused wait and the pure-Python one (and a C++
receiver, shmring_peer await-end); what ended a sleep is read from
``_futex.owner_counters()`` / ``wait::GetCounters()``, never timed."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import threading
from typing import Any, Callable, Iterator, List, Tuple

import pytest

from conftest import peer_path, unique_name
from helpers import spawn_python, wait_until
from shmring import ProducerDeadError, ShmConsumer, ShmProducer, _futex, _locks, _tuning, layout

pytestmark = [
    pytest.mark.skipif(not _futex.HAVE_FUTEX or not _locks.HAVE_OFD_LOCKS,
                       reason="needs Linux futex and OFD locks"),
    pytest.mark.usefixtures("wait_impl"),
]


def _hold(name: str, receivers: int = 1) -> subprocess.Popen:
    """A C++ producer (tests/tools/shmring_peer hold) that creates ``name`` and idles."""
    proc = subprocess.Popen([peer_path(), "hold", name, "--capacity", "4096", "--count",
                             str(receivers)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding"
    return proc


@contextlib.contextmanager
def _held(receivers: int = 1) -> Iterator[Tuple[str, subprocess.Popen]]:
    """A fresh ring name and the C++ producer holding it (``_hold``); on the way out the
    producer is killed if it still lives and the ring unlinked."""
    name = unique_name()
    proc = _hold(name, receivers)
    try:
        yield name, proc
    finally:
        if proc.poll() is None:
            _kill(proc)
        _unlink(name)


def _in_thread(read: Callable[[], Any]) -> "tuple[threading.Thread, List[Any]]":
    """Runs the blocking `read` in a thread of its own; its result or exception goes to
    the list returned beside the thread."""
    out: List[Any] = []

    def body() -> None:
        try:
            out.append(read())
        except BaseException as e:  # noqa: BLE001 - reported by the test
            out.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def _reader(c: ShmConsumer) -> "tuple[threading.Thread, List[Any]]":
    return _in_thread(lambda: c.read(timeout=60))  # a hang guard far beyond any slice


def _asleep(c: ShmConsumer) -> bool:
    return bool(c.ring.consumer_flags & layout.CONSUMER_WAITING)


def _sleeping_reader(c: ShmConsumer) -> "tuple[threading.Thread, List[Any]]":
    """Zeroes the wait counters, starts a blocking read of `c` in a thread and returns it
    once `c` is asleep in it."""
    _futex.reset_counters()
    reader = _reader(c)
    assert wait_until(lambda: _asleep(c), 30)
    return reader


def _heard_one_death_through_the_word() -> None:
    """The counters since the last reset: the sleep ended through the owner word, one
    death was seen, and the sleeps were the armed (long) slices."""
    wakes, deaths = _futex.owner_counters()
    assert wakes >= 1  # the sleep ended through the owner word
    assert deaths == 1
    assert _futex.counters()[2] > _tuning.LIVENESS_SLICE_S  # the armed slice


def _owner(c: ShmConsumer) -> int:
    return int(c.ring._w[layout.PRODUCER_OWNER_WORD])


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    if proc.stdout is not None:
        proc.stdout.close()


def _kill_and_expect_death(proc: subprocess.Popen,
                           *readers: "tuple[threading.Thread, List[Any]]") -> None:
    """Kills the producer ``proc``; the read of every reader (``_reader``) ends with
    ProducerDeadError."""
    _kill(proc)
    for t, out in readers:
        t.join(60)
        assert len(out) == 1 and isinstance(out[0], ProducerDeadError), out


def _unlink(name: str) -> None:
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass


def test_killed_cpp_producer_wakes_a_python_reader_through_the_owner_word() -> None:
    with _held() as (name, proc), ShmConsumer(name) as c:
        armed = _owner(c)
        assert armed & (layout.OWNER_WAITERS | layout.OWNER_DIED) == layout.OWNER_WAITERS
        reader = _sleeping_reader(c)
        _kill_and_expect_death(proc, reader)
        _heard_one_death_through_the_word()


def test_both_receivers_of_a_fan_out_ring_hear_the_death() -> None:
    # The kernel wakes one sleeper of the word; that one wakes the other.
    with _held(receivers=2) as (name, proc), ShmConsumer(name) as a, ShmConsumer(name) as b:
        _futex.reset_counters()
        readers = (_reader(a), _reader(b))
        assert wait_until(lambda: _asleep(a) and _asleep(b), 30)
        _kill_and_expect_death(proc, *readers)
        wakes, deaths = _futex.owner_counters()
        assert wakes >= 2
        assert deaths == 2


# A Python producer in a process of its own: prints "holding TID" (TID: its owner-word
# thread's id, 0 when there is none), then obeys one command per line of stdin.
_PY_PRODUCER = textwrap.dedent('''
    import os, subprocess, sys, threading
    from shmring import FrameWriter, ShmProducer
    kind, name, receivers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "frames":
        p = FrameWriter(name, 4096)
    else:
        p = ShmProducer(name, 4096, max_receivers=receivers)
    ids = [t.native_id for t in threading.enumerate() if t.name == "shmring-owner"]
    print("holding", ids[0] if ids else 0, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "close":
            p.close()
            print("closed", flush=True)
        elif command == "exit":
            break  # interpreter exit with p open: its finalizer runs at exit
        elif command == "_exit":
            os._exit(0)  # gone without any cleanup (as after a fatal error)
        elif command == "fork":
            child = os.fork()
            if child == 0:
                sys.exit(0)  # the child's interpreter exit (finalizers run) ...
            os.waitpid(child, 0)  # ... is over before we answer
            print("forked", flush=True)
        elif command == "spawn":  # a child process that execs (subprocess: vfork or fork)
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            print("spawned", flush=True)
''')


@contextlib.contextmanager
def _python_producer(kind: str = "messages", receivers: int = 1
                     ) -> Iterator[Tuple[str, subprocess.Popen, int]]:
    """A fresh ring name, the Python producer holding it (_PY_PRODUCER) and its
    owner-word thread's id; killed (if alive) and the ring unlinked on the way out."""
    name = unique_name()
    proc = spawn_python(_PY_PRODUCER, kind, name, str(receivers), stdin=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:1] == ["holding"], (line, proc.communicate(timeout=30))
        yield name, proc, int(line[1])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        _unlink(name)


def _command(proc: subprocess.Popen, command: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()


def _answer(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def _armed_by(tid: int) -> int:
    return (tid & layout.OWNER_TID_MASK) | layout.OWNER_WAITERS


def _frame_reader(r: Any) -> "tuple[threading.Thread, List[Any]]":
    return _in_thread(lambda: r.read_frame(timeout=60))  # a hang guard beyond any slice


def test_killed_python_producer_wakes_a_python_reader_through_the_owner_word() -> None:
    # Before: a Python producer left the word 0 and its readers found its death at
    # the end of a 500 ms slice (owner_counters() == (0, 0)).
    with _python_producer() as (name, proc, tid), ShmConsumer(name) as c:
        assert tid != 0
        assert _owner(c) == _armed_by(tid)  # the arming thread's id | WAITERS
        reader = _sleeping_reader(c)
        _kill_and_expect_death(proc, reader)
        _heard_one_death_through_the_word()


def test_killed_frame_writer_wakes_a_frame_reader_through_the_owner_word() -> None:
    from shmring import FrameReader
    with _python_producer("frames") as (name, proc, tid):
        r = FrameReader(name, timeout=30)
        try:
            consumer = r._consumer
            assert _owner(consumer) == _armed_by(tid)
            _futex.reset_counters()
            reader = _frame_reader(r)
            assert wait_until(lambda: _asleep(consumer), 30)
            _kill_and_expect_death(proc, reader)
            _heard_one_death_through_the_word()
        finally:
            r.close()


def test_killed_python_producer_wakes_a_cpp_and_a_python_receiver() -> None:
    # Both receivers of a fan-out ring asleep on the word: the kernel wakes one, which
    # wakes the other, whichever language each is written in.
    import re
    with _python_producer(receivers=2) as (name, proc, tid):
        peer = subprocess.Popen([peer_path(), "await-end", name, "--timeout-ms", "60000"],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert peer.stdout is not None and peer.stdout.readline().strip() == "attached"
            with ShmConsumer(name) as c:
                assert _owner(c) == _armed_by(tid)
                _futex.reset_counters()
                reader = _reader(c)
                ring = c.ring
                assert wait_until(lambda: all(ring.slot_words(k)[0] & layout.CONSUMER_WAITING
                                              for k in range(2)), 30)
                _kill_and_expect_death(proc, reader)
                assert _futex.owner_counters()[0] >= 1
            out, _ = peer.communicate(timeout=60)
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.communicate(timeout=30)
        m = re.fullmatch(r"status (.+) owner_wakes (\d+) owner_deaths (\d+) "
                         r"longest_timeout_ns (\d+)", out.strip())
        assert m is not None, out
        assert m.group(1) == "producer dead"
        assert int(m.group(2)) >= 1  # the C++ sleep ended through the owner word
        assert int(m.group(3)) == 1
        assert int(m.group(4)) > _tuning.LIVENESS_SLICE_S * 1e9  # the armed slice


def test_a_python_producer_arms_the_word_with_its_thread_and_leaves_0_at_close() -> None:
    name = unique_name()
    p = ShmProducer(name, 4096)
    try:
        with ShmConsumer(name) as c:
            arming = [t for t in threading.enumerate() if t.name == "shmring-owner"
                      and p._owner._thread is t]
            assert len(arming) == 1
            assert arming[0].native_id is not None
            assert _owner(c) == _armed_by(arming[0].native_id)
            p.close()
            assert _owner(c) == 0  # disarmed: a later death marks nothing
            assert not arming[0].is_alive()
            assert c.read(timeout=30) is None and c.at_end  # CLOSED: the end of stream
    finally:
        p.close()
        _unlink(name)


@pytest.mark.parametrize("how", ["close", "exit"])
def test_a_clean_exit_of_a_python_producer_marks_nothing(how: str) -> None:
    # "close": close(), then the interpreter exits. "exit": the interpreter exits with
    # the producer open; its finalizer ends the stream and disarms before the unmap.
    # Either way the stream ends (CLOSED) and the word is 0, never OWNER_DIED.
    with _python_producer() as (name, proc, tid), ShmConsumer(name) as c:
        assert _owner(c) == _armed_by(tid)
        reader = _sleeping_reader(c)
        if how == "close":
            _command(proc, "close")
            assert _answer(proc) == "closed"
        _command(proc, "exit")
        assert proc.wait(30) == 0
        t, out = reader
        t.join(60)
        assert out == [None] and c.at_end
        assert _owner(c) == 0
        assert _futex.owner_counters()[1] == 0


def test_a_python_producer_gone_without_cleanup_marks_the_word() -> None:
    # os._exit with the producer open (no finalizer, no close): the process is gone
    # while its thread still has the word listed, so the kernel marks it and the
    # sleeping reader hears the death through it.
    with _python_producer() as (name, proc, tid), ShmConsumer(name) as c:
        assert _owner(c) == _armed_by(tid)
        reader = _sleeping_reader(c)
        _command(proc, "_exit")
        assert proc.wait(30) == 0
        t, out = reader
        t.join(60)
        assert len(out) == 1 and isinstance(out[0], ProducerDeadError), out
        assert _owner(c) == layout.OWNER_WAITERS | layout.OWNER_DIED
        wakes, deaths = _futex.owner_counters()
        assert wakes >= 1
        assert deaths == 1


@pytest.mark.parametrize("child", ["fork", "spawn"])
def test_a_child_of_a_python_producer_leaves_the_word_alone(child: str) -> None:
    # A child of a process with an armed producer exits: forked (its interpreter exit
    # runs the finalizers) or spawned (it execs another program). The word keeps the
    # parent's id, not 0 and not OWNER_DIED, and a reader asleep meanwhile is not woken
    # through it. The parent's death still is.
    with _python_producer() as (name, proc, tid), ShmConsumer(name) as c:
        armed = _armed_by(tid)
        assert _owner(c) == armed
        reader = _sleeping_reader(c)
        _command(proc, child)
        assert _answer(proc) == child + "ed"
        assert _owner(c) == armed
        assert _futex.owner_counters() == (0, 0)
        _kill_and_expect_death(proc, reader)
        assert _futex.owner_counters()[1] == 1


@pytest.mark.parametrize("failure", ["set_robust_list", "get_robust_list", "gettid",
                                     "thread", "architecture"])
def test_a_python_producer_that_cannot_arm_the_word_leaves_it_0_and_works(
        failure: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A seccomp profile refusing the robust-list calls or gettid, no thread to be had, or an
    # architecture without known numbers: never an error for the user; the word stays
    # 0, the reason is kept for debugging, and readers keep 500 ms slices.
    import errno as errno_
    from shmring import _owner as owner_module
    assert owner_module._NUMBERS is not None
    sys_set, sys_get = owner_module._NUMBERS[:2]
    real = owner_module._syscall
    if failure == "thread":
        def no_thread(self: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")
        monkeypatch.setattr(threading.Thread, "start", no_thread)
    elif failure == "architecture":
        monkeypatch.setattr(owner_module, "_NUMBERS", None)
    else:
        refused = {"set_robust_list": sys_set, "get_robust_list": sys_get,
                   "gettid": owner_module._NUMBERS[2]}[failure]
        monkeypatch.setattr(owner_module, "_syscall",
                            lambda n, *a: -errno_.EPERM if n == refused else real(n, *a))
    name = unique_name()
    with ShmProducer(name, 4096) as p:
        monkeypatch.undo()  # the consumer's own threads, if any, start normally
        assert not p._owner.armed
        expected = {"set_robust_list": "set_robust_list failed: errno 1",
                    "get_robust_list": "get_robust_list failed: errno 1",
                    "gettid": "gettid failed: errno 1",
                    "thread": "cannot start the arming thread",
                    "architecture": "no robust futexes"}[failure]
        assert p._owner.error.startswith(expected), p._owner.error
        with ShmConsumer(name) as c:
            assert _owner(c) == 0
            _futex.reset_counters()
            assert c.read(timeout=0.6) is None
            assert _futex.counters()[2] <= _tuning.LIVENESS_SLICE_S  # ordinary slices
            assert p.write(b"x")
            assert c.read(timeout=30) == b"x"
    _unlink(name)


@pytest.mark.parametrize("value", [
    layout.OWNER_WAITERS | layout.OWNER_DIED,  # marked while the producer lives (a fork)
    layout.OWNER_DIED | 12345,
    0xFFFFFFFF,
    layout.OWNER_WAITERS | layout.OWNER_TID_MASK,  # a thread id nobody has
    1,
])
def test_hostile_owner_values_neither_hang_nor_fail_a_reader(value: int) -> None:
    name = unique_name()
    with ShmProducer(name, 4096) as p, ShmConsumer(name) as c:
        p.ring._w[layout.PRODUCER_OWNER_WORD] = value
        _futex.wake_word(c.ring._owner_address)
        assert c.read(timeout=0.02) is None  # timed out: no error, no hang
        assert p.write(b"x")
        assert c.read(timeout=30) == b"x"
        # A marked word while the reader sleeps: it wakes, looks (alive), sleeps on.
        t, out = _reader(c)
        assert wait_until(lambda: _asleep(c), 30)
        p.ring._w[layout.PRODUCER_OWNER_WORD] = layout.OWNER_WAITERS | layout.OWNER_DIED | 7
        _futex.wake_word(c.ring._owner_address)
        assert p.write(b"y")
        t.join(60)
        assert out == [b"y"]


def test_an_armed_word_keeps_short_slices_without_futex_waitv(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Sleeps on the head word alone do not hear the owner word: no 5 s slices then.
    monkeypatch.setattr(_futex, "_have_waitv", False)
    with _held() as (name, _), ShmConsumer(name) as c:
        assert _owner(c) & layout.OWNER_WAITERS
        _futex.reset_counters()
        assert c.read(timeout=1.2) is None
        sleeps, _, longest = _futex.counters()
        assert sleeps >= 2
        assert longest <= _tuning.LIVENESS_SLICE_S


def test_futex_waitv_refused_with_eperm_falls_back_to_one_word(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A seccomp profile older than futex_waitv answers EPERM: the one-word sleep from
    # then on, never an error per read nor a retry loop.
    import errno as errno_
    monkeypatch.setattr(_futex, "_have_waitv", True)
    real_errno = _futex._get_errno
    refused = [errno_.EPERM]  # the waitv call's errno; later calls see the real one
    monkeypatch.setattr(_futex, "_waitv_call", lambda *args: -1)
    monkeypatch.setattr(_futex, "_get_errno",
                        lambda: refused.pop() if refused else real_errno())
    name = unique_name()
    with ShmProducer(name, 4096) as p, ShmConsumer(name) as c:
        sleeper = c.ring._head_sleeper
        assert sleeper.sleep(c.ring._w[layout.HEAD_WORD], 0, 0.01) is False  # timed out
        assert not _futex.have_waitv()
        assert p.write(b"x")
        assert c.read(timeout=30) == b"x"


def test_readers_asleep_on_a_died_word_do_not_wake_each_other_in_a_loop() -> None:
    # Four readers of one fan-out ring asleep on an owner word already marked
    # OWNER_DIED while the producer's lock stays held (a forked child keeps the ring;
    # here a live Python producer with the word stored DIED): one outside wake ends
    # each sleep once and is not passed on again. Fails when every sleep woken on the
    # word passes the wake on whatever value it expected (the readers then wake each
    # other in a loop: hundreds of owner wakes). The sleeps only give a storm time to
    # show; the assertion is a count.
    import time
    name = unique_name()
    n = 4
    with ShmProducer(name, 4096, max_receivers=n) as p:
        cs = [ShmConsumer(name) for _ in range(n)]
        try:
            p.ring._w[layout.PRODUCER_OWNER_WORD] = layout.OWNER_WAITERS | layout.OWNER_DIED
            readers = [_reader(c) for c in cs]
            assert all(wait_until(lambda c=c: _asleep(c), 30) for c in cs)
            time.sleep(0.5)  # past their first looks (1 ms doubling)
            before = _futex.owner_counters()[0]
            _futex.wake_word(cs[0].ring._owner_address)
            time.sleep(0.3)
            after = _futex.owner_counters()[0]
            assert p.write(b"x")
            for t, out in readers:
                t.join(60)
                assert out == [b"x"]
            assert after - before <= n, "the readers woke each other in a loop"
        finally:
            for c in cs:
                c.close()
    _unlink(name)


def test_ring_level_acquire_wait_sleeps_on_an_armed_word_until_its_deadline() -> None:
    # A C++ producer arms its owner word from the start. The ring-level blocking
    # lookup of a caller that never calls owner_look() must sleep until its deadline
    # (WAIT_ENDED), not return WAIT_CHECK at once before check_at (the native path did,
    # for every call: a busy loop). Both twins.
    import time
    from shmring.ring import WAIT_ENDED
    with _held() as (name, _), ShmConsumer(name) as c:
        ring = c.ring
        assert _owner(c) & layout.OWNER_WAITERS
        try:
            r = ring.acquire_wait(time.monotonic() + 0.2, float("inf"))
        finally:
            ring.end_sleep()
        assert r == WAIT_ENDED
        assert not ring.take_owner_died()


def _maps_of(name: str) -> int:
    """How many mappings of /dev/shm/``name`` this process has."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if ("/dev/shm/" + name) in line)


def test_a_finalizer_run_by_the_arming_thread_itself_disarms_cleanly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A garbage collection in the arming thread can run the producer's finalizer
    # there. Before: the closer's disarm could not join (its own thread) and detached
    # the ring at once, so the thread's store of 0 hit a released view (ValueError):
    # the word kept the thread's id while the mapping was unmapped and still on the
    # kernel's list (and set() on the thread's stop Event can deadlock there). Now the
    # thread stops when the finalizer returns to it, stores 0, puts glibc's list back
    # and only then gives back its own export of the mapping, which is unmapped last.
    import gc
    from shmring import _owner as owner_module
    holder: List[ShmProducer] = []
    ran: List[str] = []
    real_sleep = owner_module._sleep_until_stopped

    def finalizer_first(stop: Any) -> None:
        if not ran:
            assert wait_until(lambda: bool(holder), 30)
            ran.append(threading.current_thread().name)
            holder[0]._finalizer()  # the closer, in the arming thread
        real_sleep(stop)
    monkeypatch.setattr(owner_module, "_sleep_until_stopped", finalizer_first)
    name = unique_name()
    p = ShmProducer(name, 4096)
    fd = os.open("/dev/shm/" + name, os.O_RDONLY)
    try:
        arm = p._owner
        thread = arm._thread
        assert thread is not None and arm.armed
        holder.append(p)
        thread.join(60)
        assert ran == ["shmring-owner"] and not thread.is_alive()
        assert arm.error == "" and not arm.armed
        header = os.pread(fd, layout.HEADER_SIZE, 0)
        owner = int.from_bytes(header[layout.PRODUCER_OWNER_OFFSET:][:4], "little")
        flags = int.from_bytes(header[layout.PRODUCER_FLAGS_OFFSET:][:4], "little")
        assert owner == 0  # disarmed: a later death marks nothing
        assert flags & layout.PRODUCER_CLOSED
        assert not os.path.exists("/dev/shm/" + name)  # the closer unlinked it
        holder.clear()
        del p, arm
        gc.collect()
        assert _maps_of(name) == 0  # unmapped once the thread gave its export back
    finally:
        os.close(fd)
        _unlink(name)


def test_a_forked_child_closing_its_copy_of_an_armed_producer_unmaps_it() -> None:
    # The arming thread holds an export of the mapping; a forked child has no such
    # thread, and its copy of that export must not keep the child's mapping alive
    # after it closes its copy of the producer (the parent's word stays armed).
    name = unique_name()
    with ShmProducer(name, 4096) as p:
        assert p._owner.armed
        armed = int(p.ring._w[layout.PRODUCER_OWNER_WORD])
        child = os.fork()
        if child == 0:
            code = 1
            try:
                p.close()
                code = 0 if _maps_of(name) == 0 else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert int(p.ring._w[layout.PRODUCER_OWNER_WORD]) == armed
    _unlink(name)


def _owner_threads() -> "set[threading.Thread]":
    return {t for t in threading.enumerate() if t.name == "shmring-owner"}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("where", ["start", "ready"])
def test_ctrl_c_while_a_producer_arms_its_word_leaves_nothing_behind(
        where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # KeyboardInterrupt in the constructing thread while it waits for the arming
    # thread: in Thread.start() ("start") or for the armed word ("ready"). Before: the
    # arming thread stayed, the segment stayed (word armed, not CLOSED) with the
    # producer lock's descriptor leaked, and the name could not be used again
    # (RingBusyError). Now the arm stops its thread, the constructor unlinks and closes.
    import gc
    import sys
    real_wait = threading.Event.wait
    interrupted: List[str] = []

    def interrupting_wait(self: threading.Event, timeout: Any = None) -> bool:
        caller = sys._getframe(1).f_code
        hit = caller.co_name == "start" if where == "start" else \
            caller.co_filename.endswith("_owner.py")
        if hit and not interrupted and threading.current_thread() is threading.main_thread():
            interrupted.append(where)
            raise KeyboardInterrupt
        return real_wait(self, timeout)
    name = unique_name()
    before_threads, before_fds = _owner_threads(), _open_fds()
    monkeypatch.setattr(threading.Event, "wait", interrupting_wait)
    try:
        with pytest.raises(KeyboardInterrupt):
            ShmProducer(name, 4096)
        monkeypatch.undo()
        assert interrupted == [where]
        assert wait_until(lambda: _owner_threads() <= before_threads, 30)
        gc.collect()
        assert _open_fds() == before_fds  # the producer lock's descriptor is closed
        assert not os.path.exists("/dev/shm/" + name)
        assert _maps_of(name) == 0
        with ShmProducer(name, 4096) as again:  # the name is free for a new producer
            assert again._owner.armed
    finally:
        _unlink(name)


def test_ctrl_c_in_the_join_of_close_still_unmaps_and_releases_the_lock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # KeyboardInterrupt in close() while it joins the arming thread. Before: the
    # detach and segment.close() after the disarm were skipped and never retried (the
    # producer lock's descriptor leaked, the name stayed busy in this process). Now
    # they run; the thread, stopped already, stores 0 and ends by itself, and the
    # mapping goes with its export.
    import gc
    real_join = threading.Thread.join
    interrupted: List[bool] = []

    def interrupting_join(self: threading.Thread, timeout: Any = None) -> None:
        if self.name == "shmring-owner" and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        real_join(self, timeout)
    name = unique_name()
    p = ShmProducer(name, 4096)
    fd = os.open("/dev/shm/" + name, os.O_RDONLY)
    try:
        thread = p._owner._thread
        assert thread is not None
        segment = p._segment
        monkeypatch.setattr(threading.Thread, "join", interrupting_join)
        with pytest.raises(KeyboardInterrupt):
            p.close()
        monkeypatch.undo()
        assert interrupted == [True]
        assert segment.fd == -1 and segment.mm is None  # closed despite the interrupt
        thread.join(60)
        assert not thread.is_alive()
        header = os.pread(fd, layout.HEADER_SIZE, 0)
        assert int.from_bytes(header[layout.PRODUCER_OWNER_OFFSET:][:4], "little") == 0
        assert int.from_bytes(header[layout.PRODUCER_FLAGS_OFFSET:][:4], "little") \
            & layout.PRODUCER_CLOSED
        del p, segment
        gc.collect()
        assert _maps_of(name) == 0
        with ShmProducer(name, 4096) as again:
            assert again._owner.armed
    finally:
        os.close(fd)
        _unlink(name)


def test_an_arming_thread_on_the_constructing_os_thread_refuses_to_arm(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # gevent/eventlet monkey-patching makes threading.Thread a greenlet on the calling
    # OS thread: simulated by a start() that runs the body right there. Arming there
    # would replace that thread's robust list (glibc's) and chain the heads of two
    # producers. Before: it armed the constructing thread (and then slept there; the
    # stand-in sleep below fails instead). Now it refuses: word 0, the reason kept,
    # the constructing thread's list untouched, the producer works.
    import ctypes
    from shmring import _owner as owner_module
    assert owner_module._NUMBERS is not None
    sys_get = owner_module._NUMBERS[1]

    def robust_list() -> Tuple[int, int]:
        head, size = ctypes.c_void_p(0), ctypes.c_size_t(0)
        assert owner_module._syscall(sys_get, 0, ctypes.addressof(head),
                                     ctypes.addressof(size)) == 0
        return head.value or 0, size.value

    def on_this_thread(self: threading.Thread) -> None:
        self.run()

    def no_sleep_here(stop: Any) -> None:
        raise AssertionError("armed on the constructing OS thread")
    before = robust_list()
    monkeypatch.setattr(threading.Thread, "start", on_this_thread)
    monkeypatch.setattr(owner_module, "_sleep_until_stopped", no_sleep_here)
    name = unique_name()
    try:
        with ShmProducer(name, 4096) as p:
            monkeypatch.undo()
            assert not p._owner.armed
            assert "runs on the constructing OS thread" in p._owner.error, p._owner.error
            assert int(p.ring._w[layout.PRODUCER_OWNER_WORD]) == 0
            assert robust_list() == before
            with ShmConsumer(name) as c:
                assert p.write(b"x")
                assert c.read(timeout=30) == b"x"
    finally:
        _unlink(name)
