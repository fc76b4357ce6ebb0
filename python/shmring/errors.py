"""The exceptions of the shmring package: one base class, one subclass per cause."""
from __future__ import annotations

from typing import Optional


class ShmRingError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidNameError(ShmRingError, ValueError):
    """A ring name outside 1..30 characters of [A-Za-z0-9._-] (not starting with '.' or '-')."""


class MessageTooLargeError(ShmRingError, ValueError):
    """A message that can never fit the ring (longer than capacity - 4 bytes)."""


class IncompatibleSegmentError(ShmRingError):
    """A segment that is not a ring this package can use.

    ``field`` names the header field that was refused: ``"magic"``, ``"version"``,
    ``"header_size"``, ``"capacity"``, ``"size"`` or ``"profile"``.
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class RingNotFoundError(ShmRingError, FileNotFoundError):
    """No ring of that name exists (and the caller did not wait, or waited in vain)."""


class RingBusyError(ShmRingError):
    """The name is owned by a live producer, or the ring already has a live consumer."""


class CorruptRecordError(ShmRingError):
    """A record with an invalid len, or one that would pass head or cross the data end."""


class ProducerDeadError(ShmRingError):
    """The producer process died without closing the stream (its pid is gone)."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


class ProducerReplacedError(ShmRingError):
    """The ring name now refers to a re-created segment (its generation changed)."""

    def __init__(self, message: str, old_generation: int,
                 new_generation: Optional[int]) -> None:
        super().__init__(message)
        self.old_generation = old_generation
        self.new_generation = new_generation


class StreamClosedError(ShmRingError, ValueError):
    """Writing to a producer after ``close()`` (like writing to a closed file)."""


class ViewInUseError(ShmRingError, BufferError):
    """A zero-copy view (or an array made from it) is still referenced at release.

    The ring space stays held instead of being reused under the view; drop the
    references (``del arr``) or copy what you keep (``bytes(view)``, ``arr.copy()``).
    """


class RingTimeoutError(ShmRingError, TimeoutError):
    """A blocking call that must produce a result (reserve, open) ran out of time."""


class RingInterruptedError(ShmRingError, InterruptedError):
    """A blocking call was interrupted with ``interrupt()`` from another thread."""


class FramingError(CorruptRecordError):
    """A profile-1 payload whose message header is too short or lies about its size."""
