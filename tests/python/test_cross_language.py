"""C++ and Python on the same ring at the same time (tests/tools/shmring_peer.cpp).

Both processes run concurrently: the producer waits until the consumer has
attached (``--wait-consumer-ms`` / the consumer's open timeout), and the ring is
far smaller than the data, so neither can finish without the other.
"""
from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import pytest

from conftest import peer_path
from peer_format import check, fill, make_pool
from helpers import python_env, wait_until
from shmring import ProducerDeadError, ShmConsumer, ShmProducer

COUNT = 100_000
MAX_SIZE = 2000


def start_peer(*args: str) -> subprocess.Popen:
    return subprocess.Popen([peer_path(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"shmring_peer failed ({proc.returncode}): {err}{out}"
    return out


def consume_all(name: str, count: int, zero_copy: bool) -> int:
    """Reads and verifies ``count`` messages, then expects end of stream; returns bytes."""
    total = 0
    with ShmConsumer(name, timeout=30) as c:
        for seq in range(count):
            if zero_copy:
                with c.read_view(timeout=30) as view:
                    assert view is not None, f"stream ended before message {seq}"
                    problem = check(view, seq)
                    total += len(view)
            else:
                msg = c.read(timeout=30)
                assert msg is not None, f"stream ended before message {seq}"
                problem = check(msg, seq)
                total += len(msg)
            assert problem is None, problem
        assert c.read(timeout=30) is None and c.at_end
    return total


def produce_all(name: str, count: int, max_size: int, seed: int, capacity: int,
                min_size: int = 0, start_index: int = 0) -> int:
    pool = make_pool(max_size)
    rng = random.Random(seed)
    total = 0
    with ShmProducer(name, capacity, start_index=start_index) as p:
        assert wait_until(p.consumer_attached, 30), "the C++ consumer never attached"
        for seq in range(count):
            n = rng.randint(min_size, max_size)
            with p.reserve(n, timeout=30) as view:
                fill(view, seq, pool)
            total += n
    return total


def test_cpp_producer_to_python_consumer_100k(ring_name):
    proc = start_peer("produce", ring_name, "--count", str(COUNT), "--seed", "7",
                      "--max-size", str(MAX_SIZE), "--capacity", "65536",
                      "--wait-consumer-ms", "30000")
    try:
        total = consume_all(ring_name, COUNT, zero_copy=False)
    finally:
        out = finish(proc)
    assert f"produced {COUNT} messages, {total} bytes" in out


def test_python_producer_to_cpp_consumer_100k(ring_name):
    proc = start_peer("consume", ring_name, "--count", str(COUNT), "--timeout-ms", "30000")
    try:
        total = produce_all(ring_name, COUNT, MAX_SIZE, seed=11, capacity=65536)
    finally:
        out = finish(proc)
    assert f"consumed {COUNT} messages, {total} bytes" in out


def test_cpp_producer_to_python_consumer_across_the_index_wrap(ring_name):
    """head/tail start 64 KiB short of 2^32, so both sides wrap within the first laps."""
    start = (1 << 32) - 65536
    proc = start_peer("produce", ring_name, "--count", "20000", "--seed", "3", "--max-size",
                      "300", "--capacity", "4096", "--start-index", str(start),
                      "--wait-consumer-ms", "30000")
    try:
        total = consume_all(ring_name, 20000, zero_copy=True)
    finally:
        out = finish(proc)
    assert f"produced 20000 messages, {total} bytes" in out


def test_python_producer_to_cpp_consumer_across_the_index_wrap(ring_name):
    proc = start_peer("consume", ring_name, "--count", "20000", "--timeout-ms", "30000")
    try:
        total = produce_all(ring_name, 20000, 300, seed=5, capacity=4096,
                            start_index=(1 << 32) - 65536)
    finally:
        out = finish(proc)
    assert f"consumed 20000 messages, {total} bytes" in out


# More than 4 GiB through one ring: the 32-bit indices really wrap (at least once)
# with real traffic. Large messages and zero-copy views keep this to seconds.
BIG_MESSAGES = 1100
BIG_MIN, BIG_MAX = (4 << 20) - 4096, 4 << 20  # ~4 MiB each: ~4.6 GB in total


def test_cpp_producer_to_python_consumer_over_4_gib(ring_name):
    proc = start_peer("produce", ring_name, "--count", str(BIG_MESSAGES), "--seed", "9",
                      "--min-size", str(BIG_MIN), "--max-size", str(BIG_MAX),
                      "--capacity", str(32 << 20), "--wait-consumer-ms", "30000")
    try:
        total = consume_all(ring_name, BIG_MESSAGES, zero_copy=True)
    finally:
        out = finish(proc, timeout=240)
    assert total > (1 << 32)
    assert f"produced {BIG_MESSAGES} messages, {total} bytes" in out


def test_python_producer_to_cpp_consumer_over_4_gib(ring_name):
    proc = start_peer("consume", ring_name, "--count", str(BIG_MESSAGES), "--timeout-ms",
                      "60000")
    try:
        total = produce_all(ring_name, BIG_MESSAGES, BIG_MAX, seed=13, capacity=32 << 20,
                            min_size=BIG_MIN)
    finally:
        out = finish(proc, timeout=240)
    assert total > (1 << 32)
    assert f"consumed {BIG_MESSAGES} messages, {total} bytes" in out


# ---- liveness across languages: SIGKILL, reported by the other side ------------------

def test_cpp_producer_killed_is_reported_dead_by_a_python_consumer(ring_name):
    # Far more messages than the ring holds: the C++ producer blocks, alive, until killed.
    proc = start_peer("produce", ring_name, "--count", "1000000", "--seed", "1",
                      "--max-size", "100", "--capacity", "4096", "--wait-consumer-ms", "30000")
    try:
        with ShmConsumer(ring_name, timeout=30) as c:
            for seq in range(50):
                msg = c.read(timeout=30)
                assert msg is not None and check(msg, seq) is None
            assert proc.poll() is None  # alive: nothing reported so far
            proc.kill()
            proc.wait(30)
            with pytest.raises(ProducerDeadError):
                while c.read(timeout=30) is not None:  # drains what was written first
                    pass
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_python_producer_killed_is_reported_dead_by_a_cpp_consumer(ring_name):
    code = textwrap.dedent('''
        import sys, time
        from peer_format import fill, make_pool
        from shmring import ShmProducer
        with ShmProducer(sys.argv[1], 4096) as p:
            with p.reserve(40, timeout=30) as view:  # message 0 in the peer's format
                fill(view, 0, make_pool(100))
            print("written", flush=True)
            time.sleep(600)
    ''')
    producer = subprocess.Popen([sys.executable, "-c", code, ring_name], env=python_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    consumer = None
    try:
        consumer = start_peer("consume", ring_name, "--count", "2", "--timeout-ms", "30000",
                              "--no-eos")
        assert producer.stdout is not None
        assert producer.stdout.readline().strip() == "written", producer.stderr
        producer.kill()
        producer.wait(30)
        out, err = consumer.communicate(timeout=60)
        assert consumer.returncode == 1, out + err
        assert "message 1: producer dead" in err, err  # the first one was delivered
    finally:
        for proc in (producer, consumer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
