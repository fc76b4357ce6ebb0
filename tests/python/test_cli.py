"""``python3 -m shmring`` (ls / inspect / rm / cat) against rings made by the Python
producer and against segments planted on disk, run as a real subprocess."""
from __future__ import annotations

import itertools
import json
import mmap
import os
import struct
import subprocess
import sys
import time
from typing import Dict, List, Optional

import pytest

from conftest import _SOURCE_ROOT, unique_name

import shmring
from shmring import _locks
from shmring import layout as L

SHM = "/dev/shm"


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(_SOURCE_ROOT, "python") + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "shmring", *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)
    # User errors are one clear line, never a Python traceback.
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def plant(name: str, *, magic: int = L.MAGIC, capacity: int = 1024, version: int = L.VERSION,
          header_size: int = L.HEADER_SIZE, profile: int = 0,
          generation: int = 0x1122334455667788, max_receivers: int = 1,
          head: int = 0, tail: int = 0, producer_flags: int = 0, producer_pid: int = 0,
          consumer_flags: int = 0, consumer_pid: int = 0, dropped: int = 0,
          size: Optional[int] = None, data: bytes = b"") -> str:
    """Writes a segment file directly (not a live ring: struct is fine here)."""
    header = bytearray(L.HEADER_SIZE)
    for offset, fmt, value in (
            (L.CAPACITY_OFFSET, "<I", capacity), (L.MAGIC_OFFSET, "<I", magic),
            (L.VERSION_OFFSET, "<H", version), (L.HEADER_SIZE_OFFSET, "<H", header_size),
            (L.PROFILE_OFFSET, "<I", profile), (L.GENERATION_OFFSET, "<Q", generation),
            (L.MAX_RECEIVERS_OFFSET, "<I", max_receivers), (L.HEAD_OFFSET, "<I", head),
            (L.TAIL_OFFSET, "<I", tail), (L.PRODUCER_FLAGS_OFFSET, "<I", producer_flags),
            (L.PRODUCER_PID_OFFSET, "<I", producer_pid),
            (L.CONSUMER_FLAGS_OFFSET, "<I", consumer_flags),
            (L.CONSUMER_PID_OFFSET, "<I", consumer_pid), (L.DROPPED_OFFSET, "<Q", dropped)):
        struct.pack_into(fmt, header, offset, value)
    blob = bytes(header)
    area = bytearray(capacity if size is None else max(0, size - L.HEADER_SIZE))
    area[: len(data)] = data[: len(area)]
    blob += bytes(area)
    if size is not None:
        blob = blob[:size]
    path = os.path.join(SHM, name)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    return path


def hold(name: str, *, producer: bool = True, consumer: bool = False) -> int:
    """Takes the liveness locks of a planted ring as a live producer (byte 0) and
    consumer (byte 1) would; returns the fd holding them (closed by the names fixture
    or the test: closing it is that peer dying)."""
    fd = os.open(os.path.join(SHM, name), os.O_RDWR)
    if producer:
        assert _locks.try_lock(fd, _locks.PRODUCER_BYTE)
    if consumer:
        assert _locks.try_lock(fd, _locks.CONSUMER_BYTE)
    return fd


@pytest.fixture
def names() -> List[str]:
    """Unique ring names; anything left under them in /dev/shm is removed afterwards."""

    class Names(list):
        def new(self, prefix: str = "cli") -> str:
            name = unique_name(prefix)
            self.append(name)
            return name

    out = Names()
    yield out
    for name in out:
        try:
            os.unlink(os.path.join(SHM, name))
        except FileNotFoundError:
            pass


def ls_json(all_: bool = False) -> Dict[str, dict]:
    proc = run_cli("ls", "--json", *(["--all"] if all_ else []))
    assert proc.returncode == 0, proc.stderr
    return {entry["name"]: entry for entry in json.loads(proc.stdout)}


def inspect_json(name: str) -> dict:
    proc = run_cli("inspect", "--json", name)
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- ls

