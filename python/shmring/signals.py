"""Turning SIGTERM into a clean end of stream.

Python's default SIGTERM action kills the process at once: no ``with`` block is left,
no finalizer runs, so a producer stopped by ``docker stop`` / ``systemctl stop`` /
``kill`` leaves its ring behind (consumers then see a dead producer, not the end of
the stream, and the name lingers in /dev/shm until the next producer replaces it).

:func:`exit_on_sigterm` makes SIGTERM raise ``SystemExit(143)`` in the main thread
instead, so ``with ShmProducer(...)`` blocks end the stream and remove the name as on
any other exit. The one-liner it stands for::

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

A blocked call wakes for it: waits sleep in bounded naps and the futex wait returns
on a signal, so the exception is raised within one nap.
"""
from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Optional


def _exit(signum: int, frame: Optional[FrameType]) -> None:
    sys.exit(128 + signum)


def exit_on_sigterm() -> None:
    """Installs a SIGTERM handler that raises SystemExit(143) (see the module doc).
    Call from the main thread (Python's rule for signal handlers); never blocks."""
    signal.signal(signal.SIGTERM, _exit)
