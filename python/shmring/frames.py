"""Frames of a profile-1 ring: FrameReader (caps, timestamps, zero-copy numpy) and FrameWriter.

A ring written by ``shmringsink`` (or by :class:`FrameWriter`, or a C++ program
using ``shm::framing``) carries CAPS, BUFFER and EOS messages. FrameReader turns
them into :class:`Frame` objects whose ``.array`` is a numpy view straight into
the ring, shaped from the caps.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Deque, Dict, Iterator, Optional, Tuple

from .caps import VideoLayout, layout_from_caps
from .channel import LIVENESS_SLICE, ShmConsumer, ShmProducer
from .errors import (IncompatibleSegmentError, RingTimeoutError, StreamClosedError,
                     ViewInUseError)
from .framing import (HEADER_SIZE as MESSAGE_HEADER_SIZE, KIND_BUFFER, KIND_CAPS, KIND_EOS,
                      MessageHeader, decode_header, encode_caps, encode_eos, encode_header,
                      monotonic_ns)
from .layout import INDEX_MASK, PRODUCER_WAITING, PROFILE_GST_FRAMING
from ._views import Held


_np: Any = None
_PLANE_ARGS: Dict[VideoLayout, Tuple[Tuple[Any, ...], ...]] = {}


def _numpy() -> Any:
    """numpy, imported on first use (the package works without it until .array)."""
    global _np
    if _np is None:
        import numpy
        _np = numpy
    return _np


def _plane_args(layout: VideoLayout) -> Tuple[Tuple[Any, ...], ...]:
    """(shape, dtype, offset, strides) per plane, computed once per layout."""
    args = _PLANE_ARGS.get(layout)
    if args is None:
        np = _numpy()
        planes = []
        for p in layout.planes:
            dtype = np.dtype(p.dtype)
            inner: Tuple[int, ...] = (dtype.itemsize,)
            if len(p.shape) == 3:
                inner = (p.shape[2] * dtype.itemsize, dtype.itemsize)
            planes.append((p.shape, dtype, p.offset, (p.stride,) + inner))
        args = _PLANE_ARGS[layout] = tuple(planes)
    return args


class Frame:
    """One video buffer read from the ring, valid until the reader moves past it.

    ``caps`` (str, the caps in effect for this buffer), ``pts``/``dts``/``duration``
    (int ns or None), ``offset``/``offset_end`` (int or None), ``flags``
    (GstBufferFlags), ``send_time_ns`` (writer's CLOCK_MONOTONIC, 0 unknown),
    ``data`` (read-only memoryview into the ring), ``array`` and ``planes`` (numpy,
    zero-copy). Copy what you keep (``frame.array.copy()``): the ring space is given
    back once nothing references the frame's memory any more.
    """

    __slots__ = ("caps", "pts", "dts", "duration", "offset", "offset_end", "flags",
                 "send_time_ns", "data", "layout", "_array", "_planes")

    def __init__(self, caps: Optional[str], layout: Optional[VideoLayout],
                 header: MessageHeader, data: memoryview) -> None:
        self.caps = caps
        self.layout = layout
        self.pts = header.pts
        self.dts = header.dts
        self.duration = header.duration
        self.offset = header.offset
        self.offset_end = header.offset_end
        self.flags = header.flags
        self.send_time_ns = header.send_time_ns
        self.data = data
        self._array: Any = None
        self._planes: Optional[Tuple[Any, ...]] = None

    @property
    def width(self) -> Optional[int]:
        return self.layout.width if self.layout else None

    @property
    def height(self) -> Optional[int]:
        return self.layout.height if self.layout else None

    @property
    def format(self) -> Optional[str]:
        return self.layout.format if self.layout else None

    def _check_size(self) -> VideoLayout:
        layout = self.layout
        assert layout is not None
        if self.data.nbytes < layout.size:
            raise ValueError(
                f"frame has {self.data.nbytes} bytes but caps {layout.format} "
                f"{layout.width}x{layout.height} need {layout.size}")
        return layout

    @property
    def planes(self) -> Tuple[Any, ...]:
        """numpy views of each plane (Y, U, V for I420; Y, UV for NV12; one for packed)."""
        if self._planes is None:
            np = _numpy()
            if self.layout is None:
                self._planes = (np.frombuffer(self.data, dtype=np.uint8),)
            else:
                layout = self._check_size()
                ndarray, data = np.ndarray, self.data
                self._planes = tuple(ndarray(shape, dtype, data, offset, strides)
                                     for shape, dtype, offset, strides in _plane_args(layout))
        return self._planes

    @property
    def array(self) -> Any:
        """The frame as one numpy array, zero-copy and read-only.

        Packed RGB-like formats: (height, width, channels); GRAY8/GRAY16: (height,
        width). I420/YV12/NV12/NV21 with tight rows (even size, no row padding): the
        usual (height * 3 // 2, width) uint8 layout (e.g. for cv2.cvtColor); with
        padded rows: the frame's bytes as a 1-D uint8 array (use ``planes``). No
        known video caps: the bytes as a 1-D uint8 array.
        """
        if self._array is None:
            np = _numpy()
            layout = self.layout
            if layout is None:
                self._array = np.frombuffer(self.data, dtype=np.uint8)
            elif layout.packed:
                self._array = self.planes[0]
            else:
                self._check_size()
                w, h = layout.width, layout.height
                tight = w % 2 == 0 and h % 2 == 0 and layout.planes[0].stride == w and \
                    layout.size == w * h * 3 // 2
                if tight:
                    self._array = np.ndarray((h * 3 // 2, w), np.uint8, buffer=self.data)
                else:
                    self._array = np.frombuffer(self.data, dtype=np.uint8, count=layout.size)
        return self._array

    def _drop(self) -> None:
        self._array = None
        self._planes = None

    def __repr__(self) -> str:
        shape = f"{self.format} {self.width}x{self.height}" if self.layout else "raw"
        return f"<Frame {shape} pts={self.pts} bytes={self.data.nbytes}>"


class _Entry:
    """An acquired record, in ring order: released once nothing uses it."""

    __slots__ = ("end", "held", "frame")

    def __init__(self, end: int) -> None:
        self.end = end
        self.held: Optional[Held] = None
        self.frame: Optional[Frame] = None


class FrameReader:
    """Iterates the frames of profile-1 ring ``name`` (written by shmringsink or FrameWriter).

    Waits up to ``timeout`` seconds for the producer (None = no limit). Iteration
    blocks for the next frame and ends at EOS (or when the producer closes);
    ProducerDeadError / ProducerReplacedError end it when the producer is gone.
    ``latest=True`` skips frames already superseded by newer ones in the ring
    (live view: always the newest), keeping the caps of skipped CAPS messages;
    ``skipped`` counts them. Each Frame stays valid until the reader moves past it;
    ring space is only reused once nothing references it. Consumer side.
    """

    def __init__(self, name: str, timeout: Optional[float] = None, latest: bool = False) -> None:
        self._consumer = ShmConsumer(name, timeout=timeout)
        ring = self._consumer.ring
        if ring.profile != PROFILE_GST_FRAMING:
            profile = ring.profile
            self._consumer.close()
            raise IncompatibleSegmentError(
                f"ring {name!r} has profile {profile}; FrameReader reads profile 1 "
                "(GStreamer framing). Use ShmConsumer for opaque messages", "profile")
        self._ring = ring
        self._buf = ring.buffer
        self._latest = latest
        self._caps: Optional[str] = None
        self._layout: Optional[VideoLayout] = None
        self._layouts: Dict[str, Optional[VideoLayout]] = {}
        self._entries: Deque[_Entry] = deque()
        self._done = False
        self._eos_next = False
        self._stuck_head: Optional[int] = None
        self.skipped = 0

    @property
    def caps(self) -> Optional[str]:
        """The most recent caps string read from the ring (None before the first)."""
        return self._caps

    @property
    def name(self) -> str:
        return self._consumer.name

    def _set_caps(self, caps: str) -> None:
        self._caps = caps
        if caps not in self._layouts:
            self._layouts[caps] = layout_from_caps(caps)
        self._layout = self._layouts[caps]

    def _release_ready(self) -> None:
        """Gives back, in ring order, every leading record nothing references any more."""
        entries = self._entries
        last_end = None
        while entries:
            entry = entries[0]
            if entry.frame is not None:
                entry.frame._drop()
            if entry.held is not None and not entry.held.try_release():
                break
            entries.popleft()
            last_end = entry.end
        if last_end is not None:
            self._ring.release_to(last_end)

    def _wait(self, deadline: Optional[float]) -> bool:
        """Sleeps for the next record; False when ``deadline`` passed."""
        ring = self._ring
        self._release_ready()
        # Deadlock check: nothing left to read, frames still referenced, and the
        # producer has been asleep waiting for space (head unchanged) for a whole
        # wait slice: only the space those frames hold can wake it.
        head = ring.load_head()
        if self._entries and ring.producer_flags() & PRODUCER_WAITING:
            if self._stuck_head == head:
                raise ViewInUseError(
                    f"{len(self._entries)} frame(s) of ring {self.name!r} are still "
                    "referenced and the producer is waiting for the space they hold; copy "
                    "what you keep (frame.array.copy()) and drop the rest")
            self._stuck_head = head
        else:
            self._stuck_head = None
        self._consumer._check_producer(ring, force=True)
        if deadline is None:
            ring.wait_readable(LIVENESS_SLICE)
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ring.wait_readable(min(remaining, LIVENESS_SLICE))
        return True

    def read_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame, waiting up to ``timeout`` s (None = no limit, 0 = not at all).

        None at end of stream (then ``at_end`` is True) or when the timeout expired.
        Consumer; blocks.
        """
        if self._consumer._ring is None:
            raise StreamClosedError(f"FrameReader of ring {self.name!r} is closed")
        if self._done:
            return None
        if self._eos_next:
            self._done = True
            self._release_ready()
            return None
        self._release_ready()
        ring, buf = self._ring, self._buf
        deadline = None if timeout is None else time.monotonic() + timeout
        candidate: Optional[Tuple[_Entry, int, int, MessageHeader, Optional[str],
                                  Optional[VideoLayout]]] = None
        limit = -1
        while True:
            record = ring.acquire()
            if record is None:
                if candidate is not None:
                    break
                if ring.at_end():
                    self._done = True
                    self._release_ready()
                    return None
                if not self._wait(deadline):
                    return None
                continue
            start, length, end = record
            entry = _Entry(end)
            self._entries.append(entry)
            header, body, body_len = decode_header(buf, start, length)
            if header.kind == KIND_CAPS:
                self._set_caps(bytes(buf[body:body + body_len]).decode("utf-8", "replace"))
            elif header.kind == KIND_EOS:
                if candidate is None:
                    self._done = True
                    self._release_ready()
                    return None
                self._eos_next = True
                break
            elif header.kind == KIND_BUFFER:
                if candidate is not None:
                    self.skipped += 1
                candidate = (entry, body, body_len, header, self._caps, self._layout)
                if not self._latest:
                    break
                if limit < 0:
                    limit = ring.load_head()
            # unknown kinds are skipped
            if candidate is not None:
                ahead = (limit - end) & INDEX_MASK
                if ahead == 0 or ahead > ring.capacity:
                    break  # looked at everything that was there when we started
        entry, body, body_len, header, caps, layout = candidate
        held = ring.view_of(body, body_len, entry.end)
        assert held.view is not None
        frame = Frame(caps, layout, header, held.view)
        entry.held = held
        entry.frame = frame
        return frame

    @property
    def at_end(self) -> bool:
        """True once EOS was read (or the producer closed and everything was read)."""
        return self._done

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        frame = self.read_frame(None)
        if frame is None:
            raise StopIteration
        return frame

    def close(self) -> None:
        """Releases what can be released and detaches. Never unlinks. Idempotent."""
        if self._consumer._ring is None:
            return
        self._release_ready()
        self._entries.clear()
        self._consumer.close()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameWriter:
    """Writes a profile-1 ring the way shmringsink does: CAPS, BUFFERs, EOS. Producer side.

    ``FrameWriter(name, capacity, caps=...)`` creates the ring (see ShmProducer).
    :meth:`write` sends CAPS first whenever ``caps`` changed, then the buffer with
    its timestamps, zero-copy through a reservation. :meth:`close` sends EOS and
    ends the stream.
    """

    def __init__(self, name: str, capacity: int = 64 << 20, caps: Optional[str] = None,
                 mode: int = 0o600) -> None:
        self._producer = ShmProducer(name, capacity, profile=PROFILE_GST_FRAMING, mode=mode)
        self._caps: Optional[str] = None
        self._pending_caps = caps

    @property
    def producer(self) -> ShmProducer:
        return self._producer

    def set_caps(self, caps: str) -> None:
        """Caps for the following buffers (sent before the next one if they changed)."""
        self._pending_caps = caps

    def _send(self, payload: bytes, timeout: Optional[float]) -> bool:
        return self._producer.write(payload, timeout=timeout)

    def write(self, data: Any, pts: Optional[int] = None, dts: Optional[int] = None,
              duration: Optional[int] = None, offset: Optional[int] = None,
              offset_end: Optional[int] = None, flags: int = 0,
              timeout: Optional[float] = None) -> bool:
        """Writes one buffer (bytes-like, C-contiguous), waiting up to ``timeout`` s
        for space (None = no limit, 0 = drop at once when full).

        Returns False, counting the drop in the header's ``dropped``, when there was
        no room in time. Producer; blocks.
        """
        if self._pending_caps is not None and self._pending_caps != self._caps:
            if not self._send(encode_caps(self._pending_caps, monotonic_ns()), timeout):
                self._producer.count_dropped()
                return False
            self._caps = self._pending_caps
        body = memoryview(data).cast("B")
        n = MESSAGE_HEADER_SIZE + body.nbytes
        header = encode_header(KIND_BUFFER, flags=flags, pts=pts, dts=dts, duration=duration,
                               offset=offset, offset_end=offset_end,
                               send_time_ns=monotonic_ns())
        try:
            with self._producer.reserve(n, timeout=timeout) as view:
                view[:MESSAGE_HEADER_SIZE] = header
                view[MESSAGE_HEADER_SIZE:] = body
        except RingTimeoutError:
            self._producer.count_dropped()
            return False
        return True

    def close(self, timeout: Optional[float] = 1.0) -> None:
        """Sends EOS (waiting up to ``timeout`` s for room) and closes the ring."""
        if self._producer.closed:
            return
        try:
            self._send(encode_eos(monotonic_ns()), timeout)
        finally:
            self._producer.close()

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