def test_ls_shows_python_producer_ring(names):
    name = names.new()
    with shmring.ShmProducer(name, 4096) as producer:
        assert producer.write(b"hello")           # record of 16 bytes
        assert producer.write(bytes(100))          # record of 104 bytes
        entry = ls_json()[name]
        assert entry["state"] == "waiting"         # producer alive, nobody attached
        assert entry["producer_pid"] == os.getpid() and entry["producer_alive"] is True
        assert entry["consumer_pid"] == 0
        assert entry["capacity"] == 4096 and entry["profile_name"] == "opaque"
        assert entry["used"] == 16 + 104 and entry["free"] == 4096 - 120
        assert entry["dropped"] == 0
        text = run_cli("ls")
        assert text.returncode == 0
        line = next(l for l in text.stdout.splitlines() if l.startswith(name + " "))
        assert f"{os.getpid()} alive" in line and "waiting" in line and "4.0 KiB" in line
        assert text.stdout.splitlines()[0].split() == [
            "NAME", "PROFILE", "CAPACITY", "FILL", "PRODUCER", "CONSUMER", "STATE", "DROPPED"]

        with shmring.ShmConsumer(name):
            entry = ls_json()[name]
            assert entry["state"] == "live"
            assert entry["consumer_pid"] == os.getpid()
            assert "ATTACHED" in entry["consumer_flags_decoded"]
    assert name not in ls_json()  # close() unlinked it


def test_ls_states_of_planted_rings(names):
    closed, stale, live, gone_consumer, namespaced = (names.new() for _ in range(5))
    plant(closed, producer_flags=L.PRODUCER_CLOSED, producer_pid=os.getpid(), head=64)
    plant(stale, producer_pid=dead_pid(), head=32, tail=8, dropped=7)
    plant(live, producer_pid=os.getpid(), consumer_flags=L.CONSUMER_ATTACHED,
          consumer_pid=os.getppid())
    plant(gone_consumer, producer_pid=os.getpid(), consumer_flags=L.CONSUMER_ATTACHED,
          consumer_pid=dead_pid())
    # A producer in a pid namespace records pid 1, which is alive here: its lock
    # says it is gone, and the lock decides.
    plant(namespaced, producer_pid=1)
    fds = [hold(live, consumer=True), hold(gone_consumer)]
    try:
        listing = ls_json()
    finally:
        for fd in fds:
            os.close(fd)
    assert listing[namespaced]["state"] == "stale"
    assert listing[closed]["state"] == "closed" and listing[closed]["used"] == 64
    assert listing[stale]["state"] == "stale" and listing[stale]["producer_alive"] is False
    assert listing[stale]["used"] == 24 and listing[stale]["dropped"] == 7
    assert listing[live]["state"] == "live"
    assert listing[gone_consumer]["state"] == "waiting"  # its consumer died
    text = run_cli("ls").stdout
    stale_line = next(l for l in text.splitlines() if l.startswith(stale + " "))
    assert "dead" in stale_line and "stale" in stale_line and stale_line.split()[-1] == "7"


def test_ls_skips_foreign_segments_unless_all(names):
    foreign, tiny, empty, uninit, badcap = (names.new() for _ in range(5))
    plant(foreign, magic=0x12345678)
    plant(tiny, size=20)
    plant(empty, size=0)
    plant(uninit, magic=0)
    plant(badcap, capacity=1000)
    listing = ls_json()
    assert not {foreign, tiny, empty, uninit} & set(listing)
    assert listing[badcap]["state"] == "invalid"  # carries the magic: listed, flagged
    assert listing[badcap]["error_field"] == "capacity"
    everything = ls_json(all_=True)
    assert everything[foreign]["state"] == "foreign"
    assert everything[foreign]["error_field"] == "magic"
    # Empty, or ring-sized with magic 0: a producer between shm_open and its magic store.
    assert everything[empty]["state"] == "uninitialized"
    assert everything[empty]["error_field"] == "size"
    assert everything[uninit]["state"] == "uninitialized"
    # A size no ring can have (a POSIX semaphore is 32 bytes): someone else's segment.
    assert everything[tiny]["state"] == "foreign"
    assert everything[tiny]["error_field"] == "size"
    text = run_cli("ls", "--all").stdout
    assert any(l.startswith(foreign + " ") and "foreign (magic)" in l for l in text.splitlines())


# --------------------------------------------------------------------------- inspect

