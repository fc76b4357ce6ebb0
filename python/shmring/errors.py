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

    ``field`` names what was refused: the header fields ``"magic"``, ``"version"``,
    ``"header_size"``, ``"capacity"``, ``"profile"``, the segment's ``"size"``, or
    ``"type"`` for something that is not a regular file at all (a FIFO, a
    directory, a symbolic link...).
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class RingNotFoundError(ShmRingError, FileNotFoundError):
    """No ring of that name exists (and the caller did not wait, or waited in vain)."""


class RingPermissionError(ShmRingError, PermissionError):
    """The OS refused access to the segment (another user's ring, mode 0600).

    ``path``, ``owner_uid`` and ``owner_name`` say whose it is (uid -1 / name "?"
    when even that could not be looked up), ``mode`` its permission bits.
    """

    def __init__(self, message: str, path: str = "", owner_uid: int = -1,
                 owner_name: str = "?", mode: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.owner_uid = owner_uid
        self.owner_name = owner_name
        self.mode = mode


class ForeignOwnerError(RingPermissionError):
    """The segment belongs to another user; refused unless ``allow_foreign_owner=True``
    (a world-writable ring squatted by someone else must not be trusted silently)."""


class RingOSError(ShmRingError, OSError):
    """Any other OS failure on a segment; the message names the call and the errno."""


class RingBusyError(ShmRingError):
    """The name is owned by a live producer, or the ring already has a live consumer."""


class CorruptRecordError(ShmRingError):
    """A record with an invalid len, or one that would pass head or cross the data end."""


class ProducerDeadError(ShmRingError):
    """The producer process died without closing the stream (on Linux: its lock on
    byte 0 of the segment is gone; ``pid`` is the pid it recorded, for messages)."""

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
    """Using an object after ``close()``, or writing after ``end_stream()`` (like
    writing to a closed file)."""


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


class StreamTruncatedError(ShmRingError):
    """A profile-1 stream ended without its end-of-stream record: the producer stopped
    early (an error, or a stop before EOS), so what was read is incomplete."""
