"""asyncio: awaiting reads whose cancellation really stops the blocked wait.

Each scenario runs in a fresh interpreter under a watchdog: before, a cancelled
``run_in_executor`` read left its thread blocked and ``asyncio.run()`` never
returned."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import unique_name
from helpers import python_env


def run(code: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          env=python_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_wait_for_times_out_and_asyncio_run_returns():
    out = run('''
        import asyncio, sys, shmring
        name = sys.argv[1]

        async def main():
            with shmring.ShmProducer(name, 4096), shmring.ShmConsumer(name) as c:
                try:
                    await asyncio.wait_for(c.aread(), 0.3)
                except asyncio.TimeoutError:
                    print("timed out")
                with shmring.FrameWriter(name + "f", 4096,
                                         caps="video/x-raw,format=GRAY8,width=4,height=2"):
                    with shmring.FrameReader(name + "f", timeout=0) as r:
                        try:
                            await asyncio.wait_for(r.aread_frame(), 0.3)
                        except asyncio.TimeoutError:
                            print("timed out")

        asyncio.run(main())
        print("run returned")
    ''', unique_name("aio"))
    assert out.splitlines() == ["timed out", "timed out", "run returned"]


def test_task_cancel_stops_the_wait_and_the_object_stays_usable():
    out = run('''
        import asyncio, sys, shmring
        name = sys.argv[1]

        async def main():
            with shmring.ShmProducer(name, 4096) as p, shmring.ShmConsumer(name) as c:
                task = asyncio.create_task(c.aread())
                await asyncio.sleep(0.2)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    print("cancelled")
                p.write(b"after")
                print(await c.aread(5))

        asyncio.run(main())
    ''', unique_name("aio"))
    assert out.splitlines() == ["cancelled", "b'after'"]


def test_async_for_reads_until_the_end_of_the_stream():
    out = run('''
        import asyncio, sys, shmring
        name = sys.argv[1]
        caps = "video/x-raw,format=GRAY8,width=4,height=2"

        async def main():
            w = shmring.FrameWriter(name + "f", 4096, caps=caps)
            p = shmring.ShmProducer(name, 4096)
            with shmring.ShmConsumer(name) as c, shmring.FrameReader(name + "f") as r:
                for i in range(3):
                    p.write(b"m%d" % i)
                    w.write(bytes([i]) * 8, pts=i)
                p.close()
                w.close()
                print([m async for m in c])
                print([f.pts async for f in r])

        asyncio.run(main())
    ''', unique_name("aio"))
    assert out.splitlines() == ["[b'm0', b'm1', b'm2']", "[0, 1, 2]"]
