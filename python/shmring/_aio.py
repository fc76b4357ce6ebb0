"""Running a blocking call of this package from asyncio, with real cancellation.

The call runs in the event loop's default executor. When the awaiting task is
cancelled (``task.cancel()``, ``asyncio.wait_for`` timing out), the object's
``interrupt()`` wakes the blocked call at once, the executor thread is free again
(so ``asyncio.run()`` can shut its executor down), the interrupt is cleared, and
the cancellation propagates. A message the call obtained in the very instant of
the cancellation is dropped with it.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Protocol, TypeVar

from .errors import ShmRingError

T = TypeVar("T")


class Interruptible(Protocol):
    def interrupt(self) -> None: ...

    def clear_interrupt(self) -> None: ...


async def run_interruptibly(obj: Interruptible, call: Callable[..., T], *args: Any) -> T:
    """Awaits ``call(*args)`` run in the default executor; cancelling the awaiting task
    interrupts ``obj`` so the call returns at once. Event-loop thread only."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, call, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        obj.interrupt()
        try:
            await future
        except (ShmRingError, asyncio.CancelledError):
            pass  # RingInterruptedError (or a close meanwhile): what we asked for
        finally:
            obj.clear_interrupt()
        raise
