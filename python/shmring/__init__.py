"""shmring: read and write shmring shared-memory rings from pure Python.

The same lock-free single-producer/single-consumer byte ring the C++ core and the
GStreamer elements (``shmringsink`` / ``shmringsrc``) use, with nothing but the
standard library (and numpy for frame arrays)::

    import shmring

    with shmring.ShmConsumer("cam0", timeout=None) as consumer:   # waits for a producer
        for message in consumer:                                    # ends at end of stream
            handle(message)

    with shmring.FrameReader("cam0") as reader:                     # a shmringsink ring
        for frame in reader:
            print(frame.pts, frame.array.shape)

Linux is the supported platform (futex waits, membarrier); other POSIX systems
fall back to a bounded back-off poll.
"""
from __future__ import annotations

import os as _os

# Uninstalled use next to a meson build: SHMRING_NATIVE_DIR names the build
# directory holding the compiled helper ``_native`` (installed builds have it in
# this package's own directory; without it the package is pure Python).
if _os.environ.get("SHMRING_NATIVE_DIR"):
    __path__.append(_os.environ["SHMRING_NATIVE_DIR"])

from .caps import VideoLayout, layout_from_caps, parse_caps, video_layout
from .channel import ShmConsumer, ShmProducer
from .errors import (CorruptRecordError, ForeignOwnerError, FramingError,
                     IncompatibleSegmentError, InvalidNameError, MessageTooLargeError,
                     ProducerDeadError, ProducerReplacedError, RingBusyError,
                     RingInterruptedError, RingNotFoundError, RingOSError,
                     RingPermissionError, RingTimeoutError, ShmRingError, StreamClosedError,
                     StreamTruncatedError, ViewInUseError)
from .frames import Frame, FrameReader, FrameWriter
from .header import HeaderSnapshot
from .interrupter import Interrupter
from .ring import ByteRingBuffer
from .signals import exit_on_sigterm
from ._shm import validate_name

__version__ = "0.1.0"

__all__ = [
    "ByteRingBuffer", "ShmProducer", "ShmConsumer", "FrameReader", "FrameWriter", "Frame",
    "ShmRingError", "StreamTruncatedError", "IncompatibleSegmentError", "CorruptRecordError", "FramingError",
    "ProducerDeadError", "ProducerReplacedError", "InvalidNameError",
    "MessageTooLargeError", "RingBusyError", "RingNotFoundError", "RingTimeoutError",
    "RingInterruptedError", "StreamClosedError", "ViewInUseError", "RingPermissionError",
    "ForeignOwnerError", "RingOSError", "HeaderSnapshot", "Interrupter", "exit_on_sigterm",
    "VideoLayout", "layout_from_caps", "parse_caps", "video_layout", "validate_name",
    "__version__",
]