def test_inspect_every_field(names):
    name = names.new()
    with shmring.ShmProducer(name, 1000, profile=L.PROFILE_GST_FRAMING) as producer:
        producer.write(b"x" * 20)
        producer.count_dropped(5)
        proc = run_cli("inspect", name)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        for field in ("head", "tail", "capacity", "magic", "version", "header_size", "profile",
                      "generation", "producer_flags", "producer_pid", "consumer_flags",
                      "consumer_pid", "dropped", "reserved", "used", "state", "max_receivers",
                      "consumer_mode", "skipped"):
            assert f"  {field} " in out, field
        assert f"0x{producer.generation:016x}" in out
        assert "0x474e5253 'SRNG'" in out
        assert "1 (gst)" in out
        assert "1024 (1.0 KiB)" in out  # 1000 rounded up
        assert f"{os.getpid()} (alive)" in out
        data = inspect_json(name)
        assert data["generation"] == producer.generation
        assert data["generation_hex"] == f"0x{producer.generation:016x}"
        assert data["dropped"] == 5 and data["head"] == 24 and data["tail"] == 0
        assert data["version"] == 2 and data["header_size"] == 8192 and data["profile"] == 1
        assert data["max_receivers"] == 1 and data["consumer_mode"] == 0
        assert data["reserved_zero"] is True and data["state"] == "waiting"


def test_inspect_decodes_flags(names):
    name = names.new()
    plant(name, producer_flags=L.PRODUCER_CLOSED | L.PRODUCER_MEMBARRIER | 0x100,
          producer_pid=os.getpid(), consumer_flags=L.CONSUMER_ATTACHED | L.CONSUMER_WAITING,
          consumer_pid=dead_pid(), generation=0x0123456789ABCDEF)
    proc = run_cli("inspect", name)
    assert proc.returncode == 0
    assert "0x00000105 CLOSED|MEMBARRIER|0x100" in proc.stdout
    assert "0x00000003 ATTACHED|WAITING" in proc.stdout
    assert "(dead)" in proc.stdout
    assert "0x0123456789abcdef" in proc.stdout
    assert "state           closed" in proc.stdout


