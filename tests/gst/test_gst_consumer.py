"""The gst-python appsink path (python/examples/gst_consumer.py) gets the exact
frames a gst-launch-1.0 sender wrote: same bytes (SHA-1, as the sender's
checksumsink computes them) and same timestamps, in order, ending at EOS.
Needs GST_PLUGIN_PATH to point at the built plugin (meson test sets it)."""
import hashlib
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(os.environ.get("SHMRING_SOURCE_ROOT", pathlib.Path(__file__).parents[2]))
GST_LAUNCH = shutil.which("gst-launch-1.0")
LINE = re.compile(r"^(\d+):(\d\d):(\d\d)\.(\d{9}) ([0-9a-f]{40})$")


def load_example():
    spec = importlib.util.spec_from_file_location(
        "gst_consumer", ROOT / "python" / "examples" / "gst_consumer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_checksums(text):
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            h, mi, s, ns, digest = m.groups()
            out.append(((int(h) * 3600 + int(mi) * 60 + int(s)) * 10**9 + int(ns), digest))
    return out


@pytest.mark.skipif(GST_LAUNCH is None, reason="gst-launch-1.0 not installed")
def test_appsink_gets_the_exact_frames():
    gst_consumer = load_example()
    name = f"py-appsink-{os.getpid()}"
    # 30 BGR frames of 230400 bytes through a 512 KiB ring: the sender cannot
    # finish before this reader drains it, so the two really overlap.
    sender = subprocess.Popen(
        [GST_LAUNCH, "-q", "videotestsrc", "num-buffers=30", "pattern=ball", "!",
         "video/x-raw,format=BGR,width=320,height=240,framerate=30/1", "!",
         "tee", "name=t", "!", "queue", "!",
         "shmringsink", f"shm-name={name}", "capacity=524288", "sync=false",
         "t.", "!", "queue", "!", "checksumsink", "sync=false"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = []
        # A generous guard against a broken sender, not a timing assertion.
        for pts, array in gst_consumer.frames(name, "BGR", timeout_ns=60 * 10**9):
            assert array.shape == (240, 320, 3)
            got.append((pts, hashlib.sha1(array.tobytes()).hexdigest()))
        out, err = sender.communicate()
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sender.returncode == 0, err
    sent = parse_checksums(out)
    assert len(sent) == 30
    assert got == sent


def test_no_sender_is_a_clear_error():
    gst_consumer = load_example()
    with pytest.raises(RuntimeError, match="No sender created ring"):
        for _ in gst_consumer.frames(f"py-nobody-{os.getpid()}", timeout_ns=50 * 10**6):
            pass
