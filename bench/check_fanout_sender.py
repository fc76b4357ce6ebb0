#!/usr/bin/python3
"""Checks bench/gst_fanout_sender, the sender of bench.py's several-receivers rows (suite
'bench'; no timings): it starts streaming only once every receiver is there, so a receiver
that comes after the first one still gets every buffer.

    check_fanout_sender.py BUILD/bench/gst_fanout_sender [--as-gst-launch]

Two cases, each with two receivers (bench/gst_receive.py), the second started only once the
first is attached: a shmsink with CLIENTS=2 (the second shmsrc client is started after the
sender printed "connected 1"), and a shmringsink max-receivers=2 (the second lossless
shmringsrc is started once a receiver slot of the ring is marked ATTACHED). Both receivers
must count every buffer. --as-gst-launch runs the same pipelines with gst-launch-1.0 -q (it
streams from the first connection / at once): the check must then fail, the second receiver
missing the first buffers.
"""
from __future__ import annotations

import json
import mmap
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from typing import IO, Dict, List, Optional

from shm_segments import remove_shmsink_segments

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMES = 40
CAPS = "video/x-raw,format=BGR,width=320,height=240"
# docs/PROTOCOL.md: receiver slots from offset 512, 256 bytes each; the slot's flags word at
# +128, bit 0 = ATTACHED.
SLOTS, SLOT_SIZE, SLOT_FLAGS, ATTACHED = 512, 256, 128, 1
GUARD_S = 60  # only against a hang (the check fails then); nothing here is timed


def read_line(pipe: IO[str], what: str) -> str:
    ready, _, _ = select.select([pipe], [], [], GUARD_S)
    if not ready:
        raise SystemExit(f"FAIL: no line from the sender while waiting for {what}")
    return pipe.readline().strip()


def receiver(source: str, env: Dict[str, str]) -> "subprocess.Popen[str]":
    return subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "gst_receive.py"), source,
                             str(FRAMES), "0"], stdout=subprocess.PIPE, text=True, env=env)


def wait_for(cond: "callable[[], bool]", sender: "subprocess.Popen[str]", what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not cond():
        if sender.poll() is not None:
            return  # the sender ended (it streamed without waiting): the counts will tell
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: gave up waiting for {what}")
        time.sleep(0.005)


def one_attached(name: str) -> bool:
    try:
        with open(f"/dev/shm/{name}", "rb") as f:
            if os.fstat(f.fileno()).st_size < SLOTS + 2 * SLOT_SIZE:
                return False
            with mmap.mmap(f.fileno(), SLOTS + 2 * SLOT_SIZE, prot=mmap.PROT_READ) as m:
                return any(struct.unpack_from("<I", m, SLOTS + k * SLOT_SIZE + SLOT_FLAGS)[0]
                           & ATTACHED for k in range(2))
    except FileNotFoundError:
        return False


def run(exe: str, as_launch: bool, kind: str, tmp: str, env: Dict[str, str]) -> bool:
    name = f"kbfan{os.getpid()}"
    sock = os.path.join(tmp, "s.sock")
    if kind == "shmsink":
        sink = f"shmsink name=sink socket-path={sock} sync=false wait-for-connection=true"
        source = f"shmsrc socket-path={sock} ! {CAPS}"
    else:
        sink = f"shmringsink name=sink shm-name={name} max-receivers=2 sync=false"
        # timeout: a receiver started after a sender that did not wait ends with an error
        # instead of waiting for the ring forever.
        source = f"shmringsrc shm-name={name} mode=lossless timeout={GUARD_S * 10**9 // 2}"
    pipeline = f"videotestsrc num-buffers={FRAMES} ! {CAPS} ! {sink}"
    cmd = (["gst-launch-1.0", "-q"] + pipeline.split() if as_launch else
           [exe, "2" if kind == "shmsink" else "0", pipeline])
    procs: List["subprocess.Popen[str]"] = []
    lines: List[str] = []
    results: List[Dict[str, object]] = []
    code: Optional[int] = None
    sender = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert sender.stdout is not None
        if kind == "shmsink":
            # shmsink creates the socket going to PAUSED; shmsrc fails without it.
            wait_for(lambda: os.path.exists(sock), sender, "the socket")
            procs.append(receiver(source, env))
            if not as_launch:
                lines.append(read_line(sender.stdout, "connected 1"))
            else:
                # gst-launch-1.0 prints nothing: the second client comes after the sender ended
                wait_for(lambda: False, sender, "the sender to end")
        else:
            procs.append(receiver(source, env))  # waits for the ring
            wait_for(lambda: one_attached(name), sender, "the first receiver to attach")
        procs.append(receiver(source, env))  # strictly after the first one
        for p in procs:
            out, _ = p.communicate(timeout=120)
            lines_out = out.strip().splitlines()
            results.append(json.loads(lines_out[-1]) if lines_out else
                           {"buffers": 0, "stalled": False, "error": "no output"})
        lines += [line.strip() for line in sender.stdout.read().splitlines()]
        code = sender.wait(GUARD_S)
    finally:
        for p in procs + [sender]:
            if p.poll() is None:
                p.kill()
                p.wait()
        remove_shmsink_segments(sender.pid)  # a killed shmsink leaves its shm area
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")
    print(f"{kind}: sender printed {lines}, exit {code}; receivers {results}")
    ok = True
    want = ["connected 1", "connected 2", "streaming"] if kind == "shmsink" else ["streaming"]
    if not as_launch and lines != want:
        print(f"FAIL ({kind}): the sender must print {want}")
        ok = False
    for i, res in enumerate(results):
        if res["buffers"] != FRAMES or res["stalled"] or res["error"]:
            print(f"FAIL ({kind}): receiver {i + 1} got {res['buffers']} of {FRAMES} buffers "
                  f"(stalled {res['stalled']}, error {res['error']})")
            ok = False
    if code != 0:
        print(f"FAIL ({kind}): sender exit status {code}")
        ok = False
    return ok


def main() -> int:
    exe = os.path.abspath(sys.argv[1])
    as_launch = "--as-gst-launch" in sys.argv[2:]
    env = dict(os.environ)
    build = os.path.dirname(os.path.dirname(exe))
    env["GST_PLUGIN_PATH"] = os.path.join(build, "gst-plugin")
    env.setdefault("GST_REGISTRY", os.path.join(build, "bench-registry.bin"))
    ok = True
    with tempfile.TemporaryDirectory(prefix="kbfan") as tmp:
        for kind in ("shmsink", "shmringsink"):
            ok = run(exe, as_launch, kind, tmp, env) and ok
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