def test_inspect_does_not_write_attach_or_unlink(names):
    name = names.new()
    path = plant(name, producer_pid=os.getpid(), head=16, data=b"\x05\0\0\0hello")
    before = open(path, "rb").read()
    mtime = os.stat(path).st_mtime_ns
    for args in (("inspect", name), ("inspect", "--json", name), ("ls",), ("ls", "--all")):
        assert run_cli(*args).returncode == 0
    assert open(path, "rb").read() == before
    assert os.stat(path).st_mtime_ns == mtime
    # In-process: reading a header registers nothing with multiprocessing's resource
    # tracker (which would unlink the segment at exit on Python < 3.13).
    code = ("import sys; from shmring import cli; rc = cli.main(['inspect', %r]); "
            "assert rc == 0; assert 'multiprocessing.resource_tracker' not in sys.modules; "
            "assert 'multiprocessing.shared_memory' not in sys.modules") % name
    env = dict(os.environ, PYTHONPATH=os.path.join(_SOURCE_ROOT, "python"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL)
    assert os.path.exists(path)


@pytest.mark.parametrize("kwargs, field", [
    ({"magic": 0x12345678}, "magic"),
    ({"magic": 0}, "magic"),
    ({"version": 1}, "version"),
    ({"max_receivers": 17}, "max_receivers"),
    ({"header_size": 64}, "header_size"),
    ({"capacity": 1000}, "capacity"),
    ({"capacity": 32}, "capacity"),
    ({"capacity": 4096, "size": L.HEADER_SIZE + 1024}, "size"),
    ({"capacity": 1024, "size": L.HEADER_SIZE + 1024 + 4}, "size"),  # not a multiple of 8
    ({"size": 100}, "size"),
])
def test_inspect_refuses_bad_segments_naming_the_field(names, kwargs, field):
    name = names.new()
    plant(name, **kwargs)
    proc = run_cli("inspect", name)
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("python3 -m shmring inspect: ")
    assert f": {field}: " in err, err
    assert json.loads(run_cli("inspect", "--json", name).stdout)["error_field"] == field


def test_inspect_missing_and_bad_names():
    proc = run_cli("inspect", unique_name("nope"))
    assert proc.returncode == 1 and "no ring named" in proc.stderr
    assert "No such file or directory" in proc.stderr
    for bad in (".hidden", "-x", "a" * 31, "a/b", "sp ace"):
        proc = run_cli("inspect", "--", bad)
        assert proc.returncode == 1, bad
        assert "invalid ring name" in proc.stderr


def test_inspect_accepts_slash_and_dev_shm_forms(names):
    name = names.new()
    plant(name, producer_pid=os.getpid())
    for form in (name, "/" + name, "/dev/shm/" + name):
        assert run_cli("inspect", form).returncode == 0


def test_usage_errors_are_argparse_exit_2():
    assert run_cli().returncode == 2
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("cat", "x", "--count", "0").returncode == 2
    proc = run_cli("--help")
    assert proc.returncode == 0 and "inspect" in proc.stdout and "rm" in proc.stdout


# --------------------------------------------------------------------------- rm

def test_rm_refuses_live_producer_then_force(names):
    name = names.new()
    producer = shmring.ShmProducer(name, 4096)
    try:
        proc = run_cli("rm", name)
        assert proc.returncode == 1
        assert f"producer (pid {os.getpid()} as it recorded it) is alive" in proc.stderr
        assert "--force" in proc.stderr
        assert os.path.exists(os.path.join(SHM, name))
        proc = run_cli("rm", "--force", name)
        assert proc.returncode == 0 and f"removed {name}" in proc.stdout
        assert not os.path.exists(os.path.join(SHM, name))
        assert producer.write(b"still mapped")  # the producer keeps its mapping
    finally:
        producer.close()  # must not fail (or unlink anything else) after a forced rm
    assert not os.path.exists(os.path.join(SHM, name))


def test_rm_closed_stale_and_uninitialized(names):
    closed, stale, uninit, tiny, unknown = (names.new() for _ in range(5))
    plant(closed, producer_flags=L.PRODUCER_CLOSED, producer_pid=os.getpid())
    plant(stale, producer_pid=dead_pid(), consumer_flags=L.CONSUMER_ATTACHED,
          consumer_pid=os.getpid())
    plant(uninit, magic=0)
    plant(tiny, size=0)  # between shm_open and ftruncate
    # Young (not yet debris) however long the CLI takes to start on a loaded machine:
    # their last change is an hour ahead (the CLI's age is now minus the later of
    # st_ctime and st_mtime; utime itself sets st_ctime to now).
    for young in (uninit, tiny):
        ahead = time.time() + 3600
        os.utime(os.path.join(SHM, young), (ahead, ahead))
    plant(unknown, producer_pid=0)  # pid 0, but its lock is held: alive
    unknown_fd = hold(unknown)
    proc = run_cli("rm", closed, stale)
    assert proc.returncode == 0, proc.stderr
    assert f"removed {closed} (closed)" in proc.stdout
    assert f"removed {stale} (stale)" in proc.stdout
    for young in (uninit, tiny):
        proc = run_cli("rm", young)
        assert proc.returncode == 1 and "a producer may be creating it" in proc.stderr
        assert os.path.exists(os.path.join(SHM, young))
        assert run_cli("rm", "--force", young).returncode == 0
    proc = run_cli("rm", unknown)
    os.close(unknown_fd)
    assert proc.returncode == 1 and "(pid 0 as it recorded it) is alive" in proc.stderr
    assert run_cli("rm", "-f", unknown).returncode == 0
    for n in (closed, stale, uninit, tiny, unknown):
        assert not os.path.exists(os.path.join(SHM, n))


def test_abandoned_segments_are_listed_and_removable(names):
    uninit, tiny, sem = names.new(), names.new(), names.new()
    plant(uninit, magic=0)
    plant(tiny, size=0)
    plant(sem, size=32)  # the size of a POSIX semaphore: never a ring, never "abandoned"
    time.sleep(5.3)  # PROTOCOL.md: uninitialized and unchanged for 5 s = abandoned debris
    everything = ls_json(all_=True)
    assert everything[uninit]["state"] == "abandoned"
    assert everything[tiny]["state"] == "abandoned"
    proc = run_cli("inspect", tiny)
    assert proc.returncode == 1 and "not initialized (abandoned)" in proc.stderr
    proc = run_cli("rm", uninit, tiny)
    assert proc.returncode == 0, proc.stderr
    assert f"removed {uninit} (abandoned)" in proc.stdout
    assert everything[sem]["state"] == "foreign"
    proc = run_cli("rm", sem)
    assert proc.returncode == 1 and os.path.exists(os.path.join(SHM, sem))


def test_zombie_producer_counts_as_dead(names):
    name = names.new()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        plant(name, producer_pid=zombie.pid)
        assert ls_json()[name]["state"] == "stale"
        assert run_cli("rm", name).returncode == 0
    finally:
        zombie.wait()


def test_rm_refuses_non_shmring_segments_even_forced(names):
    foreign = names.new()
    plant(foreign, magic=0x00C0FFEE)
    for args in ((foreign,), ("--force", foreign)):
        proc = run_cli("rm", *args)
        assert proc.returncode == 1
        assert "not a shmring segment" in proc.stderr and "magic" in proc.stderr
    assert os.path.exists(os.path.join(SHM, foreign))


def test_rm_missing_reports_and_continues(names):
    ok = names.new()
    plant(ok, producer_pid=dead_pid())
    missing = unique_name("nope")
    proc = run_cli("rm", missing, ok)
    assert proc.returncode == 1
    assert "no ring named" in proc.stderr and f"removed {ok}" in proc.stdout
    assert not os.path.exists(os.path.join(SHM, ok))


# --------------------------------------------------------------------------- cat

def _cat(*args: str, timeout: float = 30.0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.path.join(_SOURCE_ROOT, "python"))
    return subprocess.Popen([sys.executable, "-m", "shmring", "cat", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_attached(producer, proc: subprocess.Popen, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not producer.consumer_attached():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "cat never attached"
        time.sleep(0.01)


def test_cat_count_profile0(names):
    name = names.new()
    with shmring.ShmProducer(name, 4096) as producer:
        for i in range(5):
            assert producer.write(bytes([i]) * (i * 10))
        proc = run_cli("cat", name, "--count", "3", "--preview", "4")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines == ["#0 len=0", "#1 len=10 01 01 01 01 ...", "#2 len=20 02 02 02 02 ..."]
        assert producer.readable_bytes() == 8 * ((4 + 30 + 7) // 8) + 8 * ((4 + 40 + 7) // 8)
        assert not producer.consumer_attached()  # cat detached on exit


def test_cat_until_end_of_stream(names):
    name = names.new()
    producer = shmring.ShmProducer(name, 4096)
    proc = _cat(name, "--timeout", "20")
    try:
        _wait_attached(producer, proc)
        for i in range(4):
            assert producer.write(b"msg%d" % i, timeout=5)
    finally:
        producer.close()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [l.split()[1] for l in out.splitlines()] == ["len=4"] * 4
    assert "6d 73 67 33" in out  # "msg3"
    assert "end of stream after 4 messages" in err


def test_cat_profile1_decodes_caps_and_buffers(names):
    name = names.new()
    caps = "video/x-raw, format=(string)GRAY8, width=(int)4, height=(int)2"
    with shmring.FrameWriter(name, 4096, caps=caps) as writer:
        assert writer.write(bytes(range(8)), pts=1_000_000_000, duration=33_333_333,
                            offset=7, flags=0x40)
        assert writer.write(bytes(8), pts=1_033_333_333)
        proc = run_cli("cat", name, "--count", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("#0 len=") and "CAPS " + caps in lines[0]
    assert "BUFFER pts=1.000000000 dts=none dur=0.033333333" in lines[1]
    assert "flags=0x40" in lines[1] and "offset=7" in lines[1] and "body=8" in lines[1]
    assert "00 01 02 03 04 05 06 07" in lines[1]
    assert "age=" in lines[1]  # send_time_ns is set: shown as age
    assert "pts=1.033333333" in lines[2]


def test_cat_errors(names):
    missing = unique_name("nope")
    proc = run_cli("cat", missing, "--timeout", "0.3")
    assert proc.returncode == 1 and "appeared within 0.3 s" in proc.stderr
    foreign = names.new()
    plant(foreign, magic=0x12345678)
    proc = run_cli("cat", foreign, "--timeout", "1")
    assert proc.returncode == 1 and "magic" in proc.stderr
    badver = names.new()
    plant(badver, version=9)
    proc = run_cli("cat", badver, "--timeout", "1")
    assert proc.returncode == 1 and "version" in proc.stderr
    busy = names.new()
    with shmring.ShmProducer(busy, 4096) as producer, shmring.ShmConsumer(busy):
        proc = run_cli("cat", busy, "--timeout", "1")
        assert proc.returncode == 1 and "already has a consumer" in proc.stderr
        assert producer.consumer_attached()
    idle = names.new()
    with shmring.ShmProducer(idle, 4096) as producer:
        producer.write(b"one")
        proc = run_cli("cat", idle, "--count", "2", "--timeout", "0.5")
        assert proc.returncode == 1
        assert "#0 len=3" in proc.stdout and "no message within 0.5 s (1 received)" in proc.stderr


def test_cat_dead_producer(names):
    name = names.new()
    plant(name, producer_pid=dead_pid(), head=16, data=b"\x05\0\0\0hello")
    proc = run_cli("cat", name, "--timeout", "5")
    assert proc.returncode == 1
    assert "#0 len=5 68 65 6c 6c 6f" in proc.stdout
    assert "died" in proc.stderr or "dead" in proc.stderr.lower()


# --------------------------------------------------------------------------- fan-out

def test_ls_and_inspect_show_each_receiver(names):
    """A ring with max_receivers 3: a lossless receiver that read 2 messages, a live one
    that read nothing; ls and inspect show each with slot, pid, mode, position, lag and
    skipped."""
    name = names.new("fan")
    with shmring.ShmProducer(name, 4096, max_receivers=3) as producer:
        lossless = shmring.ShmConsumer(name)
        live = shmring.ShmConsumer(name, mode="live")
        for _ in range(3):
            assert producer.write(bytes(100))     # records of 104 bytes
        assert lossless.read() is not None and lossless.read() is not None
        lossless.ring.flush()
        entry = ls_json()[name]
        receivers = {r["slot"]: r for r in entry["receivers"]}
        assert len(receivers) == 3
        assert receivers[0]["pid"] == os.getpid() and receivers[0]["mode"] == "lossless"
        assert receivers[0]["position"] == 208 and receivers[0]["lag"] == 104
        assert receivers[1]["mode"] == "live" and receivers[1]["lag"] == 312
        assert receivers[1]["skipped"] == 0 and receivers[1]["attached"] is True
        assert receivers[2]["attached"] is False
        # Our ring's line and its receiver lines only (/dev/shm may hold other rings).
        lines = run_cli("ls").stdout.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(name + " "))
        own = [lines[at]] + list(itertools.takewhile(lambda line: line.startswith(" "),
                                                     lines[at + 1:]))
        text = "\n".join(own)
        assert "2/3 receivers" in text
        assert f"slot 0: pid {os.getpid()} alive, lossless, position 208, lag 104 B" in text
        assert f"slot 1: pid {os.getpid()} alive, live, position 0, lag 312 B" in text
        ours = text.split(name, 1)[1].split("\n")  # our ring's line, then its slot lines
        ours = [ours[0]] + [line for line in itertools.takewhile(
            lambda line: line.startswith(" "), ours[1:])]  # (other rings may be listed)
        assert not any("slot 2:" in line for line in ours)
        shown = run_cli("inspect", name).stdout
        assert "slot 2: free, lossless" in shown
        assert f"slot 1: pid {os.getpid()} alive, live" in shown
        lossless.close()
        live.close()


def test_a_claimed_slot_is_not_attached_until_its_attached_flag_is_set(names):
    """A receiver claims its slot (role byte 1 + slot) before it picks its start and sets
    ATTACHED. In between, the snapshot says claimed and not attached, ls does not count
    it among the receivers and inspect shows it as attaching, not free; once ATTACHED is
    set it is attached."""
    name = names.new("claim")
    with shmring.ShmProducer(name, 4096, max_receivers=2):
        fd = os.open(os.path.join(SHM, name), os.O_RDWR)
        try:
            # What ShmConsumer does first: the role byte of slot 0, nothing written yet.
            assert _locks.try_lock(fd, _locks.CONSUMER_BYTE + 0)
            slot = shmring.HeaderSnapshot.read(name).receivers[0]
            assert slot.claimed and not slot.attached and not slot.dead
            entry = {r["slot"]: r for r in ls_json()[name]["receivers"]}[0]
            assert entry["claimed"] is True and entry["attached"] is False
            lines = run_cli("ls").stdout.splitlines()
            at = next(i for i, line in enumerate(lines) if line.startswith(name + " "))
            assert "0/2 receivers" in lines[at]
            assert "slot 0: attaching" in lines[at + 1]
            assert "slot 0: attaching, lossless" in run_cli("inspect", name).stdout
            # The receiver's last step of attaching (as SetConsumerAttached): ATTACHED.
            with mmap.mmap(fd, L.HEADER_SIZE) as header:
                words = memoryview(header).cast("I")
                words[L.slot_word(0, L.SLOT_FLAGS)] |= L.CONSUMER_ATTACHED
                words.release()
            slot = shmring.HeaderSnapshot.read(name).receivers[0]
            assert slot.claimed and slot.attached
        finally:
            os.close(fd)
        slot = shmring.HeaderSnapshot.read(name).receivers[0]
        assert not slot.claimed and not slot.attached and slot.dead
