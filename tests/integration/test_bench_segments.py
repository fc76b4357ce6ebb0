"""bench/shm_segments.py: the benchmarks remove the shm areas a killed shmsink sender
left in /dev/shm, and only those of the processes they started."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import pytest

ROOT = os.environ.get("SHMRING_SOURCE_ROOT",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from shm_segments import child_pids, remove_shmsink_segments, shmsink_segments  # noqa: E402


@pytest.fixture
def shm_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="shmseg") as d:
        yield d


def touch(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb"):
        pass
    return path


def test_only_the_areas_of_the_given_pid_are_removed(shm_dir):
    # shmsink's names: "shmpipe.%5d.%5d" (pid, area number).
    ours = [touch(shm_dir, "shmpipe.  681.    0"), touch(shm_dir, "shmpipe.  681.    1")]
    others = [touch(shm_dir, name) for name in (
        "shmpipe.10681.    0",     # another pid ending in 681
        "shmpipe. 6810.    0",     # another pid starting with 681
        "shmpipe.  681.x",         # not an area number
        "shmpipe.681.0",           # not shmsink's layout
        "kb681_0")]                # a ring of the benchmarks
    assert shmsink_segments(681, shm_dir) == sorted(ours)
    assert remove_shmsink_segments(681, shm_dir) == sorted(ours)
    assert sorted(os.listdir(shm_dir)) == sorted(os.path.basename(p) for p in others)
    assert remove_shmsink_segments(681, shm_dir) == []
    assert shmsink_segments(1234567, shm_dir) == []  # wider than 5 columns: none here


def test_wide_pids_are_printed_in_full(shm_dir):
    path = touch(shm_dir, "shmpipe.1234567.    0")
    assert shmsink_segments(1234567, shm_dir) == [path]
    assert shmsink_segments(234567, shm_dir) == []


def test_child_pids_finds_the_command_a_wrapper_started():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        assert child.pid in child_pids(os.getpid())
    finally:
        child.communicate(b"")
    assert child.pid not in child_pids(os.getpid())


@pytest.mark.skipif(shutil.which("gst-launch-1.0") is None, reason="no gst-launch-1.0")
def test_a_killed_shmsink_leaves_an_area_that_is_then_removed():
    """A real shmsink, killed: its area is still in /dev/shm under the name
    shmsink_segments looks for, and remove_shmsink_segments removes it."""
    probe = subprocess.run(["gst-inspect-1.0", "shmsink"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        pytest.skip("no shmsink (gst-plugins-bad)")
    sock = os.path.join(tempfile.gettempdir(), f"shmseg{os.getpid()}.sock")
    sender = subprocess.Popen(
        ["gst-launch-1.0", "-q", "videotestsrc", "is-live=true", "!", "shmsink",
         f"socket-path={sock}", "shm-size=1048576", "wait-for-connection=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        while not os.path.exists(sock):  # shmsink makes its area, then the socket
            assert sender.poll() is None, sender.stderr.read() if sender.stderr else ""
            time.sleep(0.01)
        made = shmsink_segments(sender.pid)
        assert made, "shmsink's area under its pid"
        os.killpg(sender.pid, signal.SIGKILL)
        sender.wait()
        assert shmsink_segments(sender.pid) == made, "a killed shmsink leaves its area"
        assert remove_shmsink_segments(sender.pid) == made
        assert shmsink_segments(sender.pid) == []
    finally:
        if sender.poll() is None:
            os.killpg(sender.pid, signal.SIGKILL)
            sender.wait()
        remove_shmsink_segments(sender.pid)
        if os.path.exists(sock):
            os.unlink(sock)
