#!/usr/bin/python3
"""Checks bench/gst_fanout_sender, the sender of bench.py's several-receivers rows (suite
'bench'; no timings): with CLIENTS=2 it starts streaming only once two shmsrc clients are
connected, so a client that connects after the first one still gets every buffer.

    check_fanout_sender.py BUILD/bench/gst_fanout_sender

The second client is started only after the sender printed "connected 1" (the first client is
attached); with a sender that streams from the first connection on (shmsink
wait-for-connection=true alone, or CLIENTS=1) the stream is under way or over by then and
the second client misses buffers.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import IO, List

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMES = 40
CAPS = "video/x-raw,format=BGR,width=320,height=240"


def read_line(pipe: IO[str], what: str) -> str:
    # 60 s only guards against a hang (the test fails then); nothing here is timed.
    ready, _, _ = select.select([pipe], [], [], 60)
    if not ready:
        raise SystemExit(f"FAIL: no line from gst_fanout_sender while waiting for {what}")
    return pipe.readline().strip()


def receiver(sock: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "gst_receive.py"),
                             f"shmsrc socket-path={sock} ! {CAPS}", str(FRAMES), "0"],
                            stdout=subprocess.PIPE, text=True)


def main() -> int:
    exe = sys.argv[1]
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 2  # 1: what the check must reject
    with tempfile.TemporaryDirectory(prefix="kbfan") as tmp:
        sock = os.path.join(tmp, "s.sock")
        sender = subprocess.Popen(
            [exe, str(clients), f"videotestsrc num-buffers={FRAMES} ! {CAPS} ! shmsink "
             f"name=sink socket-path={sock} sync=false wait-for-connection=true"],
            stdout=subprocess.PIPE, text=True)
        procs: List["subprocess.Popen[str]"] = []
        try:
            assert sender.stdout is not None
            # shmsink creates the socket going to PAUSED; shmsrc fails without it.
            while not os.path.exists(sock):
                if sender.poll() is not None:
                    raise SystemExit(f"FAIL: sender exited ({sender.returncode}) before "
                                     "creating the socket")
                time.sleep(0.01)
            procs.append(receiver(sock))
            lines = [read_line(sender.stdout, "connected 1")]
            procs.append(receiver(sock))  # connects strictly after the first client
            results = []
            for p in procs:
                out, _ = p.communicate(timeout=120)
                results.append(json.loads(out.strip().splitlines()[-1]))
            lines += [line.strip() for line in sender.stdout.read().splitlines()]
            code = sender.wait(60)
        finally:
            for p in procs + [sender]:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    print("sender printed:", lines, "exit", code)
    print("receivers:", results)
    ok = True
    if lines != ["connected 1", "connected 2", "streaming"]:
        print("FAIL: the sender must start streaming after the second client connected")
        ok = False
    for i, res in enumerate(results):
        if res["buffers"] != FRAMES or res["stalled"] or res["error"]:
            print(f"FAIL: client {i + 1} got {res['buffers']} of {FRAMES} buffers "
                  f"(stalled {res['stalled']}, error {res['error']})")
            ok = False
    if code != 0:
        print(f"FAIL: sender exit status {code}")
        ok = False
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
