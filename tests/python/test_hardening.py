"""The name in /dev/shm, who owns it, liveness by locks, hostile peers, start-up races,
SIGTERM and blocking corner cases (Python side). Every blocking scenario runs under a
watchdog: a hang fails the test instead of stalling the suite."""
from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from typing import Any, Callable, List

import pytest

from conftest import unique_name
from helpers import dev_shm, python_env
import shmring
from shmring import (ByteRingBuffer, CorruptRecordError, ForeignOwnerError,
                     IncompatibleSegmentError, InvalidNameError, ProducerDeadError,
                     RingBusyError, RingInterruptedError, RingPermissionError, ShmConsumer,
                     ShmProducer, ShmRingError, _locks, _shm, layout)
from shmring import channel as channel_mod
from shmring.header import HeaderSnapshot

NOBODY = 65534
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to act as a second user "
                                                    "(setresuid to uid 65534)")
needs_ofd = pytest.mark.skipif(not _locks.HAVE_OFD_LOCKS, reason="needs OFD locks (Linux)")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "shmring", *args], env=python_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter; the timeout is the watchdog against hangs."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          env=python_env(), capture_output=True, text=True, timeout=timeout)


def as_user(uid: int, fn: Callable[[], Any], timeout: float = 60) -> Any:
    """Runs fn() in a forked child with real/effective/saved uid ``uid``; returns its
    result or re-raises (as ShmRingError text) what it raised. Root only."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            os.close(r)
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                out: Any = ("ok", fn())
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out = ("raised", type(e).__name__, str(e), getattr(e, "owner_uid", None),
                       getattr(e, "owner_name", None), traceback.format_exc())
            os.write(w, pickle.dumps(out))
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        assert time.monotonic() < deadline, "child hung"
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "the child failed before reporting"
    return pickle.loads(b"".join(chunks))


@pytest.fixture
def name() -> Any:
    n = unique_name("hard")
    yield n
    path = dev_shm(n)
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


# ---- names --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["cam0\n", "cam0\n\n", "\ncam0"])
def test_a_trailing_newline_is_not_a_valid_name(bad):
    with pytest.raises(InvalidNameError):
        shmring.validate_name(bad)
    proc = run_cli("inspect", "--", bad)
    assert proc.returncode == 1 and "invalid ring name" in proc.stderr


# ---- the name in /dev/shm: not a regular file --------------------------------------

def _make(kind: str, path: str, target: str = "") -> None:
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "dir":
        os.mkdir(path, 0o700)
    elif kind == "symlink":
        os.symlink(target, path)


@pytest.mark.parametrize("kind,what", [("fifo", "a FIFO"), ("dir", "a directory"),
                                       ("symlink", "a symbolic link")])
def test_a_non_regular_file_at_the_name_is_refused_at_once(name, tmp_path, kind, what):
    target = tmp_path / "planted"
    image = bytearray(layout.HEADER_SIZE + 64)
    ByteRingBuffer.initialize(image, 64)  # a valid ring image behind a symlink
    target.write_bytes(bytes(image))
    _make(kind, dev_shm(name), str(target))
    # In a child with a watchdog: a producer used to hang forever on a FIFO.
    proc = run_python('''
        import sys, shmring
        from shmring import _shm
        name = sys.argv[1]
        out = []
        for make in (lambda: shmring.ShmProducer(name, 64),
                     lambda: shmring.ShmConsumer(name, timeout=None),
                     lambda: _shm.peek_header(name, 128)):
            try:
                make()
                out.append("accepted")
            except shmring.IncompatibleSegmentError as e:
                out.append(e.field + ": " + str(e))
        print("\\n".join(out))
    ''', name, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line.startswith("type: ") and f"is {what}, not a ring" in line, line
    assert target.read_bytes() == bytes(image)  # nothing followed the link and wrote


@pytest.mark.parametrize("kind,what", [("fifo", "a FIFO"), ("dir", "a directory"),
                                       ("symlink", "a symbolic link")])
def test_cli_lists_non_regular_entries_as_foreign_and_rm_needs_force(name, kind, what):
    _make(kind, dev_shm(name), "/nonexistent-target")
    assert name not in {e["name"] for e in json.loads(run_cli("ls", "--json").stdout)}
    everything = {e["name"]: e for e in json.loads(run_cli("ls", "--all", "--json").stdout)}
    assert everything[name]["state"] == "foreign"
    assert everything[name]["type"] == what
    text = run_cli("ls", "--all").stdout
    assert any(l.startswith(name + " ") and f"foreign ({what})" in l for l in text.splitlines())
    proc = run_cli("inspect", name)
    assert proc.returncode == 1 and f"is {what}, not a ring" in proc.stderr
    proc = run_cli("rm", name)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert os.path.lexists(dev_shm(name))
    proc = run_cli("rm", "--force", name)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.lexists(dev_shm(name))


# ---- size not a multiple of 8 ------------------------------------------------------

def test_a_segment_size_not_a_multiple_of_8_is_refused_naming_the_size(name):
    image = bytearray(layout.HEADER_SIZE + 64 + 4)
    ByteRingBuffer.initialize(image, 64)
    fd = os.open(dev_shm(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.write(fd, bytes(image))
    os.close(fd)
    with pytest.raises(IncompatibleSegmentError, match=f"size {layout.HEADER_SIZE + 68} is not a multiple of 8") as e:
        ShmConsumer(name, timeout=5)
    assert e.value.field == "size"
    proc = run_cli("cat", name, "--timeout", "1")
    assert proc.returncode == 1 and str(layout.HEADER_SIZE + 68) in proc.stderr
    assert HeaderSnapshot.read(name).error_field == "size"


# ---- permissions and owners ----------------------------------------------------------

@needs_root
def test_a_ring_of_another_user_raises_a_package_error_naming_the_owner(name):
    with ShmProducer(name, 64):  # root's, mode 0600
        def attach() -> str:
            ShmConsumer(name, timeout=None)  # must not wait: permission is not "missing"
            return "attached"
        result = as_user(NOBODY, attach)
        assert result[0] == "raised", result
        assert result[1] == "RingPermissionError", result
        assert result[3] == 0 and result[4] == "root", result
        assert "uid 0 (root)" in result[2] and "permission denied" in result[2]

        def peek() -> str:
            _shm.peek_header(name, 128)
            return "read"
        assert as_user(NOBODY, peek)[1] == "RingPermissionError"

        def produce() -> str:
            ShmProducer(name, 64)  # must never unlink what it cannot read
            return "created"
        result = as_user(NOBODY, produce)
        assert result[1] == "RingPermissionError", result
        assert os.path.exists(dev_shm(name))
    assert issubclass(RingPermissionError, ShmRingError)
    assert issubclass(RingPermissionError, PermissionError)


@needs_root
def test_a_ring_owned_by_another_uid_is_refused_unless_allowed(name):
    # A world-writable ring made by another user (e.g. squatting the name).
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            p = ShmProducer(name, 64, mode=0o666)
            p.write(b"squatted")
            os.write(ready_w, b"1")
            os.read(done_r, 1)
            p.close()
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        assert os.read(ready_r, 1) == b"1"
        assert os.stat(dev_shm(name)).st_uid == NOBODY
        with pytest.raises(ForeignOwnerError, match="uid 65534 .nobody."):
            ShmConsumer(name)
        with pytest.raises(ForeignOwnerError):
            ShmProducer(name, 64)  # not "in use": refused for its owner first
        with ShmConsumer(name, allow_foreign_owner=True) as c:
            assert c.read() == b"squatted"
        with pytest.raises(RingBusyError, match="live producer"):
            ShmProducer(name, 64, allow_foreign_owner=True)
    finally:
        os.write(done_w, b"1")
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(done_w)


@needs_root
def test_ls_as_another_user_lists_rings_not_every_unreadable_file(name):
    other = name + "f"
    try:
        fd = os.open(dev_shm(other), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, bytes(10))  # someone's private data, not a ring
        os.close(fd)
        with ShmProducer(name, 64):  # root's ring, 0600: unreadable for nobody
            def listing() -> List[Any]:
                from shmring.header import scan_segments
                return [(s.name, s.state()) for s in scan_segments(False)]
            result = as_user(NOBODY, listing)
            assert result[0] == "ok", result
            entries = dict(result[1])
            assert entries.get(name) == "unreadable"
            assert other not in entries
    finally:
        os.unlink(dev_shm(other))


# ---- liveness: locks, not pids -------------------------------------------------------

@needs_ofd
def test_a_killed_python_producer_is_reported_dead_by_its_lock(name):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent('''
        import sys, time, shmring
        p = shmring.ShmProducer(sys.argv[1], 4096)
        p.write(b"last words")
        print("ready", flush=True)
        time.sleep(600)
    '''), name], env=python_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with ShmConsumer(name) as c:
            assert c.read() == b"last words"
            assert c.read(timeout=0.05) is None  # alive: nothing to report
            proc.kill()
            proc.wait()
            with pytest.raises(ProducerDeadError):
                c.read(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_ofd
def test_the_idle_wait_neither_reopens_the_name_nor_probes_pids(name, monkeypatch):
    with ShmProducer(name, 64), ShmConsumer(name) as c:
        def forbidden(*args: Any) -> Any:
            raise AssertionError("idle path re-opened the name or probed a pid")
        monkeypatch.setattr(channel_mod._shm, "peek_header", forbidden)
        monkeypatch.setattr(channel_mod, "process_alive", forbidden)
        assert c.read(timeout=0.5) is None
        monkeypatch.undo()  # closing the producer looks at its name, as it should


def test_the_liveness_check_runs_at_most_once_per_slice(name, monkeypatch):
    calls = []
    real = ShmConsumer._producer_gone

    def counted(self: ShmConsumer, ring: Any) -> Any:
        calls.append(time.monotonic())
        return real(self, ring)

    monkeypatch.setattr(ShmConsumer, "_producer_gone", counted)
    with ShmProducer(name, 64), ShmConsumer(name) as c:
        start = time.monotonic()
        for _ in range(2000):
            assert c.read(timeout=0) is None
            with c.read_view(timeout=0) as view:
                assert view is None
        elapsed = time.monotonic() - start
    slices = elapsed / channel_mod.LIVENESS_SLICE_S
    assert 1 <= len(calls) <= slices + 2, (len(calls), elapsed)


@needs_ofd
def test_a_second_consumer_is_refused_by_the_byte_1_lock(name):
    with ShmProducer(name, 64) as p, ShmConsumer(name):
        fd = os.open(dev_shm(name), os.O_RDONLY)
        try:
            assert _locks.is_locked(fd, _locks.CONSUMER_BYTE)
            assert _locks.is_locked(fd, _locks.PRODUCER_BYTE)
        finally:
            os.close(fd)
        assert p.consumer_attached()
        with pytest.raises(RingBusyError):
            ShmConsumer(name)
    assert not os.path.exists(dev_shm(name))


# ---- hostile peer: a corrupt tail ----------------------------------------------------

@pytest.mark.parametrize("bad_tail", [64 + 8, 4, 0xFFFFFFF8])
def test_producer_refuses_a_corrupt_tail_instead_of_overwriting(bad_tail):
    buf = bytearray(layout.HEADER_SIZE + 64)
    p = ByteRingBuffer(buf, True)
    c = ByteRingBuffer(buf)
    assert p.write(b"unread")
    unread = bytes(buf[layout.HEADER_SIZE:layout.HEADER_SIZE + 16])
    tail_word = memoryview(buf).cast("I")
    tail_word[layout.TAIL_WORD] = bad_tail  # past head, misaligned, or far behind
    with pytest.raises(CorruptRecordError, match="corrupt peer"):
        for _ in range(20):  # fills the free space, then must look at the tail
            p.write(b"overwrite!")
    assert bytes(buf[layout.HEADER_SIZE:layout.HEADER_SIZE + 16]) == unread
    tail_word[layout.TAIL_WORD] = 0
    assert c.read() == b"unread"


# ---- one thread owning both ends -----------------------------------------------------

def test_same_thread_blocking_write_after_reading_everything_does_not_deadlock():
    # A ring big enough for batched tail stores: reading every message must still
    # make the space visible to a writer in the same thread.
    proc = run_python('''
        import shmring
        from shmring import ByteRingBuffer
        buf = bytearray(ByteRingBuffer.HEADER_SIZE + (1 << 20))
        name = "samethread%d" % __import__("os").getpid()
        with shmring.ShmProducer(name, 1 << 20) as p, shmring.ShmConsumer(name) as c:
            n = 0
            while p.write(bytes(1000)):
                n += 1
            for _ in range(n):
                assert c.read() is not None
            assert p.write(bytes(1000), timeout=None)
            r = ByteRingBuffer(buf, True)
            q = ByteRingBuffer(buf)
            while r.write(bytes(1000)):
                pass
            while q.read() is not None:
                pass
            assert r.write(bytes(1000))
        print("ok")
    ''', timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# ---- interrupt -----------------------------------------------------------------------

def test_interrupt_from_a_signal_handler_in_the_sleeping_thread_does_not_hang():
    proc = run_python('''
        import os, signal, threading, shmring
        name = "sigint%d" % os.getpid()
        with shmring.ShmProducer(name, 64) as p, shmring.ShmConsumer(name) as c:
            signal.signal(signal.SIGUSR1, lambda *a: c.interrupt())
            threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
            try:
                c.read(timeout=None)
                print("not interrupted")
            except shmring.RingInterruptedError:
                print("interrupted")
    ''', timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "interrupted"


@pytest.mark.parametrize("side", ["consumer", "producer"])
def test_interrupt_wakes_a_sleeper_with_no_timeout_and_returns_once_it_is_awake(name, side):
    with ShmProducer(name, 64) as p, ShmConsumer(name) as c:
        if side == "producer":
            while p.write(bytes(8)):
                pass
            call: Callable[[], Any] = lambda: p.write(bytes(8), timeout=None)  # noqa: E731
            target: Any = p
        else:
            call = lambda: c.read(timeout=None)  # noqa: E731
            target = c
        outcome: List[str] = []

        def run() -> None:
            try:
                call()
                outcome.append("returned")
            except RingInterruptedError:
                outcome.append("interrupted")

        t = threading.Thread(target=run, daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while not target.ring._asleep():  # ordering aid: it is asleep now
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.001)
        target.interrupt()
        assert not target.ring._asleep() - {threading.get_ident()}  # awake on return
        t.join(30)  # watchdog only
        assert outcome == ["interrupted"]


# ---- SIGTERM -------------------------------------------------------------------------

def test_a_producer_stopped_by_sigterm_ends_the_stream_and_removes_its_name(name):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent('''
        import sys, shmring
        shmring.exit_on_sigterm()
        with shmring.ShmProducer(sys.argv[1], 64) as p:
            p.write(b"before the stop")
            print("ready", flush=True)
            while True:
                p.write(b"x" * 8, timeout=None)  # blocks once full
    '''), name], env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with ShmConsumer(name, timeout=30) as c:
            assert c.read(timeout=30) == b"before the stop"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 128 + signal.SIGTERM
            while c.read(timeout=30) is not None:  # drains, then the end: not "dead"
                pass
            assert c.at_end
        assert not os.path.exists(dev_shm(name))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- start-up race -------------------------------------------------------------------

def test_consumer_and_producer_started_together_always_meet():
    # Bounded by a count: each round starts both at once (threads, then processes).
    failures: List[str] = []
    for i in range(150):
        n = unique_name("race")
        got: List[Any] = []
        barrier = threading.Barrier(2)

        def consume() -> None:
            barrier.wait()
            try:
                with ShmConsumer(n, timeout=30) as c:
                    got.append(c.read(timeout=30))
            except Exception as e:  # noqa: BLE001 - collected
                got.append(e)

        t = threading.Thread(target=consume)
        t.start()
        barrier.wait()
        try:
            with ShmProducer(n, 64) as p:
                p.write(b"hi%d" % i, timeout=30)
                t.join(60)
        finally:
            t.join(60)
        if got != [b"hi%d" % i]:
            failures.append(f"round {i}: {got!r}")
    assert not failures, failures[:5]
    code = '''
        import sys, shmring
        role, name = sys.argv[1], sys.argv[2]
        if role == "c":
            with shmring.ShmConsumer(name, timeout=60) as c:
                print(c.read(timeout=60))
        else:
            with shmring.ShmProducer(name, 64) as p:
                p.write(b"hello", timeout=60)
                while not p.consumer_attached() and p.readable_bytes():
                    pass
    '''
    for i in range(15):
        n = unique_name("racep")
        c = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), "c", n],
                             env=python_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), "p", n],
                             env=python_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        c_out, c_err = c.communicate(timeout=120)
        p.communicate(timeout=120)
        assert c.returncode == 0 and c_out.strip() == "b'hello'", (i, c_out, c_err)
        assert not os.path.exists(dev_shm(n))


def test_error_classes_are_package_errors():
    for cls in (RingPermissionError, ForeignOwnerError, shmring.RingOSError):
        assert issubclass(cls, ShmRingError) and issubclass(cls, OSError)
    assert stat.S_ISREG(os.stat(__file__).st_mode)


@needs_ofd
def test_a_forked_child_does_not_keep_a_dead_producer_looking_alive(name):
    # The producer forks a long-lived child (multiprocessing's fork start method does
    # that), then dies. The child must not hold the producer's lock.
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent('''
        import os, sys, time, shmring
        p = shmring.ShmProducer(sys.argv[1], 4096)
        p.write(b"from the parent")
        child = os.fork()
        if child == 0:
            time.sleep(600)
            os._exit(0)
        print(child, flush=True)
        time.sleep(600)
    '''), name], env=python_env(), stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        with ShmConsumer(name) as c:
            assert c.read() == b"from the parent"
            proc.kill()
            proc.wait(30)
            with pytest.raises(ProducerDeadError):
                c.read(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child:
            os.kill(child, signal.SIGKILL)


@needs_ofd
def test_closing_a_consumer_releases_its_role_even_while_a_view_lives(name):
    with ShmProducer(name, 64) as p:
        assert p.write(b"kept")
        c = ShmConsumer(name)
        view = c.ring.peek()  # keeps the mapping alive after close()
        assert view is not None and bytes(view) == b"kept"
        c.close()
        assert not p.consumer_attached()
        with ShmConsumer(name):
            assert p.consumer_attached()
        del view


# ---- close from another thread ---------------------------------------------------------

def _blocked(call: Callable[[], Any]) -> Any:
    outcome: List[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as e:  # noqa: BLE001 - inspected by the test
            outcome.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, outcome


def _wait_asleep(ring: Any, t: threading.Thread) -> None:
    deadline = time.monotonic() + 30
    # Ordering aid: the call is asleep now (registered by the pure-Python sleep, or
    # inside the native blocking lookup).
    while not ring._asleep():
        assert time.monotonic() < deadline and t.is_alive()
        time.sleep(0.001)


@pytest.mark.parametrize("what", ["read", "read_view", "write", "read_frame", "frame_write"])
def test_close_from_another_thread_wakes_the_blocked_call_cleanly(name, what):
    from shmring import FrameReader, FrameWriter, StreamClosedError
    if what in ("read", "read_view", "write"):
        p, c = ShmProducer(name, 64), ShmConsumer(name)
        if what == "write":
            while p.write(bytes(8)):
                pass
            obj, ring, call = p, p.ring, (lambda: p.write(bytes(8), timeout=None))
        elif what == "read":
            obj, ring, call = c, c.ring, (lambda: c.read(timeout=None))
        else:
            def call() -> Any:
                with c.read_view(timeout=None) as v:
                    return v
            obj, ring = c, c.ring
        others = [p, c]
    elif what == "read_frame":
        w = FrameWriter(name, 4096, caps="video/x-raw,format=GRAY8,width=4,height=2")
        r = FrameReader(name, timeout=0)
        obj, ring, call = r, r._consumer.ring, (lambda: r.read_frame(timeout=None))
        others = [r, w]
    else:
        w = FrameWriter(name, 256, caps="video/x-raw,format=GRAY8,width=4,height=2")
        c = ShmConsumer(name)
        while w.write(bytes(8), timeout=0):
            pass
        obj, ring, call = w, w.producer.ring, (lambda: w.write(bytes(8), timeout=None))
        others = [c, w]
    try:
        t, outcome = _blocked(call)
        _wait_asleep(ring, t)
        obj.close()
        t.join(30)  # watchdog only
        assert not t.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], StreamClosedError), outcome
        assert obj.closed
    finally:
        for o in others:
            o.close()


def test_close_from_a_signal_handler_inside_the_blocked_call():
    proc = run_python('''
        import os, signal, threading, shmring
        name = "sigclose%d" % os.getpid()
        with shmring.ShmProducer(name, 64) as p:
            c = shmring.ShmConsumer(name)
            signal.signal(signal.SIGUSR1, lambda *a: c.close())
            threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
            try:
                c.read(timeout=None)
                print("returned")
            except shmring.StreamClosedError:
                print("closed", c.closed, p.consumer_attached())
    ''', timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "closed True False"


def test_a_producer_never_replaces_a_segment_whose_size_is_not_a_multiple_of_8(name):
    image = bytearray(layout.HEADER_SIZE + 64 + 4)
    ByteRingBuffer.initialize(image, 64)  # a "dead" ring of an impossible size
    fd = os.open(dev_shm(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.write(fd, bytes(image))
    os.close(fd)
    with pytest.raises(IncompatibleSegmentError, match=f"{layout.HEADER_SIZE + 68} is not a multiple of 8") as e:
        ShmProducer(name, 64)
    assert e.value.field == "size"
    assert os.path.getsize(dev_shm(name)) == layout.HEADER_SIZE + 68
